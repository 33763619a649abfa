/* sluice - SPDX-License-Identifier: MIT
 *
 * Small shared answers of reply/: the status JSON of a job, 202 Accepted
 * with Location, the result status for a final state, and the parsing of
 * the request fields every reply mode looks at (Prefer, query values).
 */
#include "reply_int.h"
#include <stdio.h>
#include <stdlib.h>

static json_t *ms_or_null(uint64_t ms)
{
    return ms ? json_integer((json_int_t)ms) : json_null();
}

/* Header values may carry obs-text that is not UTF-8, which a JSON
 * string cannot hold: those bytes are shown as '?'. */
static json_t *value_json(sl_str_t v)
{
    char tmp[SL_JOBS_REC_VALUE_MAX];
    json_t *j = json_stringn(v.p, v.n);
    if (j || v.n > sizeof(tmp))
        return j ? j : json_string("");
    for (size_t i = 0; i < v.n; i++)
        tmp[i] = (uint8_t)v.p[i] < 0x80 ? v.p[i] : '?';
    return json_stringn(tmp, v.n);
}

static json_t *headers_json(const sl_jobs_info_t *i)
{
    json_t *o = json_object();
    for (size_t k = 0; k < i->nrecorded; k++)
        json_object_set_new(o, i->recorded[k].name.p, value_json(i->recorded[k].value));
    return o;
}

char *sl_reply_status_json(sl_jobs_job_t *job, const char *jobs_path)
{
    sl_jobs_info_t i;
    char loc[128];
    sl_jobs_job_info(job, &i);
    snprintf(loc, sizeof(loc), "%s%s", jobs_path, i.id);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(i.id));
    json_object_set_new(o, "state", json_string(sl_jobs_state_name(i.state)));
    json_object_set_new(o, "location", json_string(loc));
    json_object_set_new(o, "route", json_string(i.route));
    json_object_set_new(o, "executor", json_string(i.executor));
    json_object_set_new(o, "method", json_string(i.method));
    json_object_set_new(o, "path", json_string(i.path));
    json_object_set_new(o, "traceparent", json_string(i.traceparent));
    json_object_set_new(o, "headers", headers_json(&i));
    json_object_set_new(o, "created_ms", ms_or_null(i.created_ms));
    json_object_set_new(o, "started_ms", ms_or_null(i.started_ms));
    json_object_set_new(o, "ended_ms", ms_or_null(i.ended_ms));
    json_object_set_new(o, "exit_code", i.exit_code >= 0 ? json_integer(i.exit_code) : json_null());
    json_object_set_new(o, "first_seq", json_integer((json_int_t)i.first_seq));
    json_object_set_new(o, "last_seq", json_integer((json_int_t)i.last_seq));
    json_object_set_new(o, "dropped_upto", json_integer((json_int_t)i.dropped_upto));
    json_object_set_new(o, "data_bytes", json_integer((json_int_t)i.data_bytes));
    if (i.delivery_attempts) { /* reply_to.c's outcome */
        json_t *r = json_pack("{si}", "attempts", i.delivery_attempts);
        json_object_set_new(r, "status",
                            i.delivery_status ? json_integer(i.delivery_status) : json_null());
        if (i.delivery_error[0])
            json_object_set_new(r, "error", json_string(i.delivery_error));
        json_object_set_new(o, "reply_to", r);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}


void sl_reply_job_headers(sl_req_t *req, sl_jobs_job_t *job, const char *jobs_path)
{
    sl_jobs_info_t i;
    sl_jobs_job_info(job, &i);
    sl_resp_header_add(req, "job-id", i.id);
    sl_resp_header_add(req, "location", sl_pool_printf(&req->pool, "%s%s", jobs_path, i.id));
}

int sl_reply_accepted(sl_req_t *req, sl_jobs_job_t *job, const char *jobs_path, int pref_applied)
{
    char *s = sl_reply_status_json(job, jobs_path);
    size_t n = strlen(s);
    char *body = sl_pool_alloc(&req->pool, n + 1);
    memcpy(body, s, n);
    body[n] = '\n';
    free(s);
    sl_reply_job_headers(req, job, jobs_path);
    sl_resp_header_add(req, "retry-after", "1");
    if (pref_applied)
        sl_resp_header_add(req, "preference-applied", "respond-async");
    return sl_resp_simple(req, 202, "application/json", body, n + 1);
}

int sl_reply_result_status(sl_jobs_state_t s)
{
    switch (s) {
    case SL_JOBS_SUCCEEDED: return 200;
    case SL_JOBS_FAILED: return 500;
    case SL_JOBS_CANCELLED: return 409;
    case SL_JOBS_TIMED_OUT: return 504;
    default: return 202;
    }
}

/* RFC 7240: a comma-separated list; parameters after ';' are ignored. */
void sl_reply_prefer(const sl_req_t *req, int *async, int64_t *wait)
{
    *async = 0;
    *wait = -1;
    for (size_t i = 0; i < req->headers.n; i++) {
        const sl_header_t *h = &req->headers.v[i];
        if (!sl_str_eq(h->name, "prefer"))
            continue;
        for (size_t a = 0; a < h->value.n;) {
            size_t e = a;
            while (e < h->value.n && h->value.p[e] != ',')
                e++;
            sl_str_t tok = {h->value.p + a, e - a};
            for (size_t k = 0; k < tok.n; k++)
                if (tok.p[k] == ';')
                    tok.n = k;
            tok = sl_str_trim_ows(tok);
            if (sl_str_caseeq(tok, "respond-async"))
                *async = 1;
            else if (tok.n > 5 && strncasecmp(tok.p, "wait=", 5) == 0)
                *wait = sl_str_to_u64((sl_str_t){tok.p + 5, tok.n - 5});
            a = e + 1;
        }
    }
}
