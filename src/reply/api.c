/* sluice - SPDX-License-Identifier: MIT
 *
 * The "jobs_api" handler, mounted at a prefix ("/jobs" in the examples):
 *   GET    /jobs?state=&route=&limit=&after=   list (paged, creation order)
 *   GET    /jobs/{id}                          status JSON
 *   DELETE /jobs/{id}                          cancel; 202 + status JSON
 *   GET    /jobs/{id}/events                   SSE: retained events, then live;
 *                                              Last-Event-ID or ?from=N resumes after N
 *   GET    /jobs/{id}/result                   the final body (Prefer: wait=N waits)
 *   GET    /jobs/ws (WebSocket)                subscriptions to many jobs (ws_sub.c)
 * Unknown id 404, expired id 410. A job the caller may not see (owner.c)
 * is 404 too, so existence does not leak; listing shows the caller's own
 * jobs, all of them for the admin, and is off (404) for a caller without
 * an owner.
 */
#include "reply_int.h"
#include "reply.h"
#include "../config.h"
#include "../log.h"
#include "../worker.h"
#include "../ws/ws.h"
#include <stdio.h>
#include <stdlib.h>

#define LIST_DEFAULT 100
#define LIST_MAX 1000

typedef struct api_state {
    char *prefix; /* route path without a trailing '/' */
    sl_reply_owner_rule_t owner;
    sl_ws_opts_t ws;
    size_t ws_max_jobs;
} api_state_t;

/* Options of the /jobs/ws sockets: name, default, bounds. */
typedef struct ws_opt {
    const char *key;
    int64_t def, min, max;
} ws_opt_t;

enum { W_JOBS, W_SENDQ, W_MSG, W_PING, W_IDLE, W_N };

static const ws_opt_t ws_opts[W_N] = {
    [W_JOBS] = {"ws_max_jobs", 64, 1, 4096},
    [W_SENDQ] = {"ws_send_queue_bytes", 1 << 20, 4096, 1 << 30},
    [W_MSG] = {"ws_max_message_bytes", 65536, 125, 1 << 24},
    [W_PING] = {"ws_ping_interval_s", 30, 0, 86400},
    [W_IDLE] = {"ws_idle_timeout_s", 120, 0, 86400},
};

static int configure_ws(json_t *route, const char *path, api_state_t *s, char *err, size_t errlen)
{
    int64_t v[W_N];
    for (size_t i = 0; i < W_N; i++)
        if (sl_conf_get_int(route, path, ws_opts[i].key, ws_opts[i].def, ws_opts[i].min,
                            ws_opts[i].max, &v[i], err, errlen))
            return SL_EINVAL;
    s->ws_max_jobs = (size_t)v[W_JOBS];
    s->ws.send_queue_bytes = (size_t)v[W_SENDQ];
    s->ws.max_message_bytes = (size_t)v[W_MSG];
    s->ws.ping_interval_s = (int)v[W_PING];
    s->ws.idle_timeout_s = (int)v[W_IDLE];
    s->ws.deflate = 1;
    return 0;
}

static void free_state(void *state)
{
    api_state_t *s = state;
    if (s) {
        sl_free(s->prefix);
        sl_reply_owner_dispose(&s->owner);
    }
    sl_free(s);
}

static int configure(json_t *route, const char *path, void **state, char *err, size_t errlen)
{
    const char *keys[W_N + 1] = {"owner"};
    for (size_t i = 0; i < W_N; i++)
        keys[i + 1] = ws_opts[i].key;
    api_state_t *s = sl_calloc(1, sizeof(*s));
    *state = s;
    if (sl_router_check_keys(route, path, keys, SL_ARRAY_LEN(keys), err, errlen))
        return SL_EINVAL;
    json_t *p = json_object_get(route, "path");
    const char *ps = json_is_string(p) ? json_string_value(p) : "/jobs";
    size_t n = strlen(ps);
    while (n && ps[n - 1] == '/')
        n--;
    s->prefix = sl_strndup(ps, n);
    if (sl_reply_owner_parse(route, path, &s->owner, err, errlen))
        return SL_EINVAL;
    return configure_ws(route, path, s, err, errlen);
}

static void answer_json(sl_req_t *req, int status, char *json)
{
    size_t n = strlen(json);
    char *body = sl_pool_alloc(&req->pool, n + 1);
    memcpy(body, json, n);
    body[n] = '\n';
    free(json);
    sl_resp_simple(req, status, "application/json", body, n + 1);
}

static void bad(sl_req_t *req, const char *msg)
{
    sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id, "client sent %s", msg);
    sl_resp_error(req, 400, msg);
}

/* The page as JSON; releases the jobs (not the array). */
static void answer_list(sl_req_t *req, sl_jobs_job_t **jobs, size_t n, size_t limit,
                        const char *jobs_path)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char *s = sl_reply_status_json(jobs[i], jobs_path);
        json_array_append_new(arr, json_loads(s, 0, NULL));
        free(s);
    }
    json_t *o = json_object();
    json_object_set_new(o, "jobs", arr);
    json_object_set_new(o, "next",
                        n == limit ? json_string(sl_jobs_job_id(jobs[n - 1])) : json_null());
    for (size_t i = 0; i < n; i++)
        sl_jobs_job_unref(jobs[i]);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    answer_json(req, 200, s);
}

/* A request waiting for the shared store (the Redis store): a lookup or
 * a listing; req->hdata points here, so one close callback serves both. */
typedef struct waiting {
    sl_req_t *req;
    sl_jobs_lookup_t *l;
} waiting_t;

static void waiting_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    waiting_t *w = req->hdata;
    sl_jobs_lookup_cancel(w->l);
    req->hdata = NULL;
}

static const sl_handler_cbs_t waiting_cbs = {.on_body = sl_req_discard_body,
                                             .on_close = waiting_close};

/* The answer came: the request is the handler's again. */
static sl_req_t *waited(waiting_t *w)
{
    sl_req_t *req = w->req;
    req->cbs = &sl_req_discard_cbs;
    req->hdata = NULL;
    return req;
}

static void wait_on(sl_req_t *req, waiting_t *w)
{
    req->hdata = w;
    req->cbs = &waiting_cbs;
}

typedef struct list_wait {
    waiting_t w;
    const char *jobs_path;
    size_t limit;
} list_wait_t;

static void on_listed(void *arg, sl_jobs_job_t **jobs, size_t n, int status)
{
    list_wait_t *p = arg;
    sl_req_t *req = waited(&p->w);
    if (status == SL_JOBS_UNAVAILABLE) {
        for (size_t i = 0; i < n; i++)
            sl_jobs_job_unref(jobs[i]);
        sl_resp_header_add(req, "retry-after", "1");
        sl_resp_error(req, 503, "job store unavailable");
        return;
    }
    answer_list(req, jobs, n, p->limit, p->jobs_path);
}

static void list(sl_req_t *req, const sl_reply_caller_t *c, const char *jobs_path)
{
    sl_str_t v, after = {NULL, 0};
    int state = -1;
    int64_t limit = LIST_DEFAULT;
    char *route = NULL;
    if (sl_query_get(req->query, "state", &v) == 0 && (state = sl_jobs_state_parse(v)) < 0) {
        bad(req, "a bad state= (queued, running, succeeded, failed, cancelled, timed_out)");
        return;
    }
    if (sl_query_get(req->query, "limit", &v) == 0 &&
        ((limit = sl_str_to_u64(v)) < 1 || limit > LIST_MAX)) {
        bad(req, "a bad limit= (1..1000)");
        return;
    }
    if (sl_query_get(req->query, "route", &v) == 0)
        route = sl_pool_strndup(&req->pool, v.p, v.n);
    sl_query_get(req->query, "after", &after);
    if (!c->admin && !c->owner[0]) {
        /* Without owners the job id is the capability: no listing. */
        sl_resp_error(req, 404, "listing needs an owner or the admin token");
        return;
    }
    sl_worker_t *w = sl_worker_current();
    int status;
    list_wait_t *p = sl_pool_alloc(&req->pool, sizeof(*p));
    *p = (list_wait_t){{req, NULL}, jobs_path, (size_t)limit};
    /* Across instances with the Redis store; the admin sees this one's. */
    p->w.l = sl_jobs_list_async(state, route, c->admin ? NULL : c->owner, after, (size_t)limit,
                                w->loop, w->id, on_listed, p, &status);
    if (p->w.l) {
        wait_on(req, &p->w);
        return;
    }
    if (status == SL_JOBS_UNAVAILABLE) {
        sl_resp_header_add(req, "retry-after", "1");
        sl_resp_error(req, 503, "job store unavailable");
        return;
    }
    sl_jobs_job_t **jobs = sl_malloc((size_t)limit * sizeof(*jobs));
    size_t n = sl_jobs_list(state, route, c->admin ? NULL : c->owner, after, jobs, (size_t)limit);
    answer_list(req, jobs, n, (size_t)limit, jobs_path);
    sl_free(jobs);
}

/* Resume point: Last-Event-ID wins over ?from=. */
static int resume_from(sl_req_t *req, uint64_t *from)
{
    const sl_header_t *h = sl_req_header(req, "last-event-id");
    sl_str_t v;
    int64_t x = 0;
    if (h)
        x = sl_str_to_u64(h->value);
    else if (sl_query_get(req->query, "from", &v) == 0)
        x = sl_str_to_u64(v);
    if (x < 0)
        return SL_EINVAL;
    *from = (uint64_t)x;
    return 0;
}

static void events(sl_req_t *req, sl_jobs_job_t *job, const char *jobs_path)
{
    uint64_t from;
    sl_jobs_info_t info;
    if (resume_from(req, &from) != 0) {
        bad(req, "a bad Last-Event-ID or from= (an event sequence number)");
        return;
    }
    /* Past the end: events that do not exist yet cannot be resumed from,
     * and a subscriber waiting for them would wait for nothing. */
    sl_jobs_job_info(job, &info);
    if (from > info.last_seq) {
        bad(req,
            sl_pool_printf(&req->pool, "Last-Event-ID or from= past the job's last event (%llu)",
                           (unsigned long long)info.last_seq));
        return;
    }
    if (from > 0)
        sl_jobs_note_resume();
    sl_reply_t *r = sl_reply_new(req, job, SL_REPLY_SSE);
    r->jobs_path = jobs_path;
    r->next = from;
    req->res.status = 200;
    req->res.content_length = -1;
    sl_reply_job_headers(req, job, jobs_path);
    sl_resp_header_add(req, "content-type", "text/event-stream");
    sl_resp_header_add(req, "cache-control", "no-cache");
    sl_resp_header_add(req, "x-accel-buffering", "no");
    sl_reply_go(r);
}

static void result(sl_req_t *req, sl_jobs_job_t *job, const char *jobs_path)
{
    int async;
    int64_t wait;
    sl_jobs_info_t info;
    sl_jobs_job_info(job, &info);
    sl_reply_prefer(req, &async, &wait);
    if (!sl_jobs_state_is_final(info.state) && wait < 0) {
        sl_reply_accepted(req, job, jobs_path, 0);
        return;
    }
    sl_reply_t *r = sl_reply_new(req, job, SL_REPLY_WAIT);
    r->jobs_path = jobs_path;
    sl_reply_wait(r, (double)SL_MIN(wait < 0 ? 0 : wait, sl_jobs_config()->max_wait_s));
}

static void method_not_allowed(sl_req_t *req, const char *allow)
{
    sl_resp_header_add(req, "allow", allow);
    sl_resp_error(req, 405, "method not allowed");
}

static void serve_job(sl_req_t *req, sl_jobs_job_t *job, int status, sl_str_t sub,
                      const char *jobs_path, sl_str_t id)
{
    const char *msg;
    if (!job) {
        if (status == SL_JOBS_UNAVAILABLE) {
            sl_log_stream(SL_LOG_WARN, req->conn, req->stream_id,
                          "job %.*s: the job store cannot answer", (int)id.n, id.p);
            sl_resp_header_add(req, "retry-after", "1");
        }
        int code = sl_reply_lookup_error(status, &msg);
        sl_resp_error(req, code, msg);
        return;
    }
    req->log_job_id = id; /* part of the request's path */
    int get = sl_str_eq(req->method, "GET") || sl_str_eq(req->method, "HEAD");
    if (sub.n == 0) {
        if (sl_str_eq(req->method, "DELETE")) {
            sl_jobs_cancel(job);
            answer_json(req, 202, sl_reply_status_json(job, jobs_path));
        } else if (get) {
            answer_json(req, 200, sl_reply_status_json(job, jobs_path));
        } else {
            method_not_allowed(req, "GET, HEAD, DELETE");
        }
    } else if (!get) {
        method_not_allowed(req, "GET, HEAD");
    } else if (sl_str_eq(sub, "/events")) {
        events(req, job, jobs_path);
    } else if (sl_str_eq(sub, "/result")) {
        result(req, job, jobs_path);
    } else {
        sl_resp_error(req, 404, "no such job resource (status, /events, /result)");
    }
    sl_jobs_job_unref(job);
}

typedef struct pending {
    waiting_t w;
    sl_reply_caller_t caller;
    sl_str_t id, sub; /* in req's path */
    const char *jobs_path;
} pending_t;

static void on_found(void *arg, sl_jobs_job_t *job, int status)
{
    pending_t *p = arg;
    sl_req_t *req = waited(&p->w);
    sl_reply_may_see(&p->caller, &job, &status);
    serve_job(req, job, status, p->sub, p->jobs_path, p->id);
}

static void on_job(sl_req_t *req, const sl_reply_caller_t *c, sl_str_t id, sl_str_t sub,
                   const char *jobs_path)
{
    int status;
    sl_jobs_job_t *job;
    pending_t *p = sl_pool_alloc(&req->pool, sizeof(*p));
    *p = (pending_t){{req, NULL}, *c, id, sub, jobs_path};
    p->w.l = sl_reply_find_job(c, id, on_found, p, &job, &status);
    if (p->w.l) {
        wait_on(req, &p->w);
        return;
    }
    serve_job(req, job, status, sub, jobs_path, id);
}

static void on_req(sl_req_t *req)
{
    const api_state_t *s = req->route->state;
    size_t pl = strlen(s->prefix);
    req->cbs = &sl_req_discard_cbs;
    const char *jobs_path = sl_pool_printf(&req->pool, "%s/", s->prefix);
    sl_str_t rest = {req->path.p + pl, req->path.n - pl};
    if (req->path.n < pl || (rest.n && rest.p[0] != '/')) {
        sl_resp_error(req, 404, "not found");
        return;
    }
    sl_reply_caller_t caller;
    sl_reply_caller_of(req, &s->owner, &caller);
    if (rest.n <= 1) {
        if (sl_str_eq(req->method, "GET") || sl_str_eq(req->method, "HEAD"))
            list(req, &caller, jobs_path);
        else
            method_not_allowed(req, "GET, HEAD");
        return;
    }
    if (sl_str_eq(rest, "/ws")) {
        sl_reply_ws_start(req, &s->ws, s->ws_max_jobs, &caller);
        return;
    }
    sl_str_t id = {rest.p + 1, 0};
    while (id.n < rest.n - 1 && id.p[id.n] != '/')
        id.n++;
    sl_str_t sub = {id.p + id.n, rest.n - 1 - id.n};
    on_job(req, &caller, id, sub, jobs_path);
}

static int rate_key(const sl_req_t *req, char *out, size_t cap)
{
    const api_state_t *s = req->route->state;
    return sl_reply_owner_key(req, &s->owner, out, cap);
}

const sl_handler_def_t sl_reply_api_handler = {
    .name = "jobs_api",
    .configure = configure,
    .free_state = free_state,
    .on_req = on_req,
    .rate_key = rate_key,
};
