/* sluice - SPDX-License-Identifier: MIT
 *
 * The "upstream" executor: the job's request (method, path or the
 * configured override, query, the configured header fields, traceparent,
 * and the body streamed from the request as chunked) goes to a server of a
 * configured upstream group over HTTP/1.1; the response becomes events:
 * a `progress` event {"status":N,"headers":[[name,value],...]} once the
 * head arrives, `data` events as the body arrives, and `end` with the
 * status as exit code (succeeded below 400, else failed). It runs on the
 * jobs thread, so the job outlives the client's connection. One
 * connection per job (Connection: close): the worker pools of src/proxy/
 * are per worker thread and cannot be shared with the jobs thread.
 *
 *   connect -> send head [-> body chunks from the stdin pipe -> 0 chunk]
 *           -> read head (1xx skipped) -> body: length | chunked | to EOF
 * The response is read with src/proxy/'s reader (jobs/ does not include
 * the h1 parser).
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

#define REQ_HEAD_MAX 16384
#define READ_CHUNK 65536
#define BODY_CHUNK 16384 /* request body bytes per chunk sent */
#define MAX_FIELDS 100

typedef struct up_opts {
    const sl_config_t *cfg; /* the config the executor belongs to */
    char *upstream, *path;
    char **fields; /* request header names sent on (lower-case) */
    size_t nfields;
} up_opts_t;

enum { P_CONNECT, P_SEND, P_BODY_IN, P_READ };

typedef struct up {
    sl_jobs_job_t *job;
    sl_proxy_addr_t addr;
    int fd, phase, status, stdin_eof;
    ev_io io, in_io;
    ev_timer timer;
    char *out;
    size_t out_len, out_off, out_cap;
    sl_proxy_reader_t *rd;
} up_t;

static atomic_uint turns;

static void free_opts(void *opts)
{
    up_opts_t *o = opts;
    if (!o)
        return;
    for (size_t i = 0; i < o->nfields; i++)
        sl_free(o->fields[i]);
    sl_free(o->fields);
    sl_free(o->upstream);
    sl_free(o->path);
    sl_free(o);
}

static int parse_fields(json_t *a, const char *p, up_opts_t *o, char *err, size_t errlen)
{
    static const char *const dflt[] = {"content-type", "accept", "user-agent"};
    size_t n = a ? json_array_size(a) : SL_ARRAY_LEN(dflt);
    if ((a && !json_is_array(a)) || n > MAX_FIELDS) {
        snprintf(err, errlen, "%s.headers: must be an array of up to %d names", p, MAX_FIELDS);
        return SL_EINVAL;
    }
    o->fields = sl_calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const char *s = a ? json_string_value(json_array_get(a, i)) : dflt[i];
        if (!s || !*s) {
            snprintf(err, errlen, "%s.headers[%zu]: must be a header name", p, i);
            return SL_EINVAL;
        }
        char *l = sl_strdup(s);
        for (char *c = l; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        o->fields[o->nfields++] = l;
        /* What the request writer sets, or what belongs to one hop. */
        if (sl_field_is_connection_specific((sl_str_t){l, strlen(l)}) || strcmp(l, "host") == 0 ||
            strcmp(l, "content-length") == 0) {
            snprintf(err, errlen, "%s.headers: %s is set by sluice", p, l);
            return SL_EINVAL;
        }
    }
    return 0;
}

static int parse(json_t *obj, const char *p, void **opts, char *err, size_t errlen)
{
    static const char *const keys[] = {"upstream", "path", "headers"};
    const char *ups, *path;
    sl_proxy_addr_t a;
    up_opts_t *o = sl_calloc(1, sizeof(*o));
    *opts = o;
    o->cfg = sl_config_loading();
    if (sl_jobs_check_keys(obj, p, keys, SL_ARRAY_LEN(keys), err, errlen) ||
        sl_conf_get_str(obj, p, "upstream", NULL, &ups, err, errlen) ||
        sl_conf_get_str(obj, p, "path", NULL, &path, err, errlen) ||
        parse_fields(json_object_get(obj, "headers"), p, o, err, errlen))
        return SL_EINVAL;
    if (!ups || sl_proxy_upstream_addr(o->cfg, ups, 0, &a) != 0) {
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

/* The query goes with the job (params), so the target can be rebuilt. */
static int prepare(const sl_jobs_exec_def_t *x, sl_str_t query, void **params, char *err,
                   size_t errlen)
{
    SL_UNUSED(x);
    SL_UNUSED(err);
    SL_UNUSED(errlen);
    *params = sl_strndup(query.p ? query.p : "", query.n);
    return 0;
}

static const up_opts_t *opts_of(const sl_jobs_job_t *job)
{
    return job->exec->opts;
}

/* ---- teardown ---- */

static void up_free(up_t *u)
{
    struct ev_loop *loop = sl_jobs_loop();
    ev_io_stop(loop, &u->io);
    ev_io_stop(loop, &u->in_io);
    ev_timer_stop(loop, &u->timer);
    if (u->fd >= 0)
        close(u->fd);
    u->job->xdata = NULL;
    sl_free(u->out);
    sl_proxy_reader_free(u->rd);
    sl_free(u);
}

static void done(up_t *u, sl_jobs_state_t state, const char *error)
{
    sl_jobs_job_t *job = u->job;
    int code = u->status ? u->status : -1;
    if (error)
        sl_log(SL_LOG_INFO, NULL, "job %s: upstream %s: %s", job->id, u->addr.name, error);
    up_free(u);
    sl_jobs_finish(job, state, code, error);
}

static void succeed(up_t *u)
{
    done(u, u->status < 400 ? SL_JOBS_SUCCEEDED : SL_JOBS_FAILED, NULL);
}

static void arm(up_t *u, double secs)
{
    ev_timer_stop(sl_jobs_loop(), &u->timer);
    if (secs > 0) {
        ev_timer_set(&u->timer, secs, 0);
        ev_timer_start(sl_jobs_loop(), &u->timer);
    }
}

static void on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    up_t *u = t->data;
    done(u, SL_JOBS_FAILED,
         u->phase == P_CONNECT ? "connect timed out"
         : u->status == 0      ? "no response head in time"
                               : "upstream idle too long");
}

/* ---- request ---- */

static void out_add(up_t *u, const void *p, size_t n)
{
    if (u->out_len + n > u->out_cap) {
        u->out_cap = SL_MAX(u->out_cap * 2, u->out_len + n);
        u->out = sl_realloc(u->out, u->out_cap);
    }
    memcpy(u->out + u->out_len, p, n);
    u->out_len += n;
}

static void out_str(up_t *u, const char *s)
{
    out_add(u, s, strlen(s));
}

static int field_wanted(const up_opts_t *o, const char *name, size_t n)
{
    for (size_t i = 0; i < o->nfields; i++)
        if (strlen(o->fields[i]) == n && memcmp(o->fields[i], name, n) == 0)
            return 1;
    return 0;
}

static void add_fields(up_t *u)
{
    const up_opts_t *o = opts_of(u->job);
    for (const char *l = u->job->headers; l && *l;) {
        const char *e = strstr(l, "\r\n"), *c = strchr(l, ':');
        if (!e)
            break;
        if (c && c < e && field_wanted(o, l, (size_t)(c - l)))
            out_add(u, l, (size_t)(e - l) + 2);
        l = e + 2;
    }
}

static void build_head(up_t *u)
{
    const sl_jobs_job_t *job = u->job;
    const up_opts_t *o = opts_of(job);
    const char *q = job->params;
    out_str(u, job->method);
    out_str(u, " ");
    out_str(u, o->path ? o->path : job->path);
    if (q && *q) {
        out_str(u, "?");
        out_str(u, q);
    }
    out_str(u, " HTTP/1.1\r\nhost: ");
    out_str(u, u->addr.host);
    out_str(u, "\r\nconnection: close\r\njob-id: ");
    out_str(u, job->id);
    if (job->traceparent[0]) {
        out_str(u, "\r\ntraceparent: ");
        out_str(u, job->traceparent);
    }
    out_str(u, "\r\n");
    add_fields(u);
    int has_body = job->stdin_fd >= 0;
    int wants_length = !strcmp(job->method, "POST") || !strcmp(job->method, "PUT") ||
                       !strcmp(job->method, "PATCH");
    out_str(u, has_body       ? "transfer-encoding: chunked\r\n\r\n"
               : wants_length ? "content-length: 0\r\n\r\n"
                              : "\r\n");
}

static void start_reading(up_t *u)
{
    u->phase = P_READ;
    ev_io_stop(sl_jobs_loop(), &u->io);
    ev_io_set(&u->io, u->fd, EV_READ);
    ev_io_start(sl_jobs_loop(), &u->io);
    arm(u, u->addr.first_byte_s);
}

/* The body chunk in out was written: read the next piece of the body. */
static void want_body(up_t *u)
{
    u->phase = P_BODY_IN;
    ev_io_stop(sl_jobs_loop(), &u->io);
    ev_io_start(sl_jobs_loop(), &u->in_io);
}

static void on_stdin(struct ev_loop *loop, ev_io *w, int revents)
{
    SL_UNUSED(revents);
    up_t *u = w->data;
    uint8_t buf[BODY_CHUNK];
    ssize_t n = read(u->job->stdin_fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    ev_io_stop(loop, &u->in_io);
    if (n <= 0 && sl_jobs_is_aborted(u->job)) {
        /* The client's body was cut: close the connection instead of the
         * last chunk, so the upstream sees no complete request either. */
        done(u, SL_JOBS_FAILED, NULL);
        return;
    }
    u->out_len = u->out_off = 0;
    if (n > 0) {
        char hex[24];
        out_add(u, hex, (size_t)snprintf(hex, sizeof(hex), "%zx\r\n", (size_t)n));
        out_add(u, buf, (size_t)n);
        out_str(u, "\r\n");
    } else {
        /* EOF, or the writer failed: end the body either way */
        u->stdin_eof = 1;
        out_str(u, "0\r\n\r\n");
    }
    u->phase = P_SEND;
    ev_io_start(loop, &u->io);
    arm(u, u->addr.read_idle_s);
}

static void on_writable(up_t *u)
{
    if (u->phase == P_CONNECT) {
        int e = 0;
        socklen_t l = sizeof(e);
        getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &e, &l);
        if (e) {
            done(u, SL_JOBS_FAILED, "connect failed");
            return;
        }
        u->phase = P_SEND;
        arm(u, u->addr.read_idle_s);
    }
    while (u->out_off < u->out_len) {
        ssize_t n = send(u->fd, u->out + u->out_off, u->out_len - u->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) {
            done(u, SL_JOBS_FAILED, "send failed");
            return;
        }
        u->out_off += (size_t)n;
    }
    if (u->job->stdin_fd >= 0 && !u->stdin_eof)
        want_body(u);
    else
        start_reading(u);
}

/* ---- response ---- */

static void on_head(void *arg, int status, const sl_header_t *f, size_t n)
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
}

static void on_data(void *arg, const uint8_t *p, size_t n)
{
    up_t *u = arg;
    if (n)
        sl_jobs_emit(u->job, SL_JOBS_EV_DATA, p, n);
}

static const sl_proxy_reader_cbs_t reader_cbs = {on_head, on_data};

static void on_readable(up_t *u)
{
    uint8_t buf[READ_CHUNK];
    for (;;) {
        ssize_t n = recv(u->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            if (n == 0 && sl_proxy_reader_eof(u->rd))
                succeed(u);
            else
                done(u, SL_JOBS_FAILED, n == 0 ? "upstream closed early" : "read failed");
            return;
        }
        const char *err = NULL;
        int r = sl_proxy_reader_feed(u->rd, buf, (size_t)n, &err);
        if (r < 0) {
            done(u, SL_JOBS_FAILED, err);
            return;
        }
        if (r == 1) {
            succeed(u);
            return;
        }
    }
    arm(u, u->status ? u->addr.read_idle_s : u->addr.first_byte_s);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    SL_UNUSED(loop);
    up_t *u = w->data;
    if (revents & EV_WRITE)
        on_writable(u);
    else if (revents & EV_READ)
        on_readable(u);
}

static int start(sl_jobs_job_t *job)
{
    const up_opts_t *o = opts_of(job);
    up_t *u = sl_calloc(1, sizeof(*u));
    u->job = job;
    u->fd = -1;
    if (sl_proxy_upstream_addr(o->cfg, o->upstream, atomic_fetch_add(&turns, 1), &u->addr) != 0)
        goto fail;
    u->fd = socket(u->addr.sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u->fd < 0)
        goto fail;
    if (connect(u->fd, u->addr.sa, u->addr.sa_len) != 0 && errno != EINPROGRESS)
        goto fail;
    build_head(u);
    u->rd = sl_proxy_reader_new(!strcmp(job->method, "HEAD"), &reader_cbs, u);
    ev_io_init(&u->io, on_io, u->fd, EV_WRITE);
    u->io.data = u;
    ev_io_init(&u->in_io, on_stdin, job->stdin_fd, EV_READ);
    u->in_io.data = u;
    ev_init(&u->timer, on_timeout);
    u->timer.data = u;
    u->phase = P_CONNECT;
    job->xdata = u;
    ev_io_start(sl_jobs_loop(), &u->io);
    arm(u, u->addr.connect_s);
    return 0;

fail:
    sl_log(SL_LOG_INFO, NULL, "job %s: upstream %s: cannot connect: %s", job->id, o->upstream,
           strerror(errno));
    if (u->fd >= 0)
        close(u->fd);
    sl_free(u);
    return SL_ERROR;
}

static void cancel(sl_jobs_job_t *job, sl_jobs_state_t why)
{
    up_t *u = job->xdata;
    if (u)
        done(u, why, NULL);
}

const sl_jobs_executor_t sl_jobs_exec_upstream = {
    .type = "upstream",
    .parse = parse,
    .free_opts = free_opts,
    .prepare = prepare,
    .start = start,
    .cancel = cancel,
    .keeps_headers = 1,
};
