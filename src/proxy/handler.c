/* sluice - SPDX-License-Identifier: MIT
 *
 * The "proxy" handler: one client request forwarded to one upstream
 * HTTP/1.1 connection at a time, streaming both ways.
 *
 *   client body --on_body--> body buf (bounded) --write--> upstream
 *                 credit (sl_req_consume) only as the socket takes bytes
 *   upstream --read--> in[] (PX_IN_CAP) --sl_resp_send--> client
 *                 no read while a send is outstanding (until on_proceed)
 *
 * So a slow client stops the upstream reads and a slow upstream closes the
 * client's flow-control window; memory per request is bounded by in[] and
 * the protocol's body window. Before the response starts, a failed
 * connection (refused, reset, closed) is retried on another server for
 * idempotent requests without a body once the head may have reached the
 * upstream, and any request before that.
 * Callbacks from the protocol never run inside sl_resp_* (req.h), so the
 * px_req_t stays valid until on_close even after the final send.
 */
#include "proxy_int.h"
#include "proxy.h"
#include "../config.h"
#include "../conn.h"
#include "../log.h"
#include "../worker.h"
#include <errno.h>
#include <stdio.h>
#include <sys/uio.h>
#include <unistd.h>

#define TRAILER_MAX 8192 /* upstream chunk-ext / trailer bytes */

enum { BODY_NONE = 0, BODY_LENGTH = 1, BODY_CHUNKED = 2 };

typedef struct px_req {
    sl_req_t *req;
    const px_route_t *rt;
    px_attempt_t at; /* server choice, attempts, the connection (attempt.c) */
    char request_id[33];
    char traceparent[64];
    /* request side */
    char *head;
    size_t head_len, head_off;
    int body_mode;
    sl_buf_t body;
    char side[24]; /* chunk framing being written */
    size_t side_len, side_off;
    uint64_t chunk_left;
    unsigned body_fin : 1;     /* the client's body is complete */
    unsigned end_queued : 1;   /* last-chunk / end of body queued */
    unsigned req_sent : 1;     /* the whole request is upstream */
    unsigned body_started : 1; /* body bytes went upstream: no retry */
    /* response side */
    uint8_t *in;
    size_t in_len, rpos, obeg, oend;
    px_body_t rb;
    uint64_t res_left;
    sl_h1_chunked_t chunk;
    sl_headers_t trailers; /* the upstream's, kept by the chunked decoder */
    unsigned head_done : 1;
    unsigned sending : 1;
    unsigned up_eof : 1;
    unsigned done : 1;
    unsigned closed : 1;
    unsigned keep : 1;
} px_req_t;

static void start_attempt(px_req_t *px);
static void process_input(px_req_t *px);
static void do_write(px_req_t *px);

/* ---- small helpers ---- */

static const px_server_t *server(const px_req_t *px)
{
    return &px->at.up->servers[px->at.u->idx];
}

static int is_idempotent(sl_str_t m)
{
    return sl_str_eq(m, "GET") || sl_str_eq(m, "HEAD") || sl_str_eq(m, "OPTIONS") ||
           sl_str_eq(m, "TRACE") || sl_str_eq(m, "PUT") || sl_str_eq(m, "DELETE");
}

/* X-Request-Id passed on or made; traceparent passed on or started. */
void px_make_ids(sl_req_t *req, const px_route_t *rt, char request_id[33],
                 char traceparent[64])
{
    uint8_t r[24];
    char trace[33]; /* one random trace id: the request id when we make one */
    request_id[0] = traceparent[0] = 0;
    sl_rand_fast(r, sizeof(r)); /* identifiers, not secrets */
    sl_hex_encode(r, 16, trace);
    const sl_header_t *id = rt->request_id ? sl_req_header(req, "x-request-id") : NULL;
    if (id && id->value.n > 0 && id->value.n < 33)
        memcpy(request_id, id->value.p, id->value.n), request_id[id->value.n] = 0;
    else if (rt->request_id)
        memcpy(request_id, trace, sizeof(trace));
    /* Both buffers live in req's pool (px_req_t, h2s_t, px_tun_t): the
     * access log points at them instead of copying. */
    req->log_request_id = (sl_str_t){request_id, strlen(request_id)};
    if (!rt->traceparent)
        return;
    const sl_header_t *tp = sl_req_header(req, "traceparent");
    if (tp && sl_traceparent_is_valid(tp->value)) {
        memcpy(traceparent, tp->value.p, 55);
        traceparent[55] = 0;
    } else {
        memcpy(traceparent, "00-", 3);
        memcpy(traceparent + 3, trace, 32);
        traceparent[35] = '-';
        sl_hex_encode(r + 16, 8, traceparent + 36);
        memcpy(traceparent + 52, "-01", 4);
    }
    req->log_trace_id = (sl_str_t){traceparent + 3, 32};
}

/* ---- watchers ---- */

static int has_output(const px_req_t *px)
{
    return px->side_off < px->side_len || px->head_off < px->head_len ||
           !sl_buf_is_empty(&px->body) || (px->body_fin && !px->req_sent);
}

/* Which events and which timeout the current state needs. */
static void update(px_req_t *px)
{
    px_uconn_t *u = px->at.u;
    if (!u || px->done)
        return;
    const px_timeouts_t *to = &px->at.up->to;
    if (u->connecting) {
        px_attempt_set_io(&px->at, px_uconn_events(u));
        return; /* the connect timer runs from start_attempt */
    }
    int ev = 0;
    if (!px->sending && !px->up_eof && px->in_len < PX_IN_CAP)
        ev |= EV_READ;
    if (has_output(px))
        ev |= EV_WRITE;
    px_attempt_set_io(&px->at, ev);
    if ((ev & EV_READ) && px_io_pending(u->ssl))
        ev_feed_event(px->at.ws->loop, &u->io, EV_READ); /* TLS bytes already decrypted */
    if (!px->head_done)
        px_attempt_set_timer(&px->at, px->req_sent      ? to->first_byte_s
                                      : (ev & EV_WRITE) ? to->send_idle_s
                                                        : 0);
    else if (px->sending)
        px_attempt_set_timer(&px->at, 0); /* the client is slow: its own timeouts apply */
    else
        px_attempt_set_timer(&px->at, to->read_idle_s);
}

/* ---- answers ---- */

static void answer_error(px_req_t *px, int status, const char *msg)
{
    sl_req_t *req = px->req;
    px_attempt_drop(&px->at);
    px->done = 1;
    if (req->head_sent) {
        sl_resp_reset(req, SL_RESET_INTERNAL_ERROR);
        return;
    }
    if (status == 503) {
        char ra[32];
        double left = px_health_retry_after(px->at.ws, ev_now(px->at.ws->loop));
        snprintf(ra, sizeof(ra), "%lld", (long long)(left + 0.999));
        sl_resp_header_add(req, "retry-after", ra);
    }
    sl_resp_error(req, status, msg);
}

/* A failure before the response head: retry elsewhere when that is safe,
 * else 502 / 504. conn_fault: count against the server's health. */
static void upstream_failed(px_req_t *px, const char *cause, int status, int conn_fault,
                            int retryable)
{
    int reused = px->at.u && px->at.u->reused;
    px_attempt_failed(&px->at, cause, conn_fault);
    /* Once any of the head went out the upstream may have acted on it:
     * only an idempotent request without a body is sent again (RFC 9110
     * 9.2.2), not even after a stale keep-alive connection, unless the
     * route opts in. Before that, any request may go elsewhere. */
    int head_out = px->head_off > 0;
    int replay_ok = (is_idempotent(px->req->method) && px->body_mode == BODY_NONE) ||
                    px->rt->retry_non_idempotent;
    px_attempt_drop(&px->at);
    int may = retryable && !px->body_started && !px->req->head_sent && (!head_out || replay_ok);
    if (may && (reused || px->at.attempts <= px->at.up->retries)) {
        start_attempt(px);
        return;
    }
    answer_error(px, status, status == 504 ? "upstream timed out" : "bad gateway");
}

/* ---- request: writing upstream ---- */

static ssize_t write_some(px_req_t *px, const void *p, size_t n)
{
    ssize_t w = px_io_write(px->at.u->fd, px->at.u->ssl, p, n);
    if (w < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    return w;
}

/* The client's trailers after the last chunk, written from head[] (the
 * request head is out by now). Too large: logged, sent without them. */
static int queue_trailers(px_req_t *px)
{
    char *buf = px_head_scratch();
    ssize_t n = px_build_trailers(&px->req->trailers, buf, PX_REQ_HEAD_MAX);
    if (n < 0) {
        px_attempt_log(&px->at, "request trailers too large; dropped");
        return SL_ETOOBIG;
    }
    px_head_set(&px->head, &px->head_len, &px->head_off, buf, (size_t)n);
    return 0;
}

/* Next chunk of framing when the previous run is done. Returns 1 when
 * something was queued in side[]. */
static int queue_framing(px_req_t *px)
{
    if (px->body_mode != BODY_CHUNKED || px->chunk_left)
        return 0;
    size_t len = sl_buf_len(&px->body);
    if (len) {
        px->side_len = (size_t)snprintf(px->side, sizeof(px->side), "%zx\r\n", len);
        px->side_off = 0;
        px->chunk_left = len;
        return 1;
    }
    if (px->body_fin && !px->end_queued) {
        px->end_queued = 1;
        if (px->req->trailers.n && queue_trailers(px) == 0)
            return 1;
        memcpy(px->side, "0\r\n\r\n", 5);
        px->side_len = 5;
        px->side_off = 0;
        return 1;
    }
    return 0;
}

/* Write as much as the socket takes. Returns 0, or SL_ECLOSED after a
 * failure was answered (px->at.u is gone). */
static int flush_out(px_req_t *px)
{
    for (;;) {
        ssize_t w;
        if (px->side_off < px->side_len) {
            w = write_some(px, px->side + px->side_off, px->side_len - px->side_off);
            if (w > 0 && (px->side_off += (size_t)w) == px->side_len && px->chunk_left == 0 &&
                px->side_len == 2)
                px->side_len = px->side_off = 0; /* a chunk's CRLF is out */
        } else if (px->head_off < px->head_len) {
            w = write_some(px, px->head + px->head_off, px->head_len - px->head_off);
            if (w > 0)
                px->head_off += (size_t)w;
        } else if (queue_framing(px)) {
            continue;
        } else if (!sl_buf_is_empty(&px->body)) {
            const uint8_t *p;
            size_t n;
            sl_buf_peek(&px->body, &p, &n);
            if (px->body_mode == BODY_CHUNKED)
                n = (size_t)SL_MIN((uint64_t)n, px->chunk_left);
            w = write_some(px, p, n);
            if (w > 0) {
                sl_buf_skip(&px->body, (size_t)w);
                px->body_started = 1;
                sl_req_consume(px->req, (size_t)w);
                if (px->body_mode == BODY_CHUNKED && (px->chunk_left -= (uint64_t)w) == 0) {
                    memcpy(px->side, "\r\n", 2);
                    px->side_len = 2;
                    px->side_off = 0;
                }
            }
        } else {
            if (px->body_fin && (px->body_mode != BODY_CHUNKED || px->end_queued))
                px->req_sent = 1;
            return 0;
        }
        if (w == 0)
            return 0;
        if (w < 0) {
            char cause[128];
            snprintf(cause, sizeof(cause), "send failed: %s", strerror(errno));
            upstream_failed(px, cause, 502, 1, 1);
            return SL_ECLOSED;
        }
    }
}

static void do_write(px_req_t *px)
{
    if (!px->at.u || px->at.u->connecting || px->done)
        return;
    if (flush_out(px) == 0)
        update(px);
}

/* ---- response: reading upstream ---- */

static void forward_informational(px_req_t *px, const sl_h1_head_t *h)
{
    sl_header_t v[PX_MAX_RESP_HEADERS];
    sl_headers_t hs = {v, 0, PX_MAX_RESP_HEADERS};
    const sl_header_t *ch = NULL;
    for (size_t i = 0; i < h->nheaders; i++)
        if (sl_str_caseeq(h->headers[i].name, "connection"))
            ch = &h->headers[i];
    for (size_t i = 0; i < h->nheaders; i++)
        if (!px_is_hop_header(h->headers[i].name, ch ? ch->value : (sl_str_t){"", 0}))
            v[hs.n++] = h->headers[i];
    sl_resp_informational(px->req, h->status, &hs);
}

static void take_head(px_req_t *px, const sl_h1_head_t *h)
{
    sl_req_t *req = px->req;
    const px_route_t *rt = px->rt;
    sl_str_t conn = {"", 0};
    for (size_t i = 0; i < h->nheaders; i++)
        if (sl_str_caseeq(h->headers[i].name, "connection"))
            conn = h->headers[i].value;
    req->res.status = h->status;
    for (size_t i = 0; i < h->nheaders; i++) {
        const sl_header_t *f = &h->headers[i];
        if (!px_resp_header_dropped(rt, f->name, conn))
            sl_resp_header_addn(req, f->name.p, f->name.n, f->value.p, f->value.n);
    }
    for (size_t i = 0; i < rt->nset_resp; i++)
        sl_resp_header_addn(req, rt->set_resp_headers[i].name.p, rt->set_resp_headers[i].name.n,
                            rt->set_resp_headers[i].value.p, rt->set_resp_headers[i].value.n);
    px->keep = h->keep_alive;
    px->rb = px_resp_body(req->is_head, h);
    if (px->rb == PX_BODY_NONE) {
        req->res.content_length = h->status == 204 ? -1 : h->content_length;
    } else if (px->rb == PX_BODY_CHUNKED) {
        req->res.content_length = -1;
        sl_h1_chunked_init(&px->chunk, TRAILER_MAX);
        px->trailers = (sl_headers_t){0};
        px->chunk.trailers = &px->trailers;
        px->chunk.pool = &req->pool;
    } else if (px->rb == PX_BODY_LENGTH) {
        px->res_left = (uint64_t)h->content_length;
        req->res.content_length = h->content_length;
    } else {
        px->keep = 0;
        req->res.content_length = -1;
    }
    px->head_done = 1;
    px_attempt_ok(&px->at, px->at.u->idx);
}

/* Parse response heads (1xx first). Returns 1 when the final head is in,
 * 0 when more bytes are needed, SL_ECLOSED after an error answer. */
static int parse_heads(px_req_t *px)
{
    const sl_config_t *cfg = sl_req_config(px->req);
    sl_h1_limits_t lim = {cfg->limits.h1_uri_bytes, PX_HEAD_MAX, PX_MAX_RESP_HEADERS};
    while (!px->head_done) {
        sl_header_t hv[PX_MAX_RESP_HEADERS];
        sl_h1_head_t h;
        size_t used = 0;
        memset(&h, 0, sizeof(h));
        h.headers = hv;
        h.max_headers = PX_MAX_RESP_HEADERS;
        int rc = sl_h1_parse_response(px->in + px->rpos, px->in_len - px->rpos, &lim, &h, &used);
        if (rc == SL_H1_INCOMPLETE) {
            if (px->in_len - px->rpos >= PX_HEAD_MAX || px->in_len == PX_IN_CAP) {
                upstream_failed(px, "response head too large", 502, 0, 0);
                return SL_ECLOSED;
            }
            return 0;
        }
        if (rc != SL_H1_OK) {
            char cause[160];
            snprintf(cause, sizeof(cause), "malformed response head (%s)",
                     h.error ? h.error : "parse error");
            upstream_failed(px, cause, 502, 0, 0);
            return SL_ECLOSED;
        }
        if (h.status >= 100 && h.status < 200) {
            if (h.status == 101) {
                upstream_failed(px, "unexpected 101 Switching Protocols", 502, 0, 0);
                return SL_ECLOSED;
            }
            if (h.status != 100) /* 100 went out already from the protocol */
                forward_informational(px, &h);
            px->rpos += used;
            continue;
        }
        take_head(px, &h);
        px->rpos += used;
    }
    return 1;
}

static void on_run(void *arg, const uint8_t *p, size_t n)
{
    px_req_t *px = arg;
    /* Runs arrive in order and never overlap what follows: move them down
     * to the output region. */
    memmove(px->in + px->oend, p, n);
    px->oend += n;
}

/* The upstream's trailer fields (the decoder kept them) to the client. */
static void take_trailers(px_req_t *px)
{
    for (size_t i = 0; i < px->trailers.n; i++) {
        const sl_header_t *h = &px->trailers.v[i];
        if (!px_trailer_dropped(h->name))
            sl_resp_trailer_add(px->req, h->name.p, h->value.p); /* NUL-terminated */
    }
}

/* Decode what is buffered into [obeg, oend). Returns 1 at the end of the
 * body, 0 for more, SL_EINVAL on bad framing. */
static int decode_chunked(px_req_t *px)
{
    size_t start = px->rpos;
    ssize_t r = sl_h1_chunked_decode(&px->chunk, px->in + start, px->in_len - start, on_run, px);
    if (r < 0)
        return SL_EINVAL;
    px->rpos = start + (size_t)r;
    if (!px->chunk.done)
        return 0;
    take_trailers(px);
    return 1;
}

/* The upstream connection is done with this response. */
static void finish_conn(px_req_t *px)
{
    int reusable = px->keep && !px->up_eof && px->rpos == px->in_len && px->req_sent;
    px_uconn_release(px->at.u, reusable);
    px->at.u = NULL;
    px->at.io_events = 0;
}

static void truncated(px_req_t *px, const char *why)
{
    px_attempt_log(&px->at, why);
    px_attempt_drop(&px->at);
    px->done = 1;
    sl_resp_reset(px->req, SL_RESET_INTERNAL_ERROR);
}

/* Send what the buffer holds. Nothing runs while a send is outstanding. */
static void pump_body(px_req_t *px)
{
    int final = 0;
    px->obeg = px->oend = px->rpos;
    switch (px->rb) {
    case PX_BODY_NONE: final = 1; break;
    case PX_BODY_LENGTH: {
        size_t n = (size_t)SL_MIN((uint64_t)(px->in_len - px->rpos), px->res_left);
        px->oend = px->rpos + n;
        px->rpos += n;
        px->res_left -= n;
        final = px->res_left == 0;
        if (!final && n == 0 && px->up_eof) {
            truncated(px, "closed the connection before the end of the body");
            return;
        }
        break;
    }
    case PX_BODY_CLOSE:
        px->oend = px->in_len;
        px->rpos = px->in_len;
        final = px->up_eof;
        break;
    default: {
        int rc = decode_chunked(px);
        if (rc < 0) {
            truncated(px, "sent malformed chunked framing");
            return;
        }
        final = rc;
        if (!final && px->oend == px->obeg && px->up_eof) {
            truncated(px, "closed the connection before the last chunk");
            return;
        }
    }
    }
    size_t n = px->oend - px->obeg;
    if (!final && n == 0 && px->req->head_sent) {
        /* Nothing to send: make room and read on. */
        memmove(px->in, px->in + px->rpos, px->in_len - px->rpos);
        px->in_len -= px->rpos;
        px->rpos = 0;
        update(px);
        return;
    }
    if (final) {
        finish_conn(px);
        px->done = 1;
    } else {
        px->sending = 1;
        update(px);
    }
    sl_resp_send(px->req, px->in + px->obeg, n, final);
}

static void process_input(px_req_t *px)
{
    if (px->done || px->sending)
        return;
    if (!px->head_done) {
        int rc = parse_heads(px);
        if (rc <= 0) {
            if (rc == 0 && px->up_eof) {
                if (px->in_len == 0)
                    upstream_failed(px, "closed the connection before responding", 502, 1, 1);
                else
                    upstream_failed(px, "closed the connection inside the response head", 502, 1,
                                    0);
                return;
            }
            if (rc == 0)
                update(px);
            return;
        }
    }
    pump_body(px);
}

static void do_read(px_req_t *px)
{
    ssize_t r =
        px_io_read(px->at.u->fd, px->at.u->ssl, px->in + px->in_len, PX_IN_CAP - px->in_len);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r < 0 && !px->head_done && px->in_len == 0) {
        char cause[128];
        snprintf(cause, sizeof(cause), "read failed: %s", strerror(errno));
        upstream_failed(px, cause, 502, 1, 1);
        return;
    }
    if (r <= 0)
        px->up_eof = 1;
    else
        px->in_len += (size_t)r;
    process_input(px);
}

/* ---- upstream events ---- */

static void connected(px_req_t *px)
{
    char cause[256];
    int rc = px_uconn_progress(px->at.u, cause, sizeof(cause));
    if (rc < 0) {
        upstream_failed(px, cause, 502, 1, 1);
        return;
    }
    if (rc == 0) {
        update(px);
        return;
    }
    do_write(px);
}

static void on_up_io(struct ev_loop *loop, ev_io *io, int revents)
{
    SL_UNUSED(loop);
    px_req_t *px = io->data;
    if (px->at.u->connecting) {
        connected(px);
        return;
    }
    if (revents & EV_WRITE) {
        if (flush_out(px) != 0)
            return;
        if (px->done || !px->at.u)
            return;
    }
    if ((revents & EV_READ) && !px->sending && !px->done)
        do_read(px);
    else
        update(px);
}

static void on_up_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    px_req_t *px = t->data;
    char cause[128];
    const px_timeouts_t *to = &px->at.up->to;
    if (px->at.u->connecting) {
        snprintf(cause, sizeof(cause), "connect timed out after %gs", to->connect_s);
        upstream_failed(px, cause, 504, 1, 1);
    } else if (!px->head_done && px->req_sent) {
        snprintf(cause, sizeof(cause), "no response within first_byte_s %gs", to->first_byte_s);
        upstream_failed(px, cause, 504, 1, 0);
    } else if (!px->head_done) {
        snprintf(cause, sizeof(cause), "request not taken within send_idle_s %gs", to->send_idle_s);
        upstream_failed(px, cause, 504, 1, 0);
    } else {
        snprintf(cause, sizeof(cause), "no response bytes within read_idle_s %gs", to->read_idle_s);
        truncated(px, cause);
    }
}

/* ---- attempts ---- */

static int build_head(px_req_t *px)
{
    char *buf = px_head_scratch();
    px_head_in_t in = {px->req, px->rt, server(px), px->body_mode, px->request_id, px->traceparent};
    ssize_t n = px_build_request(&in, buf, PX_REQ_HEAD_MAX);
    if (n < 0)
        return SL_ETOOBIG;
    px_head_set(&px->head, &px->head_len, &px->head_off, buf, (size_t)n);
    return 0;
}

static void start_attempt(px_req_t *px)
{
    int status = px_attempt_next(&px->at, 1, on_up_io, on_up_timeout, px);
    if (status) {
        answer_error(px, status, status == 503 ? "no upstream server available" : "bad gateway");
        return;
    }
    px_uconn_t *u = px->at.u;
    u->owner = px;
    if (build_head(px) != 0) {
        px_attempt_drop(&px->at);
        sl_log_stream(SL_LOG_INFO, px->req->conn, px->req->stream_id,
                      "client sent a request whose upstream head exceeds %d bytes",
                      PX_REQ_HEAD_MAX);
        answer_error(px, 431, "request header fields too large");
        return;
    }
    px->side_len = px->side_off = 0;
    px->chunk_left = 0;
    px->end_queued = 0;
    px->req_sent = 0;
    px->in_len = px->rpos = 0;
    px->up_eof = 0;
    if (u->connecting) {
        px_attempt_set_io(&px->at, px_uconn_events(u));
        px_attempt_set_timer(&px->at, px->at.up->to.connect_s);
        return;
    }
    do_write(px);
}

/* ---- sl_handler_cbs_t ---- */

static void on_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    px_req_t *px = req->hdata;
    if (px->done) {
        sl_req_consume(req, len); /* the answer is out: let the body drain */
        return;
    }
    if (len && sl_buf_write_all(&px->body, data, len) != 0) {
        sl_log_stream(SL_LOG_ERROR, req->conn, req->stream_id,
                      "proxy: %zu body bytes past the buffer bound", len);
        px_attempt_drop(&px->at);
        px->done = 1;
        sl_resp_reset(req, SL_RESET_INTERNAL_ERROR);
        return;
    }
    if (fin)
        px->body_fin = 1;
    do_write(px);
}

static void on_proceed(sl_req_t *req)
{
    px_req_t *px = req->hdata;
    px->sending = 0;
    if (px->done)
        return;
    memmove(px->in, px->in + px->rpos, px->in_len - px->rpos);
    px->in_len -= px->rpos;
    px->rpos = 0;
    if (px->in_len || px->up_eof)
        process_input(px);
    else
        update(px);
}

static void on_close(sl_req_t *req, int err)
{
    px_req_t *px = req->hdata;
    if (px->at.u) {
        /* The client went away mid-exchange: the upstream request is
         * cancelled by closing its connection. */
        if (err)
            sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id,
                          "proxy: client went away; upstream \"%s\" request cancelled",
                          px->at.up->name);
        px_attempt_drop(&px->at);
    }
    px->closed = 1;
    sl_buf_dispose(&px->body);
    sl_free(px->head);
    px_inbuf_put(px->at.ws, px->in);
}

static const sl_handler_cbs_t px_cbs = {
    .on_body = on_body,
    .on_proceed = on_proceed,
    .on_close = on_close,
};

/* Unconsumed body bytes the protocol allows, in chunks, plus slack. */
size_t px_body_chunks(const sl_req_t *req)
{
    return sl_req_body_chunks(req);
}

void px_forward(sl_req_t *req, void *arg)
{
    const px_route_t *rt = arg;
    if (rt->up->proto != PX_PROTO_H1) {
        px_h2_start(req, rt); /* h2up.c */
        return;
    }
    px_h1_start(req, rt, NULL, req->body_done);
}

static void on_req(sl_req_t *req)
{
    const px_route_t *rt = req->route->state;
    if (px_is_ws_request(req)) {
        px_tunnel_start(req, rt); /* tunnel.c */
        return;
    }
    if (rt->cache && sl_cache_handle(req, rt->cache))
        return; /* src/cache/ answers, or forwards through px_forward */
    px_forward(req, (void *)rt);
}

void px_h1_start(sl_req_t *req, const px_route_t *rt, sl_buf_t *pending, int fin)
{
    px_req_t *px = sl_pool_alloc(&req->pool, sizeof(*px));
    memset(px, 0, sizeof(*px));
    px->req = req;
    px->rt = rt;
    px_attempt_init(&px->at, req, rt->up, "");
    sl_buf_init(&px->body, px->at.ws->bufpool, px_body_chunks(req));
    const uint8_t *p;
    size_t n;
    while (pending && sl_buf_peek(pending, &p, &n) == 0) { /* bytes held for HTTP/2 */
        if (sl_buf_write_all(&px->body, p, n) != 0)
            SL_ASSERT(0 && "pending body larger than the body window");
        sl_buf_skip(pending, n);
    }
    if (req->content_length >= 0)
        px->body_mode = BODY_LENGTH;
    else if (fin && sl_buf_is_empty(&px->body) && !req->trailers.n)
        px->body_mode = BODY_NONE;
    else
        px->body_mode = BODY_CHUNKED;
    px->body_fin = fin;
    px->in = px_inbuf_get(px->at.ws);
    px_make_ids(req, rt, px->request_id, px->traceparent);
    req->hdata = px;
    req->cbs = &px_cbs;
    start_attempt(px);
}

const sl_handler_def_t sl_proxy_handler = {
    .name = "proxy",
    .configure = px_route_configure,
    .free_state = px_route_free,
    .on_req = on_req,
};
