/* sluice - SPDX-License-Identifier: MIT
 *
 * fault/NAME: one deliberate misbehaviour per request, at a chosen point,
 * for client test suites (docs/harness.md "Faults"). Only on a route with
 * "faults": true (404 otherwise). Each is logged at INFO and counted in
 * sluice_harness_faults_total{fault}; each is bounded (sizes by the
 * route's max_* options, times by max_delay_ms), so it cannot be turned
 * on the server itself.
 *
 *   any protocol: hold, window-stall, info-burst, reset-before-headers,
 *                 big-headers, trailers-only (trailers.c)
 *   HTTP/2:       goaway (before / after the answer, or mid-body and
 *                 immediate), settings
 *   HTTP/1.1:     h1-* (fault_h1.c: raw bytes, then the connection closes)
 *
 * A fault that needs a protocol the request did not come on is a 400.
 */
#include "harness_int.h"
#include "../log.h"
#include "../metrics.h"
#include "../worker.h"
#include <stdatomic.h>
#include <stdio.h>

#define MAX_BURST 100
#define MAX_BIG_HEADERS 60000 /* nghttp2 sends header blocks up to 64 KiB */
#define DEFAULT_HOLD_MS 10000

static const char *const names[] = {
    "hold",
    "window-stall",
    "info-burst",
    "reset-before-headers",
    "big-headers",
    "goaway",
    "settings",
    "padded",
    "ping-ack",
    "trailers-only",
    "h1-close-mid-headers",
    "h1-close-mid-body",
    "h1-close-mid-chunked",
    "h1-bad-chunk-size",
    "h1-trailing-garbage",
    "h1-cl-and-chunked",
    "h1-slow-headers",
};
_Static_assert(SL_ARRAY_LEN(names) == SL_HARNESS_FAULTS, "a name for every fault");
static _Atomic uint64_t counts[SL_HARNESS_FAULTS];

static void metrics_source(sl_metrics_text_t *t, const struct sl_config *cfg)
{
    SL_UNUSED(cfg);
    sl_metrics_counter_family(t, "sluice_harness_faults_total",
                              "Faults the harness carried out on request", "fault", names, counts,
                              SL_HARNESS_FAULTS);
}

void sl_harness_faults_metrics(void)
{
    static atomic_int added;
    if (atomic_exchange(&added, 1) == 0)
        sl_metrics_add_source(metrics_source);
}

void sl_harness_fault_note(sl_req_t *req, int kind)
{
    atomic_fetch_add_explicit(&counts[kind], 1, memory_order_relaxed);
    sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id, "harness fault: %s", names[kind]);
}

/* ---- the state of a fault that waits (hold, window-stall, goaway mid) ---- */

typedef struct fault {
    sl_harness_ctx_t cx;
    struct ev_loop *loop;
    ev_timer timer;
    uint64_t after, taken; /* window-stall: credit given, body seen */
    uint64_t code;
    uint8_t *buf;
    size_t len;
    unsigned answered : 1, holding : 1;
} fault_t;

static void fault_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    fault_t *f = req->hdata;
    ev_timer_stop(f->loop, &f->timer);
}

static fault_t *fault_new(sl_harness_ctx_t *cx, void (*cb)(struct ev_loop *, ev_timer *, int),
                          double secs)
{
    sl_req_t *req = cx->req;
    fault_t *f = sl_pool_alloc(&req->pool, sizeof(*f));
    memset(f, 0, sizeof(*f));
    f->cx = *cx;
    f->loop = sl_worker_current()->loop;
    ev_timer_init(&f->timer, cb, secs, 0.);
    f->timer.data = f;
    ev_timer_start(f->loop, &f->timer);
    req->hdata = f;
    return f;
}

static int get_ms(sl_harness_ctx_t *cx, uint64_t *ms)
{
    uint64_t max = (uint64_t)cx->opts->max_delay_ms;
    int rv = sl_query_find_u64(&cx->q, "ms", SL_MIN((uint64_t)DEFAULT_HOLD_MS, max), 0, max, ms);
    if (rv != 0)
        sl_harness_bad_param(cx->req, "ms", rv, 0, max);
    return rv;
}

static int get_bytes(sl_harness_ctx_t *cx, const char *name, uint64_t def, uint64_t *v)
{
    uint64_t max = (uint64_t)SL_MIN(cx->opts->max_bytes, cx->opts->max_chunk_bytes);
    int rv = sl_query_find_u64(&cx->q, name, SL_MIN(def, max), 0, max, v);
    if (rv != 0)
        sl_harness_bad_param(cx->req, name, rv, 0, max);
    return rv;
}

/* ---- hold: the head and N bytes, then nothing (no END_STREAM / last
 * chunk) for ms, then a reset ---- */

static void hold_end(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    fault_t *f = t->data;
    sl_resp_reset(f->cx.req, SL_RESET_CANCEL);
}

static void hold_proceed(sl_req_t *req)
{
    SL_UNUSED(req); /* the bytes are out: now hold */
}

static const sl_handler_cbs_t hold_cbs = {
    .on_body = sl_req_discard_body, .on_proceed = hold_proceed, .on_close = fault_close};

static void fault_hold(sl_harness_ctx_t *cx)
{
    uint64_t n, ms;
    if (get_bytes(cx, "after", 0, &n) != 0 || get_ms(cx, &ms) != 0)
        return;
    sl_req_t *req = cx->req;
    fault_t *f = fault_new(cx, hold_end, (double)ms / 1000.0);
    req->cbs = &hold_cbs;
    f->buf = sl_pool_alloc(&req->pool, n ? n : 1);
    sl_harness_gen_fill(0, 0, f->buf, n);
    req->res.status = 200;
    req->res.content_length = -1;
    sl_resp_header_add(req, "content-type", "application/octet-stream");
    sl_resp_send(req, f->buf, n, 0);
}

/* ---- window-stall: request-body credit for N bytes, then none for ms;
 * then 200 {"taken": n} and the rest of the body is drained ---- */

static void stall_answer(fault_t *f)
{
    sl_req_t *req = f->cx.req;
    f->answered = 1;
    sl_req_consume(req, f->taken > f->after ? f->taken - f->after : 0); /* drain the rest */
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"credited_before_stall\":%llu}\n",
                     (unsigned long long)f->after);
    sl_resp_simple(req, 200, "application/json", body, (size_t)n);
}

static void stall_end(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    stall_answer(t->data);
}

static void stall_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    SL_UNUSED(data);
    fault_t *f = req->hdata;
    uint64_t before = f->taken;
    f->taken += len;
    if (f->answered) {
        sl_req_consume(req, len);
        return;
    }
    /* Credit only up to after: past it the protocol's window closes. */
    uint64_t give = before >= f->after ? 0 : SL_MIN((uint64_t)len, f->after - before);
    sl_req_consume(req, (size_t)give);
    if (fin && f->taken <= f->after) {
        ev_timer_stop(f->loop, &f->timer);
        stall_answer(f);
    }
}

static const sl_handler_cbs_t stall_cbs = {.on_body = stall_body, .on_close = fault_close};

static void fault_window_stall(sl_harness_ctx_t *cx)
{
    uint64_t n, ms;
    if (get_bytes(cx, "after", 0, &n) != 0 || get_ms(cx, &ms) != 0)
        return;
    fault_t *f = fault_new(cx, stall_end, (double)ms / 1000.0);
    f->after = n;
    cx->req->cbs = &stall_cbs;
    if (cx->req->body_done) {
        ev_timer_stop(f->loop, &f->timer);
        stall_answer(f);
    }
}

/* ---- info-burst, reset-before-headers, big-headers ---- */

static void fault_info_burst(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    uint64_t n, status;
    int rv = sl_query_find_u64(&cx->q, "n", 10, 1, MAX_BURST, &n);
    if (rv != 0 || (rv = sl_query_find_u64(&cx->q, "status", 103, 102, 199, &status)) != 0) {
        sl_harness_bad_request(req, "n: 1..100, status: 102..199");
        return;
    }
    req->cbs = &sl_req_discard_cbs;
    for (uint64_t i = 0; i < n; i++) {
        sl_header_t h = {SL_STR("x-burst"),
                         {sl_pool_printf(&req->pool, "%llu", (unsigned long long)i), 0}};
        h.value.n = strlen(h.value.p);
        sl_headers_t hs = {&h, 1, 1};
        if (sl_resp_informational(req, (int)status, &hs) != 0)
            break; /* an HTTP/1.0 client, or gone */
    }
    sl_resp_simple(req, 200, "text/plain; charset=utf-8", "after the burst\n", 16);
}

static void fault_reset_before_headers(sl_harness_ctx_t *cx)
{
    const sl_str_t *name = sl_query_find(&cx->q, "code");
    int code = name ? sl_harness_h2_error_code(*name) : (int)SL_RESET_INTERNAL_ERROR;
    if (code < 0) {
        sl_harness_bad_request(cx->req, "code: an HTTP/2 error code name");
        return;
    }
    cx->req->cbs = &sl_req_discard_cbs;
    sl_resp_reset(cx->req, (uint32_t)code);
}

static void fault_big_headers(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    uint64_t total;
    int rv = sl_query_find_u64(&cx->q, "bytes", 50000, 1, MAX_BIG_HEADERS, &total);
    if (rv != 0) {
        sl_harness_bad_param(req, "bytes", rv, 1, MAX_BIG_HEADERS);
        return;
    }
    /* Fields of 1000-byte values: HTTP/2 splits the block into HEADERS
     * and CONTINUATION frames of max_frame_size. */
    char *v = sl_pool_alloc(&req->pool, 1001);
    memset(v, 'v', 1000);
    v[1000] = 0;
    for (uint64_t i = 0, done = 0; done < total; i++, done += 1000) {
        char name[32];
        int nn = snprintf(name, sizeof(name), "x-big-%llu", (unsigned long long)i);
        sl_resp_header_addn(req, name, (size_t)nn, v, (size_t)SL_MIN(1000, total - done));
    }
    req->cbs = &sl_req_discard_cbs;
    sl_resp_simple(req, 200, "text/plain; charset=utf-8", "big headers sent\n", 17);
}

/* ---- HTTP/2: goaway, settings ---- */

static void need_h2(sl_req_t *req)
{
    sl_harness_bad_request(req, "this fault needs HTTP/2");
}

static void goaway_mid_proceed(sl_req_t *req)
{
    fault_t *f = req->hdata;
    if (f->holding)
        return;
    f->holding = 1;
    sl_fault_t g = {
        .kind = SL_FAULT_GOAWAY, .code = (uint32_t)f->code, .last_stream_id = -1, .immediate = 1};
    sl_resp_fault(req, &g); /* the session ends: the stream with it */
}

static const sl_handler_cbs_t goaway_cbs = {
    .on_body = sl_req_discard_body, .on_proceed = goaway_mid_proceed, .on_close = fault_close};

static void fault_goaway(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    if (req->proto != SL_PROTO_H2) {
        need_h2(req);
        return;
    }
    const sl_str_t *name = sl_query_find(&cx->q, "code");
    const sl_str_t *when = sl_query_find(&cx->q, "when");
    int code = name ? sl_harness_h2_error_code(*name) : 0;
    uint64_t last, n;
    int rv =
        sl_query_find_u64(&cx->q, "last_stream_id", (uint64_t)req->stream_id, 0, INT32_MAX, &last);
    if (code < 0 || rv != 0 || get_bytes(cx, "bytes", 1000, &n) != 0) {
        if (code < 0 || rv != 0)
            sl_harness_bad_request(req, "code: an HTTP/2 error name; last_stream_id: 0..2^31-1");
        return;
    }
    sl_fault_t g = {
        .kind = SL_FAULT_GOAWAY, .code = (uint32_t)code, .last_stream_id = (int32_t)last};
    if (when && sl_str_eq(*when, "mid")) { /* head, n bytes, then GOAWAY and the end */
        fault_t *f = fault_new(cx, hold_end, (double)cx->opts->max_delay_ms / 1000.0);
        f->code = name ? (uint64_t)code : SL_RESET_INTERNAL_ERROR;
        f->buf = sl_pool_alloc(&req->pool, n ? n : 1);
        sl_harness_gen_fill(0, 0, f->buf, n);
        req->cbs = &goaway_cbs;
        req->res.status = 200;
        sl_resp_header_add(req, "content-type", "application/octet-stream");
        sl_resp_send(req, f->buf, n, 0);
        return;
    }
    req->cbs = &sl_req_discard_cbs;
    int after = when && sl_str_eq(*when, "after");
    if (!after)
        sl_resp_fault(req, &g);
    if (!after && (int64_t)req->stream_id > (int64_t)last) {
        /* Past last_stream_id the server did not take it: safe to retry. */
        sl_resp_reset(req, SL_RESET_REFUSED_STREAM);
        return;
    }
    char body[80];
    int bn = snprintf(body, sizeof(body), "{\"goaway\":{\"last_stream_id\":%llu,\"code\":%d}}\n",
                      (unsigned long long)last, code);
    sl_resp_simple(req, 200, "application/json", body, (size_t)bn);
    if (after)
        sl_resp_fault(req, &g);
}

static void fault_settings(sl_harness_ctx_t *cx)
{
    static const struct {
        const char *name;
        uint32_t id, min, max;
    } keys[] = {
        {"header_table_size", 0x1, 0, 65536},        {"max_concurrent_streams", 0x3, 0, 1000},
        {"initial_window_size", 0x4, 0, 2147483647}, {"max_frame_size", 0x5, 16384, 16777215},
        {"max_header_list_size", 0x6, 0, 1048576},
    };
    sl_req_t *req = cx->req;
    if (req->proto != SL_PROTO_H2) {
        need_h2(req);
        return;
    }
    uint32_t(*iv)[2] = sl_pool_alloc(&req->pool, sizeof(uint32_t[2]) * SL_ARRAY_LEN(keys));
    size_t n = 0;
    for (size_t i = 0; i < SL_ARRAY_LEN(keys); i++) {
        uint64_t v;
        if (!sl_query_find(&cx->q, keys[i].name))
            continue;
        int rv = sl_query_find_u64(&cx->q, keys[i].name, 0, keys[i].min, keys[i].max, &v);
        if (rv != 0) {
            sl_harness_bad_param(req, keys[i].name, rv, keys[i].min, keys[i].max);
            return;
        }
        iv[n][0] = keys[i].id;
        iv[n++][1] = (uint32_t)v;
    }
    sl_fault_t s = {
        .kind = SL_FAULT_SETTINGS, .settings = (const uint32_t(*)[2])iv, .nsettings = n};
    req->cbs = &sl_req_discard_cbs;
    if (sl_resp_fault(req, &s) != 0) {
        sl_resp_error(req, 400, "the settings were refused");
        return;
    }
    char body[48];
    int bn = snprintf(body, sizeof(body), "{\"settings_sent\":%zu}\n", n);
    sl_resp_simple(req, 200, "application/json", body, (size_t)bn);
}

static void fault_padded(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    uint64_t pad;
    if (req->proto != SL_PROTO_H2) {
        need_h2(req);
        return;
    }
    int rv = sl_query_find_u64(&cx->q, "pad", 16, 1, 255, &pad);
    if (rv != 0) {
        sl_harness_bad_param(req, "pad", rv, 1, 255);
        return;
    }
    sl_fault_t f = {.kind = SL_FAULT_PADDING, .code = (uint32_t)pad};
    req->cbs = &sl_req_discard_cbs;
    sl_resp_fault(req, &f);
    uint8_t *body = sl_pool_alloc(&req->pool, 2000);
    sl_harness_gen_fill(0, 0, body, 2000);
    sl_resp_simple(req, 200, "application/octet-stream", body, 2000);
}

static void fault_ping_ack(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    const sl_str_t *mode = sl_query_find(&cx->q, "mode");
    uint64_t n, ms = 0;
    if (req->proto != SL_PROTO_H2) {
        need_h2(req);
        return;
    }
    int delay = mode && sl_str_eq(*mode, "delay");
    int rv = sl_query_find_u64(&cx->q, "n", 1, 1, 100, &n);
    if (rv == 0 && delay)
        rv = sl_query_find_u64(&cx->q, "ms", 1000, 1, (uint64_t)cx->opts->max_delay_ms, &ms);
    if (rv != 0 || (mode && !delay && !sl_str_eq(*mode, "drop"))) {
        sl_harness_bad_request(req, "mode: drop or delay; n: 1..100; ms: up to max_delay_ms");
        return;
    }
    sl_fault_t f = {.kind = SL_FAULT_PING_ACK, .count = (uint32_t)n, .delay_ms = (uint32_t)ms};
    req->cbs = &sl_req_discard_cbs;
    sl_resp_fault(req, &f);
    char body[64];
    int bn = snprintf(body, sizeof(body), "{\"ping_acks\":%llu,\"delay_ms\":%llu}\n",
                      (unsigned long long)n, (unsigned long long)ms);
    sl_resp_simple(req, 200, "application/json", body, (size_t)bn);
}

/* ---- dispatch ---- */

typedef void (*fault_fn)(sl_harness_ctx_t *cx);

void sl_harness_fault(sl_harness_ctx_t *cx)
{
    static const fault_fn fns[SL_HARNESS_FAULT_H1_FIRST] = {
        fault_hold,        fault_window_stall,
        fault_info_burst,  fault_reset_before_headers,
        fault_big_headers, fault_goaway,
        fault_settings,    fault_padded,
        fault_ping_ack,    sl_harness_trailers_only,
    };
    sl_req_t *req = cx->req;
    if (!cx->opts->faults) {
        req->cbs = &sl_req_discard_cbs;
        sl_resp_error(req, 404, "faults are off on this route (\"faults\": true)");
        return;
    }
    for (int i = 0; i < SL_HARNESS_FAULTS; i++) {
        if (!sl_str_eq(cx->arg, names[i]))
            continue;
        if (i >= SL_HARNESS_FAULT_H1_FIRST) {
            sl_harness_fault_h1(cx, i);
            return;
        }
        sl_harness_fault_note(req, i);
        fns[i](cx);
        return;
    }
    sl_harness_bad_request(req, "unknown fault (docs/harness.md \"Faults\")");
}
