/* sluice - SPDX-License-Identifier: MIT
 *
 * The "upstream" executor: the job's request (method, path or the
 * configured override, query, the configured header fields, traceparent,
 * and the body streamed from the request as chunked) goes to a server of a
 * configured upstream group over HTTP/1.1; the response becomes events:
 * a `progress` event {"status":N,"headers":[[name,value],...]} once the
 * head arrives, `data` events as the body arrives, and `end` with the
 * status as exit code (succeeded below 400, else failed). It runs on the
 * jobs thread, so the job outlives the client's connection, through
 * src/proxy/'s client: the group's balancing, passive health, retries of
 * failed connects, TLS and timeouts are the proxy handler's own. One
 * connection per job (Connection: close).
 *
 *   client: pick, connect [TLS] -> head [-> body chunks from the stdin
 *   pipe, one per on_drained -> 0 chunk] -> response head -> body events
 */
#include "jobs_int.h"
#include "../config.h"
#include "../log.h"
#include "../req.h"
#include "../proxy/proxy.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY_CHUNK 16384 /* request body bytes per chunk sent */

typedef struct up_opts {
    const sl_config_t *cfg; /* the config the executor belongs to */
    char *upstream, *path;
    sl_jobs_fields_t fields; /* request header fields sent on */
} up_opts_t;

typedef struct up {
    sl_jobs_job_t *job;
    sl_proxy_client_t *cl; /* NULL once it has ended */
    ev_io in_io;           /* the body pipe, read when the client drained */
    int status, stdin_eof;
} up_t;

static void free_opts(void *opts)
{
    up_opts_t *o = opts;
    if (!o)
        return;
    sl_jobs_fields_free(&o->fields);
    sl_free(o->upstream);
    sl_free(o->path);
    sl_free(o);
}

static int parse(json_t *obj, const char *p, void **opts, char *err, size_t errlen)
{
    static const char *const keys[] = {"upstream", "path", "headers"};
    const char *ups, *path;
    up_opts_t *o = sl_calloc(1, sizeof(*o));
    *opts = o;
    o->cfg = sl_config_loading();
    if (sl_jobs_check_keys(obj, p, keys, SL_ARRAY_LEN(keys), err, errlen) ||
        sl_conf_get_str(obj, p, "upstream", NULL, &ups, err, errlen) ||
        sl_conf_get_str(obj, p, "path", NULL, &path, err, errlen) ||
        sl_jobs_fields_parse(json_object_get(obj, "headers"), p, &o->fields, err, errlen))
        return SL_EINVAL;
    if (!sl_proxy_upstream_exists(o->cfg, ups)) {
        snprintf(err, errlen, "%s.upstream: must name a group in \"upstreams\"", p);
        return SL_EINVAL;
    }
    if (path && path[0] != '/') {
        snprintf(err, errlen, "%s.path: must start with '/'", p);
        return SL_EINVAL;
    }
    o->upstream = sl_strdup(ups);
    o->path = path ? sl_strdup(path) : NULL;
    return 0;
}

static const up_opts_t *opts_of(const sl_jobs_job_t *job)
{
    return job->exec->opts;
}

/* ---- teardown ---- */

static void up_free(up_t *u)
{
    ev_io_stop(sl_jobs_loop(), &u->in_io);
    u->job->xdata = NULL;
    sl_free(u);
}

static void done(up_t *u, sl_jobs_state_t state, const char *error)
{
    sl_jobs_job_t *job = u->job;
    int code = u->status ? u->status : -1;
    if (error)
        sl_log(SL_LOG_INFO, NULL, "job %s: upstream %s: %s", job->id, opts_of(job)->upstream,
               error);
    up_free(u);
    sl_jobs_finish(job, state, code, error);
}

/* ---- request ---- */

typedef struct text {
    char *p;
    size_t n, cap;
} text_t;

static void text_add(text_t *t, const void *p, size_t n)
{
    if (t->n + n > t->cap) {
        t->cap = SL_MAX(t->cap * 2, t->n + n + 256);
        t->p = sl_realloc(t->p, t->cap);
    }
    memcpy(t->p + t->n, p, n);
    t->n += n;
}

static void text_str(text_t *t, const char *s)
{
    text_add(t, s, strlen(s));
}

static void add_field(void *arg, const char *line, size_t name_len, size_t line_len)
{
    SL_UNUSED(name_len);
    text_add(arg, line, line_len);
    text_add(arg, "\r\n", 2);
}

static char *build_head(void *arg, const char *host, size_t *len)
{
    const sl_jobs_job_t *job = ((up_t *)arg)->job;
    const up_opts_t *o = opts_of(job);
    const char *q = job->params;
    text_t t = {0};
    text_str(&t, job->method);
    text_str(&t, " ");
    text_str(&t, o->path ? o->path : job->path);
    if (q && *q) {
        text_str(&t, "?");
        text_str(&t, q);
    }
    text_str(&t, " HTTP/1.1\r\nhost: ");
    text_str(&t, host);
    text_str(&t, "\r\nconnection: close\r\njob-id: ");
    text_str(&t, job->id);
    if (job->traceparent[0]) {
        text_str(&t, "\r\ntraceparent: ");
        text_str(&t, job->traceparent);
    }
    text_str(&t, "\r\n");
    sl_jobs_fields_each(&o->fields, job->headers, add_field, &t);
    int has_body = job->stdin_fd >= 0;
    int wants_length = !strcmp(job->method, "POST") || !strcmp(job->method, "PUT") ||
                       !strcmp(job->method, "PATCH");
    text_str(&t, has_body       ? "transfer-encoding: chunked\r\n\r\n"
                 : wants_length ? "content-length: 0\r\n\r\n"
                                : "\r\n");
    *len = t.n;
    return t.p;
}

/* What was sent is written: read the next piece of the body. */
static void on_drained(void *arg)
{
    up_t *u = arg;
    if (u->job->stdin_fd >= 0 && !u->stdin_eof)
        ev_io_start(sl_jobs_loop(), &u->in_io);
}

static void on_stdin(struct ev_loop *loop, ev_io *w, int revents)
{
    SL_UNUSED(revents);
    up_t *u = w->data;
    uint8_t buf[BODY_CHUNK + 32];
    char hex[24];
    ssize_t n = read(u->job->stdin_fd, buf, BODY_CHUNK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    ev_io_stop(loop, &u->in_io);
    if (n <= 0 && sl_jobs_is_aborted(u->job)) {
        /* The client's body was cut: close the connection instead of the
         * last chunk, so the upstream sees no complete request either. */
        sl_proxy_client_cancel(u->cl);
        done(u, SL_JOBS_FAILED, NULL);
        return;
    }
    if (n > 0) {
        int h = snprintf(hex, sizeof(hex), "%zx\r\n", (size_t)n);
        sl_proxy_client_send(u->cl, hex, (size_t)h);
        sl_proxy_client_send(u->cl, buf, (size_t)n);
        sl_proxy_client_send(u->cl, "\r\n", 2);
        return;
    }
    /* EOF, or the writer failed: end the body either way */
    u->stdin_eof = 1;
    sl_proxy_client_send(u->cl, "0\r\n\r\n", 5);
    sl_proxy_client_end(u->cl);
}

/* ---- response ---- */

static int on_head(void *arg, int status, const sl_header_t *f, size_t n)
{
    up_t *u = arg;
    u->status = status;
    json_t *hs = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_stringn(f[i].value.p, f[i].value.n);
        json_array_append_new(
            hs, json_pack("[s%o]", f[i].name.p, f[i].name.n, v ? v : json_string("")));
    }
    json_t *o = json_pack("{s:i,s:o}", "status", status, "headers", hs);
    char *s = json_dumps(o, JSON_COMPACT);
    sl_jobs_emit(u->job, SL_JOBS_EV_PROGRESS, s, strlen(s));
    free(s);
    json_decref(o);
    return 0; /* the body too */
}

static void on_data(void *arg, const uint8_t *p, size_t n)
{
    sl_jobs_emit(((up_t *)arg)->job, SL_JOBS_EV_DATA, p, n);
}

static void on_done(void *arg, const char *error)
{
    up_t *u = arg;
    u->cl = NULL; /* freed by the client after this call */
    if (error)
        done(u, SL_JOBS_FAILED, error);
    else
        done(u, u->status < 400 ? SL_JOBS_SUCCEEDED : SL_JOBS_FAILED, NULL);
}

static const sl_proxy_client_cbs_t client_cbs = {
    .head = build_head,
    .on_drained = on_drained,
    .on_head = on_head,
    .on_data = on_data,
    .on_done = on_done,
};

static int start(sl_jobs_job_t *job)
{
    const up_opts_t *o = opts_of(job);
    char prefix[64];
    up_t *u = sl_calloc(1, sizeof(*u));
    u->job = job;
    snprintf(prefix, sizeof(prefix), "job %s: ", job->id);
    /* The job id is the balance key: a "hash" group keeps a job's
     * retries of its own on one server. */
    u->cl = sl_proxy_client_start(o->cfg, o->upstream, job->id, !strcmp(job->method, "HEAD"),
                                  prefix, &client_cbs, u);
    if (!u->cl) {
        sl_log(SL_LOG_INFO, NULL, "job %s: upstream %s: no such group", job->id, o->upstream);
        sl_free(u);
        return SL_ERROR;
    }
    ev_io_init(&u->in_io, on_stdin, job->stdin_fd, EV_READ);
    u->in_io.data = u;
    if (job->stdin_fd < 0)
        sl_proxy_client_end(u->cl);
    job->xdata = u;
    return 0;
}

static void cancel(sl_jobs_job_t *job, sl_jobs_state_t why)
{
    up_t *u = job->xdata;
    if (!u)
        return;
    sl_proxy_client_cancel(u->cl);
    done(u, why, NULL);
}

const sl_jobs_executor_t sl_jobs_exec_upstream = {
    .type = "upstream",
    .parse = parse,
    .free_opts = free_opts,
    .prepare = sl_jobs_prepare_query,
    .start = start,
    .cancel = cancel,
    .keeps_headers = 1,
};
