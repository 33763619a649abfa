/* sluice - SPDX-License-Identifier: MIT
 *
 * The "fault" app (a ws route with "fault" and "faults": true): echoes
 * like echo, and after `after` messages (default 0: at once) does the one
 * misbehaviour the handshake's query names, for WebSocket client suites:
 *
 *   ?do=close&code=C&reason=R     a Close frame with that code (1000..4999)
 *   ?do=fragments&sizes=1,10,100  one message in those fragments (&binary=1)
 *   ?do=ping-storm&n=N            N pings (1..1000) at once
 *   ?do=oversized&bytes=N         one binary message of N bytes (up to the
 *                                 route's send_queue_bytes)
 *   ?do=abrupt                    the connection (HTTP/2: the stream) ends
 *                                 without a Close frame
 *   ?do=invalid-utf8              a text message that is not UTF-8
 *
 * Each is logged at INFO and counted in sluice_ws_faults_total{fault}.
 */
#include "ws_int.h"
#include "../log.h"
#include "../metrics.h"
#include "../query.h"
#include <stdatomic.h>
#include <stdio.h>
#include <wslay/wslay.h>

#define MAX_FRAGMENTS 64
#define MAX_FRAGMENT 65536
#define MAX_PINGS 1000

enum { F_CLOSE, F_FRAGMENTS, F_PINGS, F_OVERSIZED, F_ABRUPT, F_UTF8, F_N };
static const char *const names[F_N] = {"close",     "fragments", "ping-storm",
                                       "oversized", "abrupt",    "invalid-utf8"};
static _Atomic uint64_t counts[F_N];

typedef struct wfault {
    const sl_ws_route_t *r;
    uint64_t after, seen;
    int done;
} wfault_t;

static void metrics_source(sl_metrics_text_t *t, const struct sl_config *cfg)
{
    SL_UNUSED(cfg);
    sl_metrics_counter_family(t, "sluice_ws_faults_total",
                              "WebSocket faults the fault app carried out on request", "fault",
                              names, counts, F_N);
}

static uint64_t num(sl_str_t q, const char *name, uint64_t def, uint64_t min, uint64_t max)
{
    uint64_t v;
    return sl_query_get_u64(q, name, def, min, max, &v) == 0 ? v : def;
}

static void fragments(sl_ws_t *ws, sl_str_t q)
{
    sl_str_t sizes;
    int binary = num(q, "binary", 0, 0, 1) == 1;
    if (sl_query_get(q, "sizes", &sizes) != 0)
        sizes = SL_STR("1,10,100");
    static uint8_t fill[MAX_FRAGMENT];
    memset(fill, 'a', sizeof(fill));
    size_t i = 0, k = 0;
    while (i < sizes.n && k < MAX_FRAGMENTS) {
        size_t s = i;
        while (i < sizes.n && sizes.p[i] != ',')
            i++;
        uint64_t n;
        if (sl_str_parse_u64((sl_str_t){sizes.p + s, i - s}, 0, MAX_FRAGMENT, &n) != 0)
            n = 1;
        i++;
        int last = i >= sizes.n || k + 1 == MAX_FRAGMENTS;
        int op =
            k == 0 ? (binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME) : WSLAY_CONTINUATION_FRAME;
        if (sl_ws_send_frame(ws, op, last, fill, (size_t)n) != 0)
            return;
        k++;
    }
}

static void do_fault(sl_ws_t *ws, wfault_t *f)
{
    sl_req_t *req = sl_ws_req(ws);
    sl_str_t q = req->query, what;
    f->done = 1;
    if (sl_query_get(q, "do", &what) != 0)
        return; /* no fault asked for: a plain echo */
    int kind = -1;
    for (int i = 0; i < F_N; i++)
        if (sl_str_eq(what, names[i]))
            kind = i;
    if (kind < 0) {
        sl_ws_close(ws, SL_WS_CLOSE_POLICY, "unknown fault");
        return;
    }
    atomic_fetch_add_explicit(&counts[kind], 1, memory_order_relaxed);
    sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id, "ws fault: %s", names[kind]);
    switch (kind) {
    case F_CLOSE: {
        uint64_t code = num(q, "code", SL_WS_CLOSE_NORMAL, 1000, 4999);
        if (code == 1005 || code == 1006 || code == 1015)
            code = SL_WS_CLOSE_NORMAL; /* never on the wire (RFC 6455 7.4.1) */
        sl_str_t reason = SL_STR("");
        char r[124];
        sl_query_get(q, "reason", &reason);
        ssize_t rn = sl_query_pct_decode(reason.p, SL_MIN(reason.n, (size_t)123), r);
        r[rn > 0 ? rn : 0] = 0;
        sl_ws_close(ws, (uint16_t)code, r);
        break;
    }
    case F_FRAGMENTS: fragments(ws, q); break;
    case F_PINGS: {
        uint64_t n = num(q, "n", 100, 1, MAX_PINGS);
        for (uint64_t i = 0; i < n; i++) {
            char p[24];
            int pn = snprintf(p, sizeof(p), "ping %llu", (unsigned long long)i);
            if (sl_ws_send_frame(ws, WSLAY_PING, 1, p, (size_t)pn) != 0)
                break;
        }
        break;
    }
    case F_OVERSIZED: {
        size_t max = f->r->opts.send_queue_bytes - 16;
        size_t n = (size_t)num(q, "bytes", 2 * f->r->opts.max_message_bytes, 1, max);
        uint8_t *p = sl_malloc(n);
        memset(p, 'o', n);
        if (sl_ws_send_frame(ws, WSLAY_BINARY_FRAME, 1, p, n) != 0)
            sl_ws_close(ws, SL_WS_CLOSE_INTERNAL, "could not queue the message");
        sl_free(p);
        break;
    }
    case F_ABRUPT: sl_resp_reset(req, SL_RESET_CANCEL); break;
    default: {
        static const char bad[] = "not utf-8: \xff\xfe\xc3\x28";
        sl_ws_send_frame(ws, WSLAY_TEXT_FRAME, 1, bad, sizeof(bad) - 1);
    }
    }
}

static int on_open(sl_ws_t *ws)
{
    wfault_t *f = sl_ws_data(ws);
    if (f->after == 0)
        do_fault(ws, f);
    return 0;
}

static void on_message(sl_ws_t *ws, int binary, const uint8_t *data, size_t len)
{
    wfault_t *f = sl_ws_data(ws);
    if (sl_ws_send(ws, binary, data, len) == SL_EAGAIN)
        sl_ws_close(ws, SL_WS_CLOSE_TRY_AGAIN, "send queue full");
    if (!f->done && ++f->seen == f->after)
        do_fault(ws, f);
}

static void on_close(sl_ws_t *ws)
{
    sl_free(sl_ws_data(ws));
}

static const sl_ws_app_t fault_app = {
    .name = "fault",
    .on_open = on_open,
    .on_message = on_message,
    .on_close = on_close,
};

void sl_ws_fault_metrics(void)
{
    static atomic_int added;
    if (atomic_exchange(&added, 1) == 0)
        sl_metrics_add_source(metrics_source);
}

void sl_ws_fault_start(sl_req_t *req, const sl_ws_route_t *r)
{
    wfault_t *f = sl_calloc(1, sizeof(*f));
    f->r = r;
    f->after = num(req->query, "after", 0, 0, 1000000);
    if (sl_ws_accept(req, &r->opts, &fault_app, f) != 0)
        sl_free(f);
}
