/* sluice - SPDX-License-Identifier: MIT
 *
 * A WebSocket session over one sl_req: the request body is the client's
 * byte stream, sl_resp_send carries ours. Frames are parsed and written by
 * wslay's frame layer (wslay_frame_*); everything wslay_event would do is
 * here instead, because wslay_event answers a fragmented or oversized
 * control frame and a 1-byte close payload with a close frame without
 * status code (RFC 6455 needs 1002), and keeps an unbounded send queue
 * (docs/ws.md). Here: message assembly with the size bound (1009), UTF-8
 * checks as bytes arrive (1007), reserved bits, opcodes, masking,
 * interleaved control frames (1002), ping/pong, the close handshake,
 * permessage-deflate, keepalive, and drain (1001).
 *
 * Backpressure: input waits in `in` (bounded by the protocol's window,
 * since credit goes back only for parsed bytes) while more than
 * send_queue_bytes of output are queued, so a client that does not read
 * its echoes stops being able to send. `out` has a hard bound of
 * send_queue_bytes + max_message_bytes + deflate and framing slack;
 * sl_ws_send refuses
 * (SL_EAGAIN) past send_queue_bytes.
 */
#include "ws_int.h"
#include "../buf.h"
#include "../config.h"
#include "../conn.h"
#include "../log.h"
#include "../metrics.h"
#include "../worker.h"
#include <ev.h>
#include <stdio.h>
#include <wslay/wslay.h>

#define CLOSE_WAIT_S 5.0  /* after our close frame: abort if not done by then */
#define KEEP_BUF 16384    /* message buffers larger than this are freed after use */
#define FRAME_HEAD_MAX 14 /* server frames are unmasked: 2 + 8 bytes, 14 with slack */

struct sl_ws {
    sl_req_t *req;
    const sl_ws_app_t *app;
    void *data;
    sl_ws_opts_t o;
    struct ev_loop *loop;
    wslay_frame_context_ptr fr;
    sl_buf_t in, out;
    const uint8_t *rd_p; /* wslay's recv callback reads from here */
    size_t rd_n;
    /* the frame being received */
    uint64_t f_len, f_got;
    uint8_t f_op;
    /* the message being received (m_op 0: none) */
    uint8_t m_op;
    uint8_t *m_buf;
    size_t m_len, m_cap;
    sl_ws_utf8_t utf8;
    uint8_t ctl[125];
    size_t ctl_len;
    sl_ws_pmd_t pmd;
    size_t inflight;
    ev_timer timer;
    ev_tstamp last_rx, last_ping, close_at;
    sl_ws_t *prev, *next; /* the worker's live sessions (drain) */
    unsigned f_fin : 1, in_frame : 1, m_deflated : 1;
    unsigned waiting : 1, in_send : 1, final_sent : 1, gone : 1, opened : 1;
    unsigned close_sent : 1, close_rcvd : 1, read_done : 1, peer_fin : 1, linked : 1;
};

/* Live sessions of this worker thread, visited on drain. */
static __thread sl_ws_t *live;
static __thread int drain_hooked;

static void flush(sl_ws_t *ws);
static void parse(sl_ws_t *ws);

/* ---- wslay frame-layer callbacks ---- */

static ssize_t rd_cb(uint8_t *buf, size_t len, int flags, void *arg)
{
    SL_UNUSED(flags);
    sl_ws_t *ws = arg;
    size_t n = SL_MIN(len, ws->rd_n);
    if (n == 0)
        return -1;
    memcpy(buf, ws->rd_p, n);
    ws->rd_p += n;
    ws->rd_n -= n;
    return (ssize_t)n;
}

static ssize_t wr_cb(const uint8_t *data, size_t len, int flags, void *arg)
{
    SL_UNUSED(flags);
    sl_ws_t *ws = arg;
    /* Room was checked before the frame was started. */
    return sl_buf_write_all(&ws->out, data, len) == 0 ? (ssize_t)len : -1;
}

static int mask_cb(uint8_t *buf, size_t len, void *arg)
{
    SL_UNUSED(arg);
    memset(buf, 0, len); /* servers do not mask */
    return 0;
}

static const struct wslay_frame_callbacks frame_cbs = {wr_cb, rd_cb, mask_cb};

/* ---- output ---- */

static int send_frame_fin(sl_ws_t *ws, uint8_t op, uint8_t rsv, int fin, const uint8_t *p,
                          size_t n)
{
    if (sl_buf_space(&ws->out) < n + FRAME_HEAD_MAX)
        return SL_EAGAIN;
    struct wslay_frame_iocb io;
    memset(&io, 0, sizeof(io));
    io.fin = fin ? 1 : 0;
    io.rsv = rsv;
    io.opcode = op;
    io.payload_length = n;
    io.data = p;
    io.data_length = n;
    ssize_t r = wslay_frame_send(ws->fr, &io);
    SL_ASSERT(r == (ssize_t)n); /* the queue had room for all of it */
    return 0;
}

static int send_frame(sl_ws_t *ws, uint8_t op, uint8_t rsv, const uint8_t *p, size_t n)
{
    return send_frame_fin(ws, op, rsv, 1, p, n);
}

static void queue_close(sl_ws_t *ws, uint16_t code, const char *reason)
{
    if (ws->close_sent || ws->gone)
        return;
    uint8_t p[125];
    size_t n = 0;
    if (code) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2;
        size_t rl = reason ? SL_MIN(strlen(reason), (size_t)123) : 0;
        if (rl)
            memcpy(p + 2, reason, rl);
        n += rl;
    }
    ws->close_sent = 1;
    ws->read_done = 1;
    ws->close_at = ws->loop ? ev_now(ws->loop) : 0;
    /* A full queue (a stalled reader) ends without the frame; the close
     * timer aborts the stream if even that cannot leave. */
    if (send_frame(ws, WSLAY_CONNECTION_CLOSE, 0, p, n) == 0)
        sl_metrics_ws_close(0, code);
    if (!ws->in_send)
        flush(ws);
}

/* Hand the queued bytes to the protocol, one contiguous run at a time;
 * the last run after a close frame ends the response. */
static void flush(sl_ws_t *ws)
{
    while (!ws->waiting && !ws->gone && !ws->final_sent) {
        const uint8_t *p = NULL;
        size_t n = 0;
        int empty = sl_buf_peek(&ws->out, &p, &n) != 0 || n == 0;
        int final = ws->close_sent && (empty || n == sl_buf_len(&ws->out));
        if (empty && !final)
            return;
        ws->inflight = empty ? 0 : n;
        ws->waiting = 1;
        ws->in_send = 1;
        ws->final_sent = final;
        int r = sl_resp_send(ws->req, empty ? NULL : p, empty ? 0 : n, final);
        ws->in_send = 0;
        if (r != 0 || final)
            return;
    }
}

/* ---- input ---- */

/* A protocol error or a bound: log at info (the client's doing), close
 * with code, stop reading. Returns -1 for the caller to stop. */
static int fail(sl_ws_t *ws, uint16_t code, const char *what)
{
    sl_log_stream(SL_LOG_INFO, ws->req->conn, ws->req->stream_id,
                  "client sent %s on a WebSocket; closing with %u", what, code);
    queue_close(ws, code, NULL);
    return -1;
}

static int close_code_ok(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

static int on_close_frame(sl_ws_t *ws)
{
    ws->close_rcvd = 1;
    ws->read_done = 1;
    if (ws->ctl_len == 1)
        return fail(ws, SL_WS_CLOSE_PROTOCOL, "a close frame with a 1-byte payload");
    uint16_t code = 0;
    if (ws->ctl_len == 0)
        sl_metrics_ws_close(1, 0);
    if (ws->ctl_len >= 2) {
        code = (uint16_t)(ws->ctl[0] << 8 | ws->ctl[1]);
        sl_metrics_ws_close(1, code);
        if (!close_code_ok(code))
            return fail(ws, SL_WS_CLOSE_PROTOCOL, "a close frame with an invalid status code");
        if (!sl_ws_utf8_is_valid(ws->ctl + 2, ws->ctl_len - 2))
            return fail(ws, SL_WS_CLOSE_BAD_DATA, "a close reason that is not UTF-8");
    }
    /* Echo the code (RFC 6455 5.5.1); after our own close this ends it. */
    queue_close(ws, code, NULL);
    if (!ws->in_send)
        flush(ws);
    return -1;
}

static int end_control(sl_ws_t *ws)
{
    switch (ws->f_op) {
    case WSLAY_CONNECTION_CLOSE: return on_close_frame(ws);
    case WSLAY_PING:
        if (!ws->close_sent)
            (void)send_frame(ws, WSLAY_PONG, 0, ws->ctl, ws->ctl_len);
        flush(ws);
        return 0;
    default: return 0; /* pong: last_rx is already fresh */
    }
}

static void release_message(sl_ws_t *ws)
{
    ws->m_op = 0;
    ws->m_len = 0;
    if (ws->m_cap > KEEP_BUF) {
        sl_free(ws->m_buf);
        ws->m_buf = NULL;
        ws->m_cap = 0;
    }
}

static int end_message(sl_ws_t *ws)
{
    int binary = ws->m_op == WSLAY_BINARY_FRAME;
    uint8_t *msg = ws->m_buf, *inflated = NULL;
    size_t len = ws->m_len;
    if (ws->m_deflated) {
        int r = sl_ws_pmd_inflate(&ws->pmd, ws->m_buf, ws->m_len, ws->o.max_message_bytes,
                                  &inflated, &len);
        if (r == SL_ETOOBIG)
            return fail(ws, SL_WS_CLOSE_TOO_BIG,
                        "a compressed message inflating past max_message_bytes");
        if (r != 0)
            return fail(ws, SL_WS_CLOSE_BAD_DATA, "invalid compressed data");
        msg = inflated;
        if (!binary && !sl_ws_utf8_is_valid(msg, len)) {
            sl_free(inflated);
            return fail(ws, SL_WS_CLOSE_BAD_DATA, "invalid UTF-8 in a text message");
        }
    } else if (!binary && !sl_ws_utf8_is_complete(&ws->utf8)) {
        return fail(ws, SL_WS_CLOSE_BAD_DATA, "a text message ending inside a UTF-8 sequence");
    }
    sl_metrics_ws_message(1);
    if (ws->app->on_message && !ws->close_sent)
        ws->app->on_message(ws, binary, msg ? msg : (const uint8_t *)"", len);
    sl_free(inflated);
    release_message(ws);
    return 0;
}

/* Make room for the whole frame now that its length is known (bounded
 * by max_message_bytes before this is called), plus 4 for inflate. */
static int reserve(sl_ws_t *ws, uint64_t add)
{
    size_t need = ws->m_len + (size_t)add + 4;
    if (need <= ws->m_cap)
        return 0;
    uint8_t *p = sl_try_realloc(ws->m_buf, need);
    if (!p)
        return -1;
    ws->m_buf = p;
    ws->m_cap = need;
    return 0;
}

/* How much larger than a message its deflate form may be. zlib's stored
 * blocks cost about 1/4096 on incompressible data, but a client may code
 * it with fixed Huffman codes (9 bits for half the byte values) or small
 * blocks: python3-websockets sends 64 KiB of random bytes as 65697. 1/8
 * covers any deflate encoder. */
static size_t deflate_slack(size_t max)
{
    return (max >> 3) + 64;
}

/* The most wire bytes a message may take. max_message_bytes bounds the
 * message the application gets, inclusive: for a compressed message that
 * is its inflated size, checked while inflating. */
static uint64_t wire_max(const sl_ws_t *ws, uint8_t op, uint8_t rsv)
{
    size_t max = ws->o.max_message_bytes;
    int deflated = op == 0 ? ws->m_deflated : (rsv & WSLAY_RSV1_BIT) != 0;
    return deflated ? (uint64_t)max + deflate_slack(max) : max;
}

static int start_frame(sl_ws_t *ws, const struct wslay_frame_iocb *io)
{
    uint8_t op = io->opcode;
    int ctl = (op & 8) != 0;
    if (!io->mask)
        return fail(ws, SL_WS_CLOSE_PROTOCOL, "an unmasked frame");
    if (op > 2 && op != WSLAY_CONNECTION_CLOSE && op != WSLAY_PING && op != WSLAY_PONG)
        return fail(ws, SL_WS_CLOSE_PROTOCOL, "a frame with a reserved opcode");
    uint8_t allowed = ws->pmd.enabled && (op == 1 || op == 2) ? WSLAY_RSV1_BIT : 0;
    if (io->rsv & ~allowed)
        return fail(ws, SL_WS_CLOSE_PROTOCOL, "a frame with reserved bits set");
    if (op == 0 && !ws->m_op)
        return fail(ws, SL_WS_CLOSE_PROTOCOL, "a continuation frame with no message to continue");
    if ((op == 1 || op == 2) && ws->m_op)
        return fail(ws, SL_WS_CLOSE_PROTOCOL, "a new message inside a fragmented one");
    if (!ctl && ws->m_len + io->payload_length > wire_max(ws, op, io->rsv))
        return fail(ws, SL_WS_CLOSE_TOO_BIG, "a message over max_message_bytes");
    ws->in_frame = 1;
    ws->f_op = op;
    ws->f_fin = io->fin;
    ws->f_len = io->payload_length;
    ws->f_got = 0;
    if (ctl) {
        ws->ctl_len = 0;
        return 0;
    }
    if (op != 0) {
        ws->m_op = op;
        ws->m_deflated = (io->rsv & WSLAY_RSV1_BIT) != 0;
        ws->m_len = 0;
        sl_ws_utf8_init(&ws->utf8);
    }
    if (reserve(ws, io->payload_length) != 0)
        return fail(ws, SL_WS_CLOSE_TOO_BIG, "a message that does not fit in memory");
    return 0;
}

static int on_chunk(sl_ws_t *ws, const struct wslay_frame_iocb *io)
{
    if (!ws->in_frame && start_frame(ws, io) != 0)
        return -1;
    const uint8_t *d = io->data;
    size_t n = io->data_length;
    if (n && (ws->f_op & 8)) {
        memcpy(ws->ctl + ws->ctl_len, d, n); /* wslay bounds control payloads at 125 */
        ws->ctl_len += n;
    } else if (n) {
        if (ws->m_op == WSLAY_TEXT_FRAME && !ws->m_deflated &&
            sl_ws_utf8_feed(&ws->utf8, d, n) != 0)
            return fail(ws, SL_WS_CLOSE_BAD_DATA, "invalid UTF-8 in a text message");
        memcpy(ws->m_buf + ws->m_len, d, n);
        ws->m_len += n;
    }
    ws->f_got += n;
    if (ws->f_got < ws->f_len)
        return 0;
    ws->in_frame = 0;
    if (ws->f_op & 8)
        return end_control(ws);
    return ws->f_fin ? end_message(ws) : 0;
}

static int over_bound(const sl_ws_t *ws)
{
    return sl_buf_len(&ws->out) > ws->o.send_queue_bytes;
}

/* Run wslay's parser over rd_p/rd_n. Returns 1 when it wants more bytes,
 * 0 when it stopped for another reason (bound, close, failure). */
static int pull(sl_ws_t *ws)
{
    while (!ws->read_done && !ws->gone && !over_bound(ws)) {
        struct wslay_frame_iocb io;
        memset(&io, 0, sizeof(io));
        ssize_t r = wslay_frame_recv(ws->fr, &io);
        if (r == WSLAY_ERR_WANT_READ)
            return 1;
        if (r < 0) {
            fail(ws, SL_WS_CLOSE_PROTOCOL,
                 "a fragmented or over-125-byte control frame or a bad payload length");
            return 0;
        }
        if (on_chunk(ws, &io) != 0)
            return 0;
    }
    return 0;
}

/* The client ended its side (h2 END_STREAM) without a close frame. */
static void peer_ended(sl_ws_t *ws)
{
    ws->read_done = 1;
    if (!ws->close_sent) {
        ws->close_sent = 1; /* nothing to answer: end our side too */
        ws->close_at = ws->loop ? ev_now(ws->loop) : 0;
    }
    flush(ws);
}

static void parse(sl_ws_t *ws)
{
    for (;;) {
        if (ws->read_done || ws->gone || over_bound(ws))
            return;
        const uint8_t *p = NULL;
        size_t n = 0;
        if (sl_buf_peek(&ws->in, &p, &n) != 0)
            n = 0;
        ws->rd_p = p;
        ws->rd_n = n;
        int more = pull(ws);
        size_t used = n - ws->rd_n;
        ws->rd_n = 0;
        if (used) {
            sl_buf_skip(&ws->in, used);
            if (!ws->gone)
                sl_req_consume(ws->req, used);
        }
        if (!more)
            return;
        if (n == 0) {
            if (ws->peer_fin)
                peer_ended(ws);
            return;
        }
    }
}

/* ---- sl_req callbacks ---- */

static void on_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    sl_ws_t *ws = req->hdata;
    if (ws->loop && len)
        ws->last_rx = ev_now(ws->loop);
    if (ws->read_done) {
        /* After a close: drop what follows, but keep the window open. */
        if (len)
            sl_req_consume(req, len);
        if (fin && !ws->close_sent)
            peer_ended(ws);
        return;
    }
    if (len && sl_buf_write_all(&ws->in, data, len) != 0) {
        /* More than the protocol's own window: a bug, not the client's. */
        sl_log_stream(SL_LOG_ERROR, req->conn, req->stream_id, "ws: %zu bytes past the input bound",
                      len);
        ws->read_done = 1;
        sl_resp_reset(req, SL_RESET_CANCEL);
        return;
    }
    if (fin)
        ws->peer_fin = 1;
    parse(ws);
}

static void on_proceed(sl_req_t *req)
{
    sl_ws_t *ws = req->hdata;
    ws->waiting = 0;
    if (ws->inflight) {
        sl_buf_skip(&ws->out, ws->inflight);
        ws->inflight = 0;
    }
    if (ws->in_send)
        return;
    flush(ws);
    parse(ws); /* the queue drained: read on */
    if (ws->app->on_drain && !ws->close_sent && !ws->gone)
        ws->app->on_drain(ws);
}

static void unlink_session(sl_ws_t *ws)
{
    if (!ws->linked)
        return;
    if (ws->prev)
        ws->prev->next = ws->next;
    else
        live = ws->next;
    if (ws->next)
        ws->next->prev = ws->prev;
    ws->linked = 0;
}

static void on_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    sl_ws_t *ws = req->hdata;
    ws->gone = 1;
    if (ws->loop)
        ev_timer_stop(ws->loop, &ws->timer);
    unlink_session(ws);
    if (ws->opened) {
        sl_metrics_ws_conn(-1);
        if (ws->app->on_close)
            ws->app->on_close(ws);
    }
    sl_buf_dispose(&ws->in);
    sl_buf_dispose(&ws->out);
    sl_free(ws->m_buf);
    sl_ws_pmd_dispose(&ws->pmd);
    wslay_frame_context_free(ws->fr);
    req->hdata = NULL;
    sl_free(ws);
}

/* Route auth withdrew access: 1008, as RFC 6455 7.4.1 says for a
 * message (here: a session) that violates the policy. */
static void on_revoke(sl_req_t *req, const char *why)
{
    sl_ws_close(req->hdata, SL_WS_CLOSE_POLICY, why);
}

static const sl_handler_cbs_t ws_cbs = {
    .on_revoke = on_revoke,
    .on_body = on_body,
    .on_proceed = on_proceed,
    .on_close = on_close,
};

/* ---- keepalive, idle, close wait ---- */

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(revents);
    sl_ws_t *ws = sl_container_of(t, sl_ws_t, timer);
    ev_tstamp now = ev_now(loop);
    if (ws->close_sent) {
        if (now - ws->close_at >= CLOSE_WAIT_S) {
            sl_log_stream(SL_LOG_INFO, ws->req->conn, ws->req->stream_id,
                          "ws: close handshake not done in %gs; aborting", CLOSE_WAIT_S);
            ev_timer_stop(loop, t);
            sl_resp_reset(ws->req, SL_RESET_CANCEL);
        }
        return;
    }
    ev_tstamp silent = now - ws->last_rx;
    if (ws->o.idle_timeout_s > 0 && silent >= ws->o.idle_timeout_s) {
        sl_log_stream(SL_LOG_INFO, ws->req->conn, ws->req->stream_id,
                      "client sent nothing on a WebSocket for %ds; closing with 1001",
                      ws->o.idle_timeout_s);
        queue_close(ws, SL_WS_CLOSE_GOING_AWAY, "idle timeout");
        return;
    }
    if (ws->o.ping_interval_s > 0 && silent >= ws->o.ping_interval_s &&
        now - ws->last_ping >= ws->o.ping_interval_s) {
        ws->last_ping = now;
        char p[32];
        int n = snprintf(p, sizeof(p), "%.3f", now);
        (void)send_frame(ws, WSLAY_PING, 0, (const uint8_t *)p, (size_t)n);
        flush(ws);
    }
}

static double timer_tick(const sl_ws_opts_t *o)
{
    double t = CLOSE_WAIT_S;
    if (o->ping_interval_s > 0)
        t = SL_MIN(t, o->ping_interval_s / 2.0);
    if (o->idle_timeout_s > 0)
        t = SL_MIN(t, o->idle_timeout_s / 2.0);
    return SL_MAX(t, 0.25);
}

static void on_worker_drain(sl_worker_t *w, void *arg)
{
    SL_UNUSED(w);
    SL_UNUSED(arg);
    for (sl_ws_t *ws = live, *next; ws; ws = next) {
        next = ws->next;
        sl_ws_close(ws, SL_WS_CLOSE_GOING_AWAY, "server shutting down");
    }
}

static void link_session(sl_ws_t *ws)
{
    sl_worker_t *w = sl_worker_current();
    if (!w)
        return;
    if (!drain_hooked) {
        drain_hooked = 1;
        sl_worker_on_drain(w, on_worker_drain, NULL);
    }
    ws->next = live;
    if (live)
        live->prev = ws;
    live = ws;
    ws->linked = 1;
    ws->loop = w->loop;
    ws->last_rx = ws->last_ping = ev_now(w->loop);
    double tick = timer_tick(&ws->o);
    ev_timer_init(&ws->timer, on_timer, tick, tick);
    ev_timer_start(w->loop, &ws->timer);
}

/* ---- public ---- */

static size_t chunks_for(size_t bytes)
{
    return bytes / SL_BUF_CHUNK_SIZE + 2;
}

static void refuse(sl_req_t *req, int status)
{
    sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id,
                  "client sent a bad WebSocket handshake; answered %d", status);
    if (status == 426) {
        if (req->proto == SL_PROTO_H1 && !sl_req_header(req, "upgrade"))
            sl_resp_header_add(req, "upgrade", "websocket");
        sl_resp_header_add(req, "sec-websocket-version", "13");
    }
    sl_resp_error(req, status,
                  status == 426 ? "WebSocket upgrade required (version 13)"
                                : "bad WebSocket handshake");
}

static void answer_head(sl_req_t *req, sl_ws_t *ws, int deflate)
{
    char ext[160];
    if (deflate && sl_ws_pmd_negotiate(req, &ws->pmd, ext, sizeof(ext)))
        sl_resp_header_add(req, "sec-websocket-extensions", ext);
    if (req->proto == SL_PROTO_H1) {
        const sl_header_t *key = sl_req_header(req, "sec-websocket-key");
        char acc[29];
        sl_ws_accept_value(key->value.p, key->value.n, acc);
        req->res.status = 101;
        sl_resp_header_add(req, "upgrade", "websocket");
        sl_resp_header_add(req, "sec-websocket-accept", acc);
    } else {
        req->res.status = 200;
    }
    req->res.content_length = -1;
}

int sl_ws_accept(sl_req_t *req, const sl_ws_opts_t *opts, const sl_ws_app_t *app, void *data)
{
    int st = sl_ws_check(req);
    if (st != 0) {
        refuse(req, st);
        return SL_EINVAL;
    }
    sl_ws_t *ws = sl_calloc(1, sizeof(*ws));
    ws->req = req;
    ws->app = app;
    ws->data = data;
    ws->o = *opts;
    sl_worker_t *w = sl_worker_current();
    sl_buf_pool_t *bp = w ? &w->bufpool : NULL;
    sl_buf_init(&ws->in, bp, sl_req_body_chunks(req));
    sl_buf_init(&ws->out, bp,
                chunks_for(opts->send_queue_bytes + opts->max_message_bytes +
                           deflate_slack(opts->max_message_bytes) + 1024));
    if (wslay_frame_context_init(&ws->fr, &frame_cbs, ws) != 0)
        sl_assert_fail("wslay_frame_context_init", __FILE__, __LINE__); /* OOM */
    answer_head(req, ws, opts->deflate);
    req->cbs = &ws_cbs;
    req->hdata = ws;
    ws->opened = 1; /* from here on app->on_close releases data */
    sl_metrics_ws_conn(1);
    link_session(ws);
    ws->waiting = 1;
    ws->in_send = 1;
    int r = sl_resp_send(req, NULL, 0, 0);
    ws->in_send = 0;
    if (r != 0)
        return 0; /* on_close follows */
    int code = app->on_open ? app->on_open(ws) : 0;
    if (code)
        sl_ws_close(ws, (uint16_t)code, NULL);
    if (!ws->waiting)
        flush(ws);
    return 0;
}

int sl_ws_send(sl_ws_t *ws, int binary, const void *data, size_t len)
{
    if (ws->close_sent || ws->gone)
        return SL_ECLOSED;
    if (over_bound(ws))
        return SL_EAGAIN;
    uint8_t op = binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME;
    int r;
    if (ws->pmd.enabled) {
        uint8_t *z = NULL;
        size_t zn = 0;
        if (sl_ws_pmd_deflate(&ws->pmd, data, len, &z, &zn) != 0)
            return SL_ENOMEM;
        r = send_frame(ws, op, WSLAY_RSV1_BIT, z, zn);
        sl_free(z);
    } else {
        r = send_frame(ws, op, 0, data, len);
    }
    if (r != 0)
        return r;
    sl_metrics_ws_message(0);
    if (!ws->in_send)
        flush(ws);
    return 0;
}

void sl_ws_close(sl_ws_t *ws, uint16_t code, const char *reason)
{
    queue_close(ws, code, reason);
}

int sl_ws_send_frame(sl_ws_t *ws, int opcode, int fin, const void *data, size_t len)
{
    if (ws->close_sent || ws->gone)
        return SL_ECLOSED;
    int r = send_frame_fin(ws, (uint8_t)opcode, 0, fin, data, len);
    if (r == 0 && !ws->in_send)
        flush(ws);
    return r;
}

void sl_ws_set_data(sl_ws_t *ws, void *data)
{
    ws->data = data;
}

void *sl_ws_data(const sl_ws_t *ws)
{
    return ws->data;
}

sl_req_t *sl_ws_req(const sl_ws_t *ws)
{
    return ws->req;
}

size_t sl_ws_queued(const sl_ws_t *ws)
{
    return sl_buf_len(&ws->out);
}
