/* sluice - SPDX-License-Identifier: MIT
 *
 * The "job" handler: each request on the route becomes a job on the
 * route's executor, answered in the client's reply mode, falling back to
 * the route's: Prefer: respond-async -> 202 + Location; Prefer: wait=N ->
 * the result if done within N s, else 202; otherwise a stream (raw bytes,
 * or SSE with Accept: text/event-stream) that starts with job-id and
 * location at once. The request body, if any, goes to the job's stdin.
 */
#include "reply_int.h"
#include "reply.h"
#include "../config.h"
#include "../conn.h"
#include "../log.h"
#include <stdio.h>
#include <strings.h>
#include <sys/random.h>

typedef struct job_route {
    const sl_jobs_exec_def_t *exec;
    sl_reply_owner_rule_t owner;
    int async_default;
    int cancel_on_disconnect;
    char *route;
    char *jobs_path;
    char *rec[SL_JOBS_REC_MAX]; /* request headers the job records */
    size_t nrec;
} job_route_t;

static void free_state(void *state)
{
    job_route_t *s = state;
    if (!s)
        return;
    sl_free(s->route);
    sl_free(s->jobs_path);
    sl_reply_owner_dispose(&s->owner);
    for (size_t i = 0; i < s->nrec; i++)
        sl_free(s->rec[i]);
    sl_free(s);
}

/* RFC 9110 token characters, lower-case only: request field names are
 * lower-cased on the way in, so an upper-case entry could never match. */
static int rec_name_ok(const char *n)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    size_t len = strlen(n);
    if (len == 0 || len > 128)
        return 0;
    for (const char *c = n; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || strchr(extra, *c)))
            return 0;
    return 1;
}

static int parse_record(json_t *route, const char *path, job_route_t *s, char *err, size_t errlen)
{
    static const char *const dflt[] = {"content-type", "user-agent", "x-request-id"};
    json_t *a = json_object_get(route, "record_headers");
    size_t n = a ? json_array_size(a) : SL_ARRAY_LEN(dflt);
    if ((a && !json_is_array(a)) || n > SL_JOBS_REC_MAX) {
        snprintf(err, errlen, "%s.record_headers: must be an array of at most %d header names",
                 path, SL_JOBS_REC_MAX);
        return SL_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = a ? json_string_value(json_array_get(a, i)) : dflt[i];
        if (!name || !rec_name_ok(name)) {
            snprintf(err, errlen, "%s.record_headers[%zu]: must be a lower-case header name", path,
                     i);
            return SL_EINVAL;
        }
        for (size_t k = 0; k < s->nrec; k++) {
            if (strcmp(s->rec[k], name) == 0) {
                snprintf(err, errlen, "%s.record_headers[%zu]: \"%s\" listed twice", path, i, name);
                return SL_EINVAL;
            }
        }
        s->rec[s->nrec++] = sl_strdup(name);
    }
    return 0;
}

static int configure(json_t *route, const char *path, void **state, char *err, size_t errlen)
{
    static const char *const keys[] = {"executor",  "reply",          "cancel_on_disconnect",
                                       "jobs_path", "record_headers", "owner"};
    const char *exec, *reply, *jobs_path;
    job_route_t *s = sl_calloc(1, sizeof(*s));
    *state = s;
    if (sl_router_check_keys(route, path, keys, SL_ARRAY_LEN(keys), err, errlen))
        return SL_EINVAL;
    if (sl_conf_get_str(route, path, "executor", NULL, &exec, err, errlen) ||
        sl_conf_get_str(route, path, "reply", "stream", &reply, err, errlen) ||
        sl_conf_get_str(route, path, "jobs_path", "/jobs/", &jobs_path, err, errlen) ||
        sl_conf_get_bool(route, path, "cancel_on_disconnect", 0, &s->cancel_on_disconnect, err,
                         errlen))
        return SL_EINVAL;
    if (parse_record(route, path, s, err, errlen) ||
        sl_reply_owner_parse(route, path, &s->owner, err, errlen))
        return SL_EINVAL;
    if (!exec || !(s->exec = sl_jobs_exec_find(exec))) {
        snprintf(err, errlen, "%s.executor: must name an entry of \"executors\"", path);
        return SL_EINVAL;
    }
    if (strcmp(reply, "stream") != 0 && strcmp(reply, "async") != 0) {
        snprintf(err, errlen, "%s.reply: must be \"stream\" or \"async\"", path);
        return SL_EINVAL;
    }
    s->async_default = strcmp(reply, "async") == 0;
    json_t *p = json_object_get(route, "path");
    s->route = sl_strdup(json_is_string(p) ? json_string_value(p) : "");
    s->jobs_path = sl_strdup(jobs_path);
    return 0;
}

static int wants_sse(const sl_req_t *req)
{
    const sl_header_t *h = sl_req_header(req, "accept");
    return h && memmem(h->value.p, h->value.n, "text/event-stream", 17) != NULL;
}

/* W3C trace context: keep a well-formed one, else start a trace. */
static sl_str_t traceparent(sl_req_t *req)
{
    const sl_header_t *h = sl_req_header(req, "traceparent");
    if (h && sl_traceparent_is_valid(h->value))
        return h->value;
    uint8_t r[24];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        memset(r, 0x5a, sizeof(r));
    char *s = sl_pool_alloc(&req->pool, 56), *o = s;
    o += sprintf(o, "00-");
    for (int i = 0; i < 16; i++)
        o += sprintf(o, "%02x", r[i]);
    o += sprintf(o, "-");
    for (int i = 16; i < 24; i++)
        o += sprintf(o, "%02x", r[i]);
    sprintf(o, "-01");
    return (sl_str_t){s, 55};
}

/* The value of every field called name, joined with ", " in the request's
 * pool; cut one byte past the job's bound (the store cuts the rest). */
static sl_str_t joined(sl_req_t *req, const char *name)
{
    size_t cap = SL_JOBS_REC_VALUE_MAX + 1, n = 0;
    char *o = NULL;
    for (size_t i = 0; i < req->headers.n && n < cap; i++) {
        const sl_header_t *h = &req->headers.v[i];
        if (!sl_str_eq(h->name, name))
            continue;
        if (!o)
            o = sl_pool_alloc(&req->pool, cap);
        else {
            size_t sep = SL_MIN((size_t)2, cap - n);
            memcpy(o + n, ", ", sep);
            n += sep;
        }
        size_t take = SL_MIN(h->value.n, cap - n);
        memcpy(o + n, h->value.p, take);
        n += take;
    }
    return (sl_str_t){o, n};
}

/* The route's record_headers that the request has, in route order. */
static size_t recorded(sl_req_t *req, const job_route_t *s, sl_header_t *out)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nrec; i++) {
        sl_str_t v = joined(req, s->rec[i]);
        if (!v.p)
            continue;
        out[n].name = (sl_str_t){s->rec[i], strlen(s->rec[i])};
        out[n++].value = v;
    }
    return n;
}

static void refuse(sl_req_t *req, int rv, const char *err)
{
    req->cbs = &sl_req_discard_cbs;
    if (rv == SL_ECONFLICT) {
        sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id, "client sent %s", err);
        sl_resp_error(req, 422, err);
        return;
    }
    if (rv == SL_EINVAL) {
        sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id, "client sent a bad job request: %s",
                      err);
        sl_resp_error(req, 400, err);
        return;
    }
    sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id, "job refused: %s", err);
    /* One owner's share full: 429; the whole gateway full: 503. A share
     * frees when a job expires, so the hint is the TTL sweep's pace. */
    sl_resp_header_add(req, "retry-after", rv == SL_ELIMIT ? "10" : "1");
    sl_resp_error(req, rv == SL_ELIMIT ? 429 : 503, err);
}

/* The body's digest under an Idempotency-Key: checked (a replay's,
 * compared already), "" for no body, or hashed on its way to a new job;
 * a new job keeps it for replays. */
static void idem_body(sl_reply_t *r, sl_jobs_job_t *job, int existing, const char *checked)
{
    sl_req_t *req = r->req;
    if (checked) {
        snprintf(r->body_fp, sizeof(r->body_fp), "%s", checked);
    } else if (req->body_done || req->content_length == 0) {
        char known[SL_JOBS_FP_LEN + 1];
        struct evp_md_ctx_st *md = sl_reply_body_hash_begin();
        if (md)
            sl_reply_body_hash_end(md, r->body_fp);
        if (!existing && md && !sl_jobs_get_body_fp(job, known)) /* submit had none */
            sl_jobs_set_body_fp(job, r->body_fp);
    } else if (!existing) {
        r->body_md = sl_reply_body_hash_begin();
        /* The 202 ends the request: read (and hash) the body first, so
         * that replays can be compared with it. */
        r->answer_after_body = r->mode == SL_REPLY_ACCEPTED;
    }
}

/* Answer with job (the reference is taken): the reply mode, headers, and
 * the body to the job's stdin (fd >= 0). idem: the request has an
 * Idempotency-Key; checked: a replay's body digest, already compared. */
static void answer_job(sl_req_t *req, sl_jobs_job_t *job, int existing, int fd, int idem,
                       const char *checked, int async, int64_t wait)
{
    const job_route_t *s = req->route->state;
    int sse = wants_sse(req);
    sl_reply_mode_t mode = wait >= 0                     ? SL_REPLY_WAIT
                           : (async || s->async_default) ? SL_REPLY_ACCEPTED
                           : sse                         ? SL_REPLY_SSE
                                                         : SL_REPLY_RAW;
    sl_reply_t *r = sl_reply_new(req, job, mode);
    sl_jobs_job_unref(job);
    r->jobs_path = s->jobs_path;
    r->cancel_on_disconnect = s->cancel_on_disconnect;
    r->async_pref = async;
    if (idem)
        idem_body(r, job, existing, checked);
    if (existing)
        sl_resp_header_add(req, "idempotent-replay", "?1");
    r->replay = existing;
    if (mode == SL_REPLY_RAW || mode == SL_REPLY_SSE) {
        req->res.status = 200;
        req->res.content_length = -1;
        sl_resp_header_add(req, "content-type",
                           sse ? "text/event-stream" : sl_jobs_exec_content_type(s->exec));
        sl_resp_header_add(req, "cache-control", "no-cache");
        sl_resp_header_add(req, "x-accel-buffering", "no");
    }
    if (fd >= 0) {
        /* A 202 ends the request: the whole body goes to stdin first. */
        r->answer_after_body = mode == SL_REPLY_ACCEPTED;
        sl_reply_stdin(r, fd);
    }
    if (mode == SL_REPLY_WAIT)
        sl_reply_wait(r, (double)SL_MIN(wait, sl_jobs_config()->max_wait_s));
    else
        sl_reply_go(r);
}

/* A replay with a body: answered once the body has all arrived, hashed on
 * the way, and compared with the body that made the job. */
typedef struct replay {
    sl_jobs_job_t *job;
    struct evp_md_ctx_st *md;
    int async;
    int64_t wait;
} replay_t;

static void replay_release(replay_t *p)
{
    sl_reply_body_hash_free(p->md);
    p->md = NULL;
    if (p->job)
        sl_jobs_job_unref(p->job);
    p->job = NULL;
}

static void replay_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    replay_t *p = req->hdata;
    char mine[SL_JOBS_FP_LEN + 1], orig[SL_JOBS_FP_LEN + 1];
    if (p->md)
        sl_reply_body_hash_feed(p->md, data, len);
    sl_req_consume(req, len);
    if (!fin)
        return;
    sl_jobs_job_t *job = p->job;
    int known = sl_jobs_get_body_fp(job, orig);
    p->job = NULL;
    if (p->md) {
        sl_reply_body_hash_end(p->md, mine);
        p->md = NULL;
    } else {
        mine[0] = '\0'; /* no hash context: never a match */
    }
    req->hdata = NULL;
    req->cbs = &sl_req_discard_cbs;
    if (known && mine[0] && strcmp(mine, orig) == 0) {
        answer_job(req, job, 1, -1, 1, mine, p->async, p->wait);
        return;
    }
    sl_jobs_job_unref(job);
    sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id, "client sent an Idempotency-Key %s",
                  known ? "with another body" : "while the first request's body is still arriving");
    /* draft-ietf-httpapi-idempotency-key-header: 409 while the original is
     * still being processed, 422 for a different request. */
    sl_resp_error(req, known ? 422 : 409,
                  known ? "Idempotency-Key already used for a different request"
                        : "the request that first used this Idempotency-Key is still in progress");
}

static void replay_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    if (req->hdata)
        replay_release(req->hdata);
}

static const sl_handler_cbs_t replay_cbs = {.on_body = replay_body, .on_close = replay_close};

static void check_replay(sl_req_t *req, sl_jobs_job_t *job, int async, int64_t wait)
{
    replay_t *p = sl_pool_alloc(&req->pool, sizeof(*p));
    p->job = job;
    p->md = sl_reply_body_hash_begin();
    p->async = async;
    p->wait = wait;
    req->hdata = p;
    req->cbs = &replay_cbs;
}

static void on_req(sl_req_t *req)
{
    const job_route_t *s = req->route->state;
    const sl_header_t *idem = sl_req_header(req, "idempotency-key");
    int async, existing, fd;
    int64_t wait;
    char err[256];
    if (idem && (idem->value.n == 0 || idem->value.n > 256)) {
        refuse(req, SL_EINVAL, "idempotency-key: 1 to 256 characters");
        return;
    }
    char owner[SL_JOBS_OWNER_LEN + 1];
    if (sl_reply_owner_of(req, &s->owner, owner) != 0) {
        req->cbs = &sl_req_discard_cbs;
        sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id,
                      "client sent a job request without its owner credential (%s)", s->owner.name);
        sl_resp_error(req, 401, "this job route needs an owner credential");
        return;
    }
    sl_header_t rec[SL_JOBS_REC_MAX];
    char fp[SL_JOBS_FP_LEN + 1] = "";
    if (idem)
        sl_reply_idem_fingerprint(req, fp);
    sl_reply_prefer(req, &async, &wait);
    /* No body: its digest is known now, and goes into the key's first
     * write, so that a replay on another instance never finds it missing. */
    char body_fp[SL_JOBS_FP_LEN + 1] = "";
    if (idem && (req->body_done || req->content_length == 0)) {
        struct evp_md_ctx_st *md = sl_reply_body_hash_begin();
        if (md)
            sl_reply_body_hash_end(md, body_fp);
    }
    sl_jobs_spec_t spec = {
        .exec = s->exec,
        .cfg = sl_conn_config(req->conn),
        .route = s->route,
        .owner = owner,
        .method = req->method,
        .path = req->path,
        .query = req->query,
        .traceparent = traceparent(req),
        .idem_key = idem ? idem->value : (sl_str_t){NULL, 0},
        .idem_fp = fp,
        .body_fp = body_fp[0] ? body_fp : NULL,
        .want_stdin = !req->body_done && req->content_length != 0,
        .headers = req->headers.v,
        .nheaders = req->headers.n,
        .recorded = rec,
        .nrecorded = recorded(req, s, rec),
    };
    sl_jobs_job_t *job;
    int rv = sl_jobs_submit(&spec, &job, &existing, &fd, err, sizeof(err));
    /* a request header or a pool copy: lives as long as req */
    req->log_trace_id = (sl_str_t){spec.traceparent.p + 3, 32};
    if (rv != 0) {
        refuse(req, rv, err);
        return;
    }
    const char *jid = sl_jobs_job_id(job);
    sl_req_note(req, &req->log_job_id, jid, strlen(jid));
    if (existing && spec.want_stdin) {
        check_replay(req, job, async, wait);
        return;
    }
    answer_job(req, job, existing, fd, idem != NULL, NULL, async, wait);
}

static int rate_key(const sl_req_t *req, char *out, size_t cap)
{
    const job_route_t *s = req->route->state;
    return sl_reply_owner_key(req, &s->owner, out, cap);
}

const sl_handler_def_t sl_reply_job_handler = {
    .name = "job",
    .configure = configure,
    .free_state = free_state,
    .on_req = on_req,
    .rate_key = rate_key,
};
