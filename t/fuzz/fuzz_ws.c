/* sluice - SPDX-License-Identifier: MIT
 *
 * libFuzzer entry for the WebSocket session (src/ws/session.c, utf8.c,
 * deflate.c, wslay's frame layer underneath): an accepted HTTP/2 extended
 * CONNECT request behind fake protocol ops, running an echo app, fed the
 * input as the client's byte stream. The feeding keeps the protocol's
 * rules: never more unconsumed bytes than the window, on_proceed only
 * after a send. The first input byte picks the read size, whether
 * permessage-deflate is offered (with which parameters), a small or large
 * max_message_bytes, whether the reader lags (on_proceed late) and
 * whether the client ends the stream. Every byte the session sends is
 * parsed back as server frames and must be well formed: unmasked, control
 * frames final and <= 125 bytes, RSV1 only with deflate, nothing after a
 * close frame, a close code sluice may send. Build: make -C t/fuzz (needs
 * -lwslay in FUZZ_LIBS).
 */
#include "ws/ws_int.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WINDOW 65536

static void check(int cond)
{
    if (!cond)
        abort();
}

/* ---- the server's byte stream, checked frame by frame ---- */

typedef struct out {
    uint8_t buf[256]; /* a partial frame head */
    size_t have;      /* bytes in buf */
    uint64_t skip;    /* payload bytes of the current frame still to pass */
    int closed;       /* a close frame was seen */
    int deflate;
    int proceed; /* a send awaits on_proceed */
    int ended, reset;
    uint64_t delivered, consumed;
    uint8_t close_code[2];
    size_t close_got;
} out_t;

static out_t st;

static int close_code_sendable(unsigned c)
{
    return c == 1000 || c == 1001 || c == 1002 || c == 1003 || (c >= 1007 && c <= 1014) ||
           (c >= 3000 && c <= 4999);
}

/* Parse one frame head from o->buf when complete; returns 1 when done. */
static int head_done(out_t *o)
{
    if (o->have < 2)
        return 0;
    uint8_t b0 = o->buf[0], b1 = o->buf[1];
    uint64_t n = b1 & 0x7f;
    size_t hl = n == 126 ? 4 : n == 127 ? 10 : 2;
    if (o->have < hl)
        return 0;
    if (n == 126)
        n = (uint64_t)o->buf[2] << 8 | o->buf[3];
    else if (n == 127) {
        n = 0;
        for (int i = 2; i < 10; i++)
            n = n << 8 | o->buf[i];
    }
    uint8_t op = b0 & 0x0f, rsv = (b0 >> 4) & 7;
    check(!(b1 & 0x80)); /* servers never mask */
    check(!o->closed);   /* nothing after our close */
    check(op <= 2 || op == 8 || op == 9 || op == 10);
    check(rsv == 0 || (rsv == 4 && o->deflate && (op == 1 || op == 2)));
    if (op & 8) {
        check((b0 & 0x80) && n <= 125);
        if (op == 8) {
            o->closed = 1;
            check(n != 1);
        }
    }
    o->skip = n;
    o->have = hl; /* keep the head: the close code is read from the payload */
    return 1;
}

static void out_feed(out_t *o, const uint8_t *p, size_t n)
{
    while (n) {
        if (o->skip) {
            size_t k = (size_t)SL_MIN(o->skip, (uint64_t)n);
            if ((o->buf[0] & 0x0f) == 8)
                for (size_t i = 0; i < k && o->close_got < 2; i++)
                    o->close_code[o->close_got++] = p[i];
            o->skip -= k;
            p += k, n -= k;
            if (o->skip == 0 && (o->buf[0] & 0x0f) == 8 && o->close_got == 2)
                check(close_code_sendable((unsigned)(o->close_code[0] << 8 | o->close_code[1])));
            if (o->skip == 0)
                o->have = 0, o->close_got = 0;
            continue;
        }
        check(o->have < sizeof(o->buf));
        o->buf[o->have++] = *p++;
        n--;
        if (head_done(o) && o->skip == 0) {
            o->have = 0;
            o->close_got = 0;
        }
    }
}

/* ---- fake protocol ops ---- */

static int op_send(sl_req_t *req, const uint8_t *data, size_t len, int final)
{
    (void)req;
    check(!st.ended && !st.reset);
    check(!st.proceed); /* one send at a time, as the protocols expect */
    if (len)
        out_feed(&st, data, len);
    if (final)
        st.ended = 1;
    else
        st.proceed = 1;
    return 0;
}

static int op_info(sl_req_t *req, int status, const sl_headers_t *h)
{
    (void)req, (void)status, (void)h;
    return 0;
}

static void op_reset(sl_req_t *req, uint32_t code)
{
    (void)req, (void)code;
    st.reset = 1;
}

static void op_consume(sl_req_t *req, size_t n)
{
    (void)req;
    st.consumed += n;
    check(st.consumed <= st.delivered);
}

static const sl_req_ops_t ops = {
    .send = op_send, .informational = op_info, .reset = op_reset, .consume = op_consume};

/* ---- the app: echo ---- */

static void on_message(sl_ws_t *ws, int binary, const uint8_t *d, size_t len)
{
    if (!binary)
        check(sl_ws_utf8_is_valid(d, len));
    if (sl_ws_send(ws, binary, d, len) == SL_EAGAIN)
        sl_ws_close(ws, SL_WS_CLOSE_TRY_AGAIN, "send queue full");
}

static const sl_ws_app_t app = {.name = "fuzz", .on_message = on_message};

static const char *const offers[4] = {
    NULL,
    "permessage-deflate",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=9; client_max_window_bits=10",
};

static void add_header(sl_req_t *req, const char *n, const char *v)
{
    sl_headers_add(&req->pool, &req->headers, n, strlen(n), v, strlen(v));
}

static void proceed(sl_req_t *req)
{
    for (int i = 0; i < 64 && st.proceed && !st.ended && !st.reset && req->hdata; i++) {
        st.proceed = 0;
        req->cbs->on_proceed(req);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int once;
    if (!once) {
        sl_log_set_level("error");
        once = 1;
    }
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    size_t step = (size_t)(mode & 0x07) * 128 + 1;
    int offer = (mode >> 4) & 3, small = mode & 0x40, lag = mode & 0x80;
    data++, size--;

    memset(&st, 0, sizeof(st));
    sl_req_t *req = sl_calloc(1, sizeof(*req));
    sl_req_init(req, SL_PROTO_H2, NULL);
    req->ops = &ops;
    req->stream_id = 1;
    req->method = (sl_str_t){"CONNECT", 7};
    req->protocol = (sl_str_t){"websocket", 9};
    req->path = req->target = (sl_str_t){"/ws", 3};
    add_header(req, "sec-websocket-version", "13");
    if (offers[offer])
        add_header(req, "sec-websocket-extensions", offers[offer]);
    sl_ws_opts_t o = {.max_message_bytes = small ? 256 : 100000,
                      .send_queue_bytes = small ? 1024 : 65536,
                      .deflate = 1};
    check(sl_ws_accept(req, &o, &app, NULL) == 0);
    st.deflate = offers[offer] != NULL;
    check(req->res.status == 200);
    if (!lag)
        proceed(req);

    size_t off = 0;
    for (int rounds = 0; rounds < 100000 && !st.ended && !st.reset; rounds++) {
        size_t avail = WINDOW - (size_t)(st.delivered - st.consumed);
        size_t n = SL_MIN(SL_MIN(step, avail), size - off);
        int fin = off + n == size && (mode & 0x08);
        if (n == 0 && !fin && !st.proceed)
            break; /* all fed, or blocked on a full window with nothing to flush */
        if (n || fin) {
            st.delivered += n;
            req->cbs->on_body(req, data + off, n, fin);
            off += n;
            if (fin)
                size = off, mode &= (uint8_t)~0x08; /* end once */
        }
        if (!lag || rounds % 4 == 3 || n == 0)
            proceed(req);
    }
    if (req->hdata)
        req->cbs->on_close(req, st.ended ? 0 : SL_ECLOSED);
    check(req->hdata == NULL);
    sl_req_dispose(req);
    sl_free(req);
    return 0;
}
