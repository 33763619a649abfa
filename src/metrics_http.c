/* sluice - SPDX-License-Identifier: MIT
 *
 * The "metrics" handler: every worker's counters (metrics.c) summed into
 * the Prometheus text exposition format (version 0.0.4). Request series
 * appear once they are non-zero; the rest always. Names, labels and
 * meanings: docs/ops.md.
 */
#include "handlers.h"
#include "config.h"
#include "conn.h"
#include "metrics.h"
#include "router.h"
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

typedef struct text {
    char *p;
    size_t n, cap;
} text_t;

static void out(text_t *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->p + t->n, t->cap - t->n, fmt, ap);
        va_end(ap);
        if (k >= 0 && (size_t)k < t->cap - t->n) {
            t->n += (size_t)k;
            return;
        }
        t->cap = t->cap * 2 + (size_t)(k > 0 ? k : 64);
        t->p = sl_realloc(t->p, t->cap);
    }
}

/* A label value: backslash, quote and newline escaped. */
static const char *label(char *buf, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '\\' || *s == '"' || *s == '\n') {
            buf[o++] = '\\';
            buf[o++] = *s == '\n' ? 'n' : *s;
        } else {
            buf[o++] = *s;
        }
    }
    buf[o] = 0;
    return buf;
}

static void head(text_t *t, const char *name, const char *type, const char *help)
{
    out(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Which counter of a worker's block: kind and index. */
enum { K_ACCEPTED, K_OPENED, K_CLOSED, K_REQUESTS, K_BYTES_IN, K_BYTES_OUT, K_DUR, K_DUR_NS,
       K_TLS_OK, K_TLS_FAILED };

static const sl_counter_t *counter(const sl_metrics_t *m, int kind, size_t i)
{
    switch (kind) {
    case K_ACCEPTED: return &m->accepted[i];
    case K_OPENED: return &m->opened[i];
    case K_CLOSED: return &m->closed[i];
    case K_REQUESTS: return &m->requests[i];
    case K_BYTES_IN: return &m->bytes_in[i];
    case K_BYTES_OUT: return &m->bytes_out[i];
    case K_DUR: return &m->duration[i / SL_M_BUCKETS][i % SL_M_BUCKETS];
    case K_DUR_NS: return &m->duration_ns[i];
    case K_TLS_OK: return &m->tls_ok[i];
    default: return &m->tls_failed;
    }
}

typedef struct workers {
    sl_metrics_t *v[SL_M_MAX_WORKERS];
    int n;
} workers_t;

/* One counter summed over every registered worker. */
static unsigned long long sum(const workers_t *ws, int kind, size_t i)
{
    unsigned long long s = 0;
    for (int w = 0; w < ws->n; w++)
        if (ws->v[w])
            s += sl_counter_get(counter(ws->v[w], kind, i));
    return s;
}

static const char *const protos[SL_M_PROTOS] = {"http/1.1", "h2"};
static const char *const classes[SL_M_CLASSES] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};

static void connections(text_t *t, const sl_config_t *cfg, const workers_t *ws)
{
    char l[256];
    head(t, "sluice_connections_accepted_total", "counter", "Connections accepted.");
    for (size_t i = 0; i < cfg->nlisteners; i++)
        out(t, "sluice_connections_accepted_total{listener=\"%s\"} %llu\n",
            label(l, sizeof(l), cfg->listeners[i].addr),
            sum(ws, K_ACCEPTED, i));
    head(t, "sluice_connections_open", "gauge", "Connections open, by protocol.");
    for (size_t i = 0; i < cfg->nlisteners; i++)
        for (int p = 0; p < SL_M_PROTOS; p++) {
            size_t k = i * SL_M_PROTOS + (size_t)p;
            unsigned long long o = sum(ws, K_OPENED, k), c = sum(ws, K_CLOSED, k);
            out(t, "sluice_connections_open{listener=\"%s\",protocol=\"%s\"} %llu\n",
                label(l, sizeof(l), cfg->listeners[i].addr), protos[p],
                o > c ? o - c : 0);
        }
}

static void requests(text_t *t, const sl_config_t *cfg, const workers_t *ws)
{
    char l[512];
    size_t nroutes;
    const sl_route_t *routes = sl_router_routes(cfg, &nroutes);
    head(t, "sluice_requests_total", "counter", "Requests finished, by route and status class.");
    for (size_t r = 0; r <= nroutes; r++)
        for (int p = 0; p < SL_M_PROTOS; p++)
            for (int c = 0; c < SL_M_CLASSES; c++) {
                size_t k = (r * SL_M_PROTOS + (size_t)p) * SL_M_CLASSES + (size_t)c;
                unsigned long long v = sum(ws, K_REQUESTS, k);
                if (v)
                    out(t, "sluice_requests_total{protocol=\"%s\",route=\"%s\",code=\"%s\"} %llu\n",
                        protos[p], r < nroutes ? label(l, sizeof(l), routes[r].path) : "",
                        classes[c], v);
            }
    head(t, "sluice_request_bytes_total", "counter", "Request bytes received (bodies).");
    for (int p = 0; p < SL_M_PROTOS; p++)
        out(t, "sluice_request_bytes_total{protocol=\"%s\"} %llu\n", protos[p],
            sum(ws, K_BYTES_IN, (size_t)p));
    head(t, "sluice_response_bytes_total", "counter", "Response bytes sent (bodies).");
    for (int p = 0; p < SL_M_PROTOS; p++)
        out(t, "sluice_response_bytes_total{protocol=\"%s\"} %llu\n", protos[p],
            sum(ws, K_BYTES_OUT, (size_t)p));
    head(t, "sluice_request_duration_seconds", "histogram",
         "Time from the request head to the end of the exchange.");
    for (int p = 0; p < SL_M_PROTOS; p++) {
        unsigned long long cum = 0;
        for (int b = 0; b < SL_M_BUCKETS; b++) {
            cum += sum(ws, K_DUR, (size_t)p * SL_M_BUCKETS + (size_t)b);
            if (b < SL_M_BUCKETS - 1)
                out(t, "sluice_request_duration_seconds_bucket{protocol=\"%s\",le=\"%g\"} %llu\n",
                    protos[p], sl_metrics_bounds[b], cum);
            else
                out(t, "sluice_request_duration_seconds_bucket{protocol=\"%s\",le=\"+Inf\"} %llu\n",
                    protos[p], cum);
        }
        out(t, "sluice_request_duration_seconds_sum{protocol=\"%s\"} %.9f\n", protos[p],
            (double)sum(ws, K_DUR_NS, (size_t)p) / 1e9);
        out(t, "sluice_request_duration_seconds_count{protocol=\"%s\"} %llu\n", protos[p], cum);
    }
}

static void tls(text_t *t, const workers_t *ws)
{
    static const char *const versions[SL_M_TLS_VERSIONS] = {"TLSv1.2", "TLSv1.3", "other"};
    head(t, "sluice_tls_handshakes_total", "counter", "TLS handshakes completed, by version.");
    for (int v = 0; v < SL_M_TLS_VERSIONS; v++)
        out(t, "sluice_tls_handshakes_total{version=\"%s\"} %llu\n", versions[v],
            sum(ws, K_TLS_OK, (size_t)v));
    head(t, "sluice_tls_handshake_failures_total", "counter", "TLS handshakes that failed.");
    out(t, "sluice_tls_handshake_failures_total %llu\n", sum(ws, K_TLS_FAILED, 0));
}

static void process(text_t *t)
{
    long size = 0, pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &pages) != 2)
            pages = 0;
        fclose(f);
    }
    size_t fds = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d));)
        fds += e->d_name[0] != '.';
    if (d) {
        closedir(d);
        fds--; /* the one opendir holds */
    }
    head(t, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    out(t, "process_resident_memory_bytes %llu\n",
        (unsigned long long)pages * (unsigned long long)sysconf(_SC_PAGESIZE));
    head(t, "process_open_fds", "gauge", "Number of open file descriptors.");
    out(t, "process_open_fds %zu\n", fds);
}

static void on_req(sl_req_t *req)
{
    const sl_config_t *cfg = sl_conn_config(req->conn);
    workers_t *ws = sl_pool_alloc(&req->pool, sizeof(*ws));
    ws->n = cfg->workers < SL_M_MAX_WORKERS ? cfg->workers : SL_M_MAX_WORKERS;
    for (int i = 0; i < ws->n; i++)
        ws->v[i] = sl_metrics_worker(i);
    text_t t = {sl_malloc(16384), 0, 16384};
    connections(&t, cfg, ws);
    requests(&t, cfg, ws);
    tls(&t, ws);
    process(&t);
    req->cbs = &sl_req_discard_cbs;
    req->res.status = 200;
    req->res.content_length = (int64_t)t.n;
    sl_resp_header_add(req, "content-type", "text/plain; version=0.0.4; charset=utf-8");
    sl_resp_header_add(req, "cache-control", "no-store");
    char *body = sl_pool_alloc(&req->pool, t.n ? t.n : 1);
    memcpy(body, t.p, t.n);
    sl_free(t.p);
    sl_resp_send(req, body, t.n, 1);
}

static int configure(json_t *route, const char *path, void **state, char *err, size_t errlen)
{
    static const char *const keys[] = {"path", "match", "host", "handler"};
    *state = NULL;
    return sl_conf_check_keys(route, path, keys, SL_ARRAY_LEN(keys), err, errlen);
}

static void free_state(void *state)
{
    SL_UNUSED(state);
}

const sl_handler_def_t sl_metrics_handler = {
    .name = "metrics",
    .configure = configure,
    .free_state = free_state,
    .on_req = on_req,
};
