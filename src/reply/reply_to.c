/* sluice - SPDX-License-Identifier: MIT
 *
 * reply_to: when a job of an executor with "reply_to" reaches a final
 * state, its status JSON (the one GET /jobs/{id} answers) is POSTed to a
 * path on a configured upstream group - never to anything named by the
 * request - with job-id and traceparent. Up to 3 tries (back-off 0.5 s,
 * then 1 s) until a 2xx; the outcome goes into the job's status
 * ("reply_to", through sl_jobs_set_delivery) and a failure is logged.
 *
 * jobs/ does not know this exists: "reply_to" is a key this file adds to
 * every executor object and the POST starts from an observer of job ends
 * (sl_jobs_observe), both on the jobs thread. Runs through src/proxy/'s
 * client (the group's balancing, passive health, TLS and timeouts), one
 * connection per try (connection: close: a POST is not sent again on a
 * pooled connection the server may have closed).
 */
#include "reply_int.h"
#include "reply.h"
#include "../config.h"
#include "../log.h"
#include "../proxy/proxy.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define TRIES 3
#define EVENTS_PER_READ 64

typedef struct reply_to_cfg {
    const sl_config_t *cfg;
    char *upstream, *path;
    int include_result;
    int64_t max_result_bytes;
} reply_to_cfg_t;

typedef struct post {
    sl_jobs_job_t *job; /* referenced */
    const reply_to_cfg_t *rt;
    sl_proxy_client_t *cl; /* the try in flight, or NULL */
    int status, attempts;
    ev_timer retry;
    char *body; /* the JSON, made once for every try */
    size_t body_len;
    struct post *prev, *next; /* in flight, for shutdown */
} post_t;

static post_t *inflight; /* jobs thread only */
static int key_slot = -1; /* "reply_to" among the executor keys */

/* ---- config ---- */

static void cfg_free(void *v)
{
    reply_to_cfg_t *r = v;
    if (!r)
        return;
    sl_free(r->upstream);
    sl_free(r->path);
    sl_free(r);
}

static int cfg_parse(json_t *v, const char *path, void **out, char *err, size_t errlen)
{
    char p[300];
    const char *ups, *rpath, *key;
    int64_t inc, max;
    json_t *it;
    *out = NULL;
    snprintf(p, sizeof(p), "%s.reply_to", path);
    if (!json_is_object(v)) {
        snprintf(err, errlen, "%s: must be an object", p);
        return SL_EINVAL;
    }
    json_object_foreach(v, key, it)
    {
        if (strcmp(key, "upstream") && strcmp(key, "path") && strcmp(key, "include_result") &&
            strcmp(key, "max_result_bytes")) {
            snprintf(err, errlen, "%s.%s: unknown key", p, key);
            return SL_EINVAL;
        }
    }
    it = json_object_get(v, "include_result");
    if (it && !json_is_boolean(it)) {
        snprintf(err, errlen, "%s.include_result: must be true or false", p);
        return SL_EINVAL;
    }
    inc = it && json_is_true(it);
    if (sl_conf_get_str(v, p, "upstream", NULL, &ups, err, errlen) ||
        sl_conf_get_str(v, p, "path", "/", &rpath, err, errlen) ||
        sl_conf_get_int(v, p, "max_result_bytes", 1 << 20, 0, 64 << 20, &max, err, errlen))
        return SL_EINVAL;
    const sl_config_t *cfg = sl_config_loading();
    if (!sl_proxy_upstream_exists(cfg, ups)) {
        snprintf(err, errlen, "%s.upstream: must name a group in \"upstreams\"", p);
        return SL_EINVAL;
    }
    if (rpath[0] != '/' || strpbrk(rpath, " \r\n\t")) {
        snprintf(err, errlen, "%s.path: must start with '/' and hold no spaces", p);
        return SL_EINVAL;
    }
    reply_to_cfg_t *r = sl_calloc(1, sizeof(*r));
    r->cfg = cfg;
    r->upstream = sl_strdup(ups);
    r->path = sl_strdup(rpath);
    r->include_result = (int)inc;
    r->max_result_bytes = max;
    *out = r;
    return 0;
}

/* ---- the body ---- */

/* The retained data bytes, or 1 when they exceed max or some were dropped. */
static int collect(sl_jobs_job_t *job, size_t max, uint8_t **data, size_t *len)
{
    sl_jobs_event_t *evs[EVENTS_PER_READ];
    sl_jobs_read_t r;
    uint64_t after = 0;
    size_t n, cap = 0;
    int cut = 0;
    *data = NULL;
    *len = 0;
    do {
        memset(&r, 0, sizeof(r));
        n = sl_jobs_read(job, after, evs, EVENTS_PER_READ, &r);
        if (r.dropped_to)
            cut = 1;
        for (size_t i = 0; i < n; i++) {
            after = evs[i]->seq;
            if (evs[i]->type == SL_JOBS_EV_DATA && !cut) {
                if (*len + evs[i]->len > max) {
                    cut = 1;
                } else {
                    if (*len + evs[i]->len > cap) {
                        cap = SL_MAX(cap * 2, *len + evs[i]->len);
                        *data = sl_realloc(*data, cap ? cap : 1);
                    }
                    memcpy(*data + *len, evs[i]->data, evs[i]->len);
                    *len += evs[i]->len;
                }
            }
            sl_jobs_event_unref(evs[i]);
        }
    } while (n > 0 && !cut);
    return cut;
}

static char *body_json(post_t *x)
{
    char *s = sl_reply_status_json(x->job, "/jobs/");
    json_t *o = json_loads(s, 0, NULL);
    free(s);
    SL_ASSERT(o); /* ours, and valid */
    if (x->rt->include_result) {
        uint8_t *d;
        size_t n;
        if (collect(x->job, (size_t)x->rt->max_result_bytes, &d, &n)) {
            json_object_set_new(o, "result_truncated", json_true());
        } else {
            char *b = sl_base64_encode(d, n);
            json_object_set_new(o, "result", json_string(b));
            sl_free(b);
        }
        sl_free(d);
    }
    char *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return out;
}

static char *build_head(void *arg, const char *host, size_t *len)
{
    const post_t *x = arg;
    sl_jobs_info_t i;
    sl_jobs_job_info(x->job, &i);
    const char *tp = i.traceparent;
    char *h = sl_strdup_printf(
        len,
        "POST %s HTTP/1.1\r\nhost: %s\r\nconnection: close\r\n"
        "content-type: application/json\r\ncontent-length: %zu\r\njob-id: %s\r\n%s%s%s\r\n",
        x->rt->path, host, x->body_len, i.id, tp[0] ? "traceparent: " : "", tp,
        tp[0] ? "\r\n" : "");
    return h;
}

/* ---- tries ---- */

static void try_post(post_t *x);

static void post_free(post_t *x)
{
    sl_proxy_client_cancel(x->cl);
    ev_timer_stop(sl_jobs_loop(), &x->retry);
    if (x->prev)
        x->prev->next = x->next;
    else
        inflight = x->next;
    if (x->next)
        x->next->prev = x->prev;
    sl_jobs_job_unref(x->job);
    free(x->body);
    sl_free(x);
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    try_post(t->data);
}

/* The try ended: status (0 when none) or error. */
static void tried(post_t *x, const char *error)
{
    int ok = !error && x->status >= 200 && x->status < 300;
    if (ok || x->attempts >= TRIES) {
        if (!ok)
            sl_log(SL_LOG_WARN, NULL, "job %s: reply_to %s%s failed after %d tries: %s", sl_jobs_job_id(x->job),
                   x->rt->upstream, x->rt->path, x->attempts, error ? error : "non-2xx status");
        sl_jobs_set_delivery(x->job, x->status, x->attempts,
                                ok      ? NULL
                                : error ? error
                                        : "non-2xx status");
        post_free(x);
        return;
    }
    sl_jobs_set_delivery(x->job, x->status, x->attempts, error ? error : "non-2xx status");
    ev_timer_set(&x->retry, 0.5 * x->attempts, 0.);
    ev_timer_start(sl_jobs_loop(), &x->retry);
}

static int on_head(void *arg, int status, const sl_header_t *f, size_t n)
{
    SL_UNUSED(f);
    SL_UNUSED(n);
    ((post_t *)arg)->status = status;
    return 1; /* the status is all that counts */
}

static void on_done(void *arg, const char *error)
{
    post_t *x = arg;
    x->cl = NULL; /* freed by the client after this call */
    tried(x, x->status ? NULL : error);
}

static const sl_proxy_client_cbs_t client_cbs = {
    .head = build_head,
    .on_head = on_head,
    .on_done = on_done,
};

static void try_post(post_t *x)
{
    char prefix[64];
    x->attempts++;
    x->status = 0;
    snprintf(prefix, sizeof(prefix), "job %s: reply_to: ", sl_jobs_job_id(x->job));
    x->cl =
        sl_proxy_client_start(x->rt->cfg, x->rt->upstream, sl_jobs_job_id(x->job), 0, prefix, &client_cbs, x);
    if (!x->cl) {
        tried(x, "no upstream server");
        return;
    }
    sl_proxy_client_send(x->cl, x->body, x->body_len);
    sl_proxy_client_end(x->cl);
}

static void on_job_end(sl_jobs_job_t *job)
{
    const reply_to_cfg_t *rt = sl_jobs_exec_key_value(sl_jobs_job_exec(job), key_slot);
    if (!rt)
        return;
    post_t *x = sl_calloc(1, sizeof(*x));
    sl_jobs_job_ref(job);
    x->job = job;
    x->rt = rt;
    x->body = body_json(x);
    x->body_len = strlen(x->body);
    ev_timer_init(&x->retry, on_retry, 0., 0.);
    x->retry.data = x;
    x->next = inflight;
    if (inflight)
        inflight->prev = x;
    inflight = x;
    try_post(x);
}

static void on_jobs_stop(void)
{
    while (inflight) {
        sl_log(SL_LOG_WARN, NULL, "job %s: reply_to abandoned at shutdown", sl_jobs_job_id(inflight->job));
        post_free(inflight);
    }
}

void sl_reply_to_register(void)
{
    static const sl_jobs_exec_key_t key = {"reply_to", cfg_parse, cfg_free};
    static const sl_jobs_observer_t observer = {on_job_end, on_jobs_stop};
    key_slot = sl_jobs_exec_key_register(&key);
    sl_jobs_observe(&observer);
}
