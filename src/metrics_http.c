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

void sl_metrics_printf(sl_metrics_text_t *t, const char *fmt, ...)
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

const char *sl_metrics_label(char *buf, size_t cap, const char *s)
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

void sl_metrics_head(sl_metrics_text_t *t, const char *name, const char *type, const char *help)
{
    sl_metrics_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void sl_metrics_counter_family(sl_metrics_text_t *t, const char *name, const char *help,
                               const char *label, const char *const *values,
                               _Atomic uint64_t *counts, size_t n)
{
    sl_metrics_head(t, name, "counter", help);
    for (size_t i = 0; i < n; i++)
        sl_metrics_printf(t, "%s{%s=\"%s\"} %llu\n", name, label, values[i],
                          (unsigned long long)atomic_load(&counts[i]));
}

void sl_metrics_histogram(sl_metrics_text_t *t, const char *name, const char *labels,
                          const uint64_t counts[SL_M_BUCKETS], double sum_s)
{
    unsigned long long cum = 0;
    const char *sep = *labels ? "," : "";
    for (int b = 0; b < SL_M_BUCKETS; b++) {
        cum += counts[b];
        if (b < SL_M_BUCKETS - 1)
            sl_metrics_printf(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                              sl_metrics_bounds[b], cum);
        else
            sl_metrics_printf(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
    }
    sl_metrics_printf(t, *labels ? "%s_sum{%s} %.9f\n" : "%s_sum%s %.9f\n", name, labels, sum_s);
    sl_metrics_printf(t, *labels ? "%s_count{%s} %llu\n" : "%s_count%s %llu\n", name, labels, cum);
}

/* Which counter of a worker's block: kind and index. */
enum { K_ACCEPTED, K_OPENED, K_CLOSED, K_REQUESTS, K_BYTES_IN, K_BYTES_OUT, K_DUR, K_DUR_NS,
       K_TLS_OK, K_TLS_FAILED, K_GOAWAY, K_RST, K_ABUSE, K_STALLS, K_WS_OPENED, K_WS_CLOSED, K_WS_MSGS,
       K_WS_CLOSE, K_AUTH, K_QUIC };

static const sl_counter_t *counter(const sl_metrics_t *m, int kind, size_t i)
{
    switch (kind) {
    case K_ACCEPTED: return &m->accepted[i];
    case K_OPENED: return &m->opened[i / SL_M_PROTOS][i % SL_M_PROTOS];
    case K_CLOSED: return &m->closed[i / SL_M_PROTOS][i % SL_M_PROTOS];
    case K_REQUESTS: return &m->requests[i];
    case K_BYTES_IN: return &m->bytes_in[i];
    case K_BYTES_OUT: return &m->bytes_out[i];
    case K_DUR: return &m->duration[i / SL_M_BUCKETS][i % SL_M_BUCKETS];
    case K_DUR_NS: return &m->duration_ns[i];
    case K_TLS_OK: return &m->tls_ok[i];
    case K_GOAWAY: return &m->h2_goaway[i / SL_M_H2_CODES][i % SL_M_H2_CODES];
    case K_RST: return &m->h2_rst[i / SL_M_H2_CODES][i % SL_M_H2_CODES];
    case K_ABUSE: return &m->abuse[i];
    case K_STALLS: return &m->h2_stalls[i];
    case K_WS_OPENED: return &m->ws_opened;
    case K_WS_CLOSED: return &m->ws_closed;
    case K_WS_MSGS: return &m->ws_messages[i];
    case K_WS_CLOSE: return &m->ws_close[i / SL_M_WS_CODES][i % SL_M_WS_CODES];
    case K_AUTH: return &m->auth[i];
    case K_QUIC: return &m->quic[i];
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

static const char *const protos[SL_M_PROTOS] = {"http/1.1", "h2", "h3"};
static const char *const classes[SL_M_CLASSES] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};

/* Listener and route series by interned label: a listener or route a
 * reload removed keeps its series (counters never go back). */
static void connections(sl_metrics_text_t *t, const workers_t *ws)
{
    char l[256];
    size_t n;
    const char *const *names = sl_metrics_names(SL_M_NAME_LISTENER, &n);
    sl_metrics_head(t, "sluice_connections_accepted_total", "counter", "Connections accepted.");
    for (size_t i = 0; i < n; i++)
        sl_metrics_printf(t, "sluice_connections_accepted_total{listener=\"%s\"} %llu\n",
            sl_metrics_label(l, sizeof(l), names[i]), sum(ws, K_ACCEPTED, i));
    sl_metrics_head(t, "sluice_connections_open", "gauge", "Connections open, by protocol.");
    for (size_t i = 0; i < n; i++)
        for (int p = 0; p < SL_M_PROTOS; p++) {
            size_t k = i * SL_M_PROTOS + (size_t)p;
            unsigned long long o = sum(ws, K_OPENED, k), c = sum(ws, K_CLOSED, k);
            sl_metrics_printf(t, "sluice_connections_open{listener=\"%s\",protocol=\"%s\"} %llu\n",
                sl_metrics_label(l, sizeof(l), names[i]), protos[p], o > c ? o - c : 0);
        }
}

static const char *route_label(const char *const *names, size_t n, size_t r)
{
    return r < n ? names[r] : r == SL_M_ROUTE_OTHER ? "(other)" : "";
}

static void requests(sl_metrics_text_t *t, const workers_t *ws)
{
    char l[512];
    size_t n;
    const char *const *names = sl_metrics_names(SL_M_NAME_ROUTE, &n);
    sl_metrics_head(t, "sluice_requests_total", "counter", "Requests finished, by route and status class.");
    for (size_t i = 0; i < n + 2; i++) /* the labels, then "none" and "(other)" */
        for (int p = 0; p < SL_M_PROTOS; p++)
            for (int c = 0; c < SL_M_CLASSES; c++) {
                size_t r = i < n ? i : SL_M_ROUTE_NONE + (i - n);
                size_t k = (r * SL_M_PROTOS + (size_t)p) * SL_M_CLASSES + (size_t)c;
                unsigned long long v = sum(ws, K_REQUESTS, k);
                if (v)
                    sl_metrics_printf(t, "sluice_requests_total{protocol=\"%s\",route=\"%s\",code=\"%s\"} %llu\n",
                        protos[p], sl_metrics_label(l, sizeof(l), route_label(names, n, r)),
                        classes[c], v);
            }
    sl_metrics_head(t, "sluice_request_bytes_total", "counter", "Request bytes received (bodies).");
    for (int p = 0; p < SL_M_PROTOS; p++)
        sl_metrics_printf(t, "sluice_request_bytes_total{protocol=\"%s\"} %llu\n", protos[p],
            sum(ws, K_BYTES_IN, (size_t)p));
    sl_metrics_head(t, "sluice_response_bytes_total", "counter", "Response bytes sent (bodies).");
    for (int p = 0; p < SL_M_PROTOS; p++)
        sl_metrics_printf(t, "sluice_response_bytes_total{protocol=\"%s\"} %llu\n", protos[p],
            sum(ws, K_BYTES_OUT, (size_t)p));
    sl_metrics_head(t, "sluice_request_duration_seconds", "histogram",
         "Time from the request head to the end of the exchange.");
    for (int p = 0; p < SL_M_PROTOS; p++) {
        uint64_t counts[SL_M_BUCKETS];
        char lb[32];
        for (int b = 0; b < SL_M_BUCKETS; b++)
            counts[b] = sum(ws, K_DUR, (size_t)p * SL_M_BUCKETS + (size_t)b);
        snprintf(lb, sizeof(lb), "protocol=\"%s\"", protos[p]);
        sl_metrics_histogram(t, "sluice_request_duration_seconds", lb, counts,
                             (double)sum(ws, K_DUR_NS, (size_t)p) / 1e9);
    }
}

static void tls(sl_metrics_text_t *t, const workers_t *ws)
{
    static const char *const versions[SL_M_TLS_VERSIONS] = {"TLSv1.2", "TLSv1.3", "other"};
    sl_metrics_head(t, "sluice_tls_handshakes_total", "counter", "TLS handshakes completed, by version.");
    for (int v = 0; v < SL_M_TLS_VERSIONS; v++)
        sl_metrics_printf(t, "sluice_tls_handshakes_total{version=\"%s\"} %llu\n", versions[v],
            sum(ws, K_TLS_OK, (size_t)v));
    sl_metrics_head(t, "sluice_tls_handshake_failures_total", "counter", "TLS handshakes that failed.");
    sl_metrics_printf(t, "sluice_tls_handshake_failures_total %llu\n", sum(ws, K_TLS_FAILED, 0));
}

static const char *const dirs[2] = {"sent", "received"};

static void h2_frames(sl_metrics_text_t *t, const workers_t *ws)
{
    static const char *const codes[SL_M_H2_CODES] = {
        "NO_ERROR",        "PROTOCOL_ERROR", "INTERNAL_ERROR",     "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR",   "REFUSED_STREAM",
        "CANCEL",          "COMPRESSION_ERROR", "CONNECT_ERROR",   "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED", "other"};
    static const struct {
        const char *name, *help;
        int kind;
    } fam[] = {{"sluice_h2_goaway_total", "HTTP/2 GOAWAY frames, by direction and error code.",
                K_GOAWAY},
               {"sluice_h2_rst_stream_total",
                "HTTP/2 RST_STREAM frames, by direction and error code.", K_RST}};
    for (size_t f = 0; f < SL_ARRAY_LEN(fam); f++) {
        sl_metrics_head(t, fam[f].name, "counter", fam[f].help);
        for (int d = 0; d < 2; d++)
            for (int c = 0; c < SL_M_H2_CODES; c++) {
                unsigned long long v = sum(ws, fam[f].kind, (size_t)d * SL_M_H2_CODES + (size_t)c);
                /* every code at zero would be 60 lines of noise; NO_ERROR and
                 * the abuse answer always show, so a dashboard finds them */
                if (v || c == 0 || c == 11)
                    sl_metrics_printf(t, "%s{direction=\"%s\",code=\"%s\"} %llu\n", fam[f].name, dirs[d],
                        codes[c], v);
            }
    }
}

static void abuse(sl_metrics_text_t *t, const workers_t *ws)
{
    static const char *const kinds[SL_M_ABUSE_KINDS] = {"rapid_reset", "flood", "header_size",
                                                        "conn_limit", "conns_per_ip", "rate_limit"};
    sl_metrics_head(t, "sluice_abuse_limits_total", "counter",
         "Client limits tripped: HTTP/2 rapid reset and frame floods (GOAWAY "
         "ENHANCE_YOUR_CALM), oversized headers (431), connections refused.");
    for (int k = 0; k < SL_M_ABUSE_KINDS; k++)
        sl_metrics_printf(t, "sluice_abuse_limits_total{limit=\"%s\"} %llu\n", kinds[k],
            sum(ws, K_ABUSE, (size_t)k));
    sl_metrics_head(t, "sluice_h2_flow_control_stalls_total", "counter",
         "HTTP/2 DATA frames that used up the client's window with more body to send.");
    sl_metrics_printf(t, "sluice_h2_flow_control_stalls_total{window=\"stream\"} %llu\n",
        sum(ws, K_STALLS, 0));
    sl_metrics_printf(t, "sluice_h2_flow_control_stalls_total{window=\"connection\"} %llu\n",
        sum(ws, K_STALLS, 1));
}

static void quic(sl_metrics_text_t *t, const workers_t *ws)
{
    static const char *const kinds[SL_M_QUIC_KINDS] = {
        "retry", "version_negotiation", "stateless_reset", "refused", "forwarded", "dropped"};
    sl_metrics_head(t, "sluice_quic_packets_total", "counter",
         "QUIC packets no connection of the worker took, by what was done with them.");
    for (int k = 0; k < SL_M_QUIC_KINDS; k++)
        sl_metrics_printf(t, "sluice_quic_packets_total{kind=\"%s\"} %llu\n", kinds[k],
            sum(ws, K_QUIC, (size_t)k));
}

static void websockets(sl_metrics_text_t *t, const workers_t *ws)
{
    unsigned long long o = sum(ws, K_WS_OPENED, 0), c = sum(ws, K_WS_CLOSED, 0);
    sl_metrics_head(t, "sluice_websocket_connections_total", "counter", "WebSocket sessions accepted.");
    sl_metrics_printf(t, "sluice_websocket_connections_total %llu\n", o);
    sl_metrics_head(t, "sluice_websocket_connections_open", "gauge", "WebSocket sessions open.");
    sl_metrics_printf(t, "sluice_websocket_connections_open %llu\n", o > c ? o - c : 0);
    sl_metrics_head(t, "sluice_websocket_messages_total", "counter", "WebSocket messages, by direction.");
    for (int d = 0; d < 2; d++)
        sl_metrics_printf(t, "sluice_websocket_messages_total{direction=\"%s\"} %llu\n", dirs[d],
            sum(ws, K_WS_MSGS, (size_t)d));
    sl_metrics_head(t, "sluice_websocket_closes_total", "counter",
         "WebSocket close frames, by direction and status code.");
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < SL_M_WS_CODES; i++) {
            unsigned long long v = sum(ws, K_WS_CLOSE, (size_t)d * SL_M_WS_CODES + (size_t)i);
            char code[8];
            snprintf(code, sizeof(code), "%d", 999 + i);
            if (v)
                sl_metrics_printf(t, "sluice_websocket_closes_total{direction=\"%s\",code=\"%s\"} %llu\n",
                    dirs[d], i == 0 ? "none" : i == SL_M_WS_CODES - 1 ? "other" : code, v);
        }
}

static void auth(sl_metrics_text_t *t, const workers_t *ws)
{
    static const char *const results[] = {"allow", "deny", "error"};
    sl_metrics_head(t, "sluice_auth_requests_total", "counter",
         "Requests to route auth services, by outcome (error: timeout, connection, other status).");
    for (int k = SL_M_AUTH_ALLOW; k <= SL_M_AUTH_ERROR; k++)
        sl_metrics_printf(t, "sluice_auth_requests_total{result=\"%s\"} %llu\n", results[k],
            sum(ws, K_AUTH, (size_t)k));
    sl_metrics_head(t, "sluice_auth_cache_hits_total", "counter",
         "Route auth decisions taken from the cache or from a check already under way.");
    sl_metrics_printf(t, "sluice_auth_cache_hits_total %llu\n", sum(ws, K_AUTH, SL_M_AUTH_CACHED));
    sl_metrics_head(t, "sluice_auth_revoked_total", "counter",
         "Long-lived streams ended because a re-check denied access.");
    sl_metrics_printf(t, "sluice_auth_revoked_total %llu\n", sum(ws, K_AUTH, SL_M_AUTH_REVOKED));
}

static void process(sl_metrics_text_t *t)
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
    sl_metrics_head(t, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    sl_metrics_printf(t, "process_resident_memory_bytes %llu\n",
        (unsigned long long)pages * (unsigned long long)sysconf(_SC_PAGESIZE));
    sl_metrics_head(t, "process_open_fds", "gauge", "Number of open file descriptors.");
    sl_metrics_printf(t, "process_open_fds %zu\n", fds);
}

static void on_req(sl_req_t *req)
{
    const sl_config_t *cfg = sl_conn_config(req->conn);
    workers_t *ws = sl_pool_alloc(&req->pool, sizeof(*ws));
    ws->n = cfg->workers < SL_M_MAX_WORKERS ? cfg->workers : SL_M_MAX_WORKERS;
    for (int i = 0; i < ws->n; i++)
        ws->v[i] = sl_metrics_worker(i);
    sl_metrics_text_t t = {sl_malloc(16384), 0, 16384};
    connections(&t, ws);
    requests(&t, ws);
    tls(&t, ws);
    auth(&t, ws);
    h2_frames(&t, ws);
    abuse(&t, ws);
    quic(&t, ws);
    websockets(&t, ws);
    sl_metrics_run_sources(&t, cfg);
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
    *state = NULL;
    return sl_router_check_keys(route, path, NULL, 0, err, errlen);
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
