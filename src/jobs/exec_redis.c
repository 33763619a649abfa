/* sluice - SPDX-License-Identifier: MIT
 *
 * The "redis" executor: the work goes to external workers through a Redis
 * Stream read by a consumer group (docs/redis.md, "Work queue"). sluice
 * appends one entry per job (the request: method, path, query, the
 * configured header fields, the body up to max_body_bytes, the keys the
 * worker writes to and its lease); a worker claims it with XREADGROUP,
 * appends the job's events to the job's stream and acknowledges with
 * XACK. The job's events, sluice's own too (started, a cancel's end),
 * are written to that stream and come back through the follower, so
 * Redis alone orders them. Stopping sluice leaves these jobs running.
 */
#include "rstore.h"
#include "../config.h"
#include "../log.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct rx_opts {
    char *stream, *group;
    int64_t lease_s, max_attempts, max_body_bytes;
    sl_jobs_fields_t fields;
    int group_made; /* jobs thread: XGROUP CREATE sent */
} rx_opts_t;

/* A job while its request body is read from the pipe. */
typedef struct rx {
    sl_jobs_job_t *job;
    ev_io in_io;
    char *body;
    size_t n, cap;
} rx_t;

static void free_opts(void *opts)
{
    rx_opts_t *o = opts;
    if (!o)
        return;
    sl_jobs_fields_free(&o->fields);
    sl_free(o->stream);
    sl_free(o->group);
    sl_free(o);
}

static int parse(json_t *obj, const char *p, void **opts, char *err, size_t errlen)
{
    static const char *const keys[] = {"stream",       "group",          "lease_s",
                                       "max_attempts", "max_body_bytes", "headers"};
    const sl_config_t *cfg = sl_config_loading();
    const sl_jobs_cfg_t *jc = cfg ? sl_config_section(cfg, "jobs") : NULL;
    rx_opts_t *o = sl_calloc(1, sizeof(*o));
    *opts = o;
    if (sl_jobs_check_keys(obj, p, keys, SL_ARRAY_LEN(keys), err, errlen) ||
        sl_conf_get_req_str(obj, p, "stream", &o->stream, err, errlen) ||
        sl_conf_get_int(obj, p, "lease_s", 30, 1, 86400, &o->lease_s, err, errlen) ||
        sl_conf_get_int(obj, p, "max_attempts", 3, 1, 1000, &o->max_attempts, err, errlen) ||
        sl_conf_get_int(obj, p, "max_body_bytes", 1 << 20, 0, 512 << 20, &o->max_body_bytes, err,
                        errlen) ||
        sl_jobs_fields_parse(json_object_get(obj, "headers"), p, &o->fields, err, errlen))
        return SL_EINVAL;
    o->group = sl_strdup("sluice");
    if (sl_conf_get_opt_str(obj, p, "group", &o->group, err, errlen))
        return SL_EINVAL;
    if (!jc || !jc->store.redis)
        return sl_conf_fail(err, errlen, "%s.type: \"redis\" needs jobs.store.type \"redis\"", p);
    return 0;
}

static const rx_opts_t *opts_of(const sl_jobs_job_t *job)
{
    return job->exec->opts;
}

static void add_field(void *arg, const char *line, size_t name_len, size_t line_len)
{
    const char *v = line + name_len + 1;
    while (v < line + line_len && (*v == ' ' || *v == '\t'))
        v++;
    char name[128];
    snprintf(name, sizeof(name), "%.*s", (int)SL_MIN(name_len, sizeof(name) - 1), line);
    json_t *o = arg, *have = json_object_get(o, name);
    json_t *val = json_stringn(v, (size_t)(line + line_len - v));
    if (!val)
        return; /* not UTF-8: left out */
    if (have) { /* repeated fields join with ", " */
        char *j = sl_malloc(json_string_length(have) + json_string_length(val) + 3);
        sprintf(j, "%s, %s", json_string_value(have), json_string_value(val));
        json_object_set_new(o, name, json_string(j));
        sl_free(j);
        json_decref(val);
    } else {
        json_object_set_new(o, name, val);
    }
}

static void on_group(sl_jobs_rconn_t *rc, redisReply *r, void *priv)
{
    SL_UNUSED(rc);
    SL_UNUSED(priv);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0)
        sl_log(SL_LOG_WARN, NULL, "redis: XGROUP CREATE failed: %.*s", (int)r->len, r->str);
}

/* The group reads the stream from its start, so entries appended before
 * it existed are not skipped. */
static void make_group(rx_opts_t *o)
{
    sl_rs_args_t a = {0};
    if (o->group_made)
        return;
    o->group_made = 1;
    const char *v[] = {"XGROUP", "CREATE", o->stream, o->group, "0", "MKSTREAM"};
    for (size_t i = 0; i < SL_ARRAY_LEN(v); i++)
        sl_rs_arg(&a, v[i]);
    sl_rs_send(sl_rs_cmd(), &a, on_group, NULL);
}

static void on_enqueued(sl_jobs_rconn_t *rc, redisReply *r, void *priv)
{
    SL_UNUSED(rc);
    sl_jobs_job_t *job = priv;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        sl_log(SL_LOG_WARN, NULL, "job %s: the work queue refused it: %.*s", job->id,
               r ? (int)r->len : 15, r ? r->str : "connection lost");
        if (!job->finished && !job->cancel_pending) {
            job->cancel_pending = 1;
            sl_jobs_rstore_end_remote(job, SL_JOBS_FAILED, "work queue unavailable");
        }
    }
    sl_jobs_job_unref(job);
}

static void enqueue(sl_jobs_job_t *job, const char *body, size_t n)
{
    rx_opts_t *o = (rx_opts_t *)opts_of(job);
    char meta[160], events[160], ttl[24], lease[24], att[24], maxev[24];
    json_t *h = json_object();
    sl_jobs_fields_each(&o->fields, job->headers, add_field, h);
    char *hs = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    sl_rs_key(meta, sizeof(meta), "job", job->id);
    sl_rs_key(events, sizeof(events), "ev", job->id);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)sl_jobs_config()->ttl_s);
    snprintf(lease, sizeof(lease), "%lld", (long long)o->lease_s);
    snprintf(att, sizeof(att), "%lld", (long long)o->max_attempts);
    snprintf(maxev, sizeof(maxev), "%lld", (long long)sl_jobs_config()->store.max_events);
    const char *f[][2] = {{"id", job->id},     {"meta", meta},         {"events", events},
                          {"method", job->method}, {"path", job->path}, {"query", job->params},
                          {"headers", hs},     {"traceparent", job->traceparent},
                          {"ttl_s", ttl},      {"lease_s", lease},     {"max_attempts", att},
                          {"max_events", maxev}};
    sl_rs_args_t a = {0};
    make_group(o);
    sl_rs_arg(&a, "XADD");
    sl_rs_arg(&a, o->stream);
    sl_rs_arg(&a, "*");
    for (size_t i = 0; i < SL_ARRAY_LEN(f); i++) {
        sl_rs_arg(&a, f[i][0]);
        sl_rs_arg(&a, f[i][1]);
    }
    sl_rs_arg(&a, "body");
    sl_rs_arg_bin(&a, body ? body : "", n);
    sl_jobs_job_ref(job);
    if (sl_rs_send(sl_rs_cmd(), &a, on_enqueued, job) != 0)
        on_enqueued(sl_rs_cmd(), NULL, job);
    free(hs);
}

static void rx_free(sl_jobs_job_t *job)
{
    rx_t *x = job->xdata;
    if (!x)
        return;
    ev_io_stop(sl_jobs_loop(), &x->in_io);
    sl_free(x->body);
    sl_free(x);
    job->xdata = NULL;
    if (job->stdin_fd >= 0) {
        close(job->stdin_fd);
        job->stdin_fd = -1;
    }
}

/* The body, bounded: past max_body_bytes the job fails at once. */
static void on_body(struct ev_loop *loop, ev_io *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    rx_t *x = w->data;
    sl_jobs_job_t *job = x->job;
    size_t max = (size_t)opts_of(job)->max_body_bytes;
    char buf[65536];
    ssize_t r = read(job->stdin_fd, buf, sizeof(buf));
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (r > 0 && x->n + (size_t)r > max) {
        rx_free(job);
        job->cancel_pending = 1;
        sl_jobs_rstore_end_remote(job, SL_JOBS_FAILED, "request body over max_body_bytes");
        return;
    }
    if (r > 0) {
        if (x->n + (size_t)r > x->cap) {
            x->cap = SL_MAX(x->cap * 2, x->n + (size_t)r);
            x->body = sl_realloc(x->body, x->cap);
        }
        memcpy(x->body + x->n, buf, (size_t)r);
        x->n += (size_t)r;
        return;
    }
    if (!sl_jobs_is_aborted(job)) /* else the cancel that abort sent ends it */
        enqueue(job, x->body, x->n);
    rx_free(job);
}

static int start(sl_jobs_job_t *job)
{
    if (job->stdin_fd < 0) {
        enqueue(job, NULL, 0);
        return 0;
    }
    rx_t *x = sl_calloc(1, sizeof(*x));
    x->job = job;
    job->xdata = x;
    ev_io_init(&x->in_io, on_body, job->stdin_fd, EV_READ);
    x->in_io.data = x;
    ev_io_start(sl_jobs_loop(), &x->in_io);
    return 0;
}

static void cancel(sl_jobs_job_t *job, sl_jobs_state_t why)
{
    rx_free(job);
    if (sl_jobs_is_stopping()) {
        sl_jobs_detach(job); /* it goes on with the workers */
        return;
    }
    sl_jobs_rstore_end_remote(job, why,
             why == SL_JOBS_FAILED && sl_jobs_is_aborted(job) ? "client_aborted" : NULL);
}

const sl_jobs_executor_t sl_jobs_exec_redis = {
    .type = "redis",
    .parse = parse,
    .free_opts = free_opts,
    .prepare = sl_jobs_prepare_query,
    .start = start,
    .cancel = cancel,
    .keeps_headers = 1,
    .remote = 1,
};
