/* sluice - SPDX-License-Identifier: MIT
 *
 * One HTTP/2 stream = one sl_req_t. Builds the request model from the
 * decoded header fields (copies go into the request pool; HPACK static
 * table entries are borrowed), hands it to the router, delivers the body
 * with flow-control credit, and implements the response sink: HEADERS via
 * nghttp2_submit_response, DATA pulled by nghttp2 from the handler's
 * outstanding buffer and written straight into the conn's output queue
 * (NGHTTP2_DATA_FLAG_NO_COPY), trailers, 1xx, resets.
 */
#include "h2_int.h"
#include "../fields.h"
#include "../finish.h"
#include "../metrics.h"
#include "../router.h"
#include "../slab.h"
#include <stdio.h>

/* ---- request side ---- */

static const sl_req_ops_t h2_ops;

sl_h2_stream_t *sl_h2_stream_new(sl_h2_session_t *s, int32_t id)
{
    /* From the worker's slab: streams come and go at request rate. */
    sl_h2_stream_t *st = sl_slab_alloc(sizeof(*st));
    if (!st)
        return NULL;
    sl_conn_t *c = s->conn;
    sl_req_t *req = &st->req;
    /* sl_req_init clears the req; clear our part after it. */
    sl_req_init(req, SL_PROTO_H2, c);
    req->body_window = s->cfg->limits.h2_initial_window;
    memset((char *)st + sizeof(st->req), 0, sizeof(*st) - sizeof(st->req));
    st->sess = s;
    st->id = id;
    st->last_active = ev_now(s->loop);
    req->stream_id = id;
    req->worker_id = sl_conn_worker_id(c);
    req->ops = &h2_ops;
    req->pdata = st;
    req->peer = c->tag.peer;
    req->tls.version = c->tls_version;
    req->tls.alpn = c->alpn;
    req->tls.sni = c->sni;
    sl_req_set_client_cert(req, c->client_cert);
    /* Small first header arrays keep a typical exchange inside the pool's
     * inline block: no malloc for it at all. */
    req->headers.v = sl_pool_alloc(&req->pool, 8 * sizeof(sl_header_t));
    req->headers.cap = 8;
    req->res.headers.v = sl_pool_alloc(&req->pool, 8 * sizeof(sl_header_t));
    req->res.headers.cap = 8;
    sl_h2_session_link(s, st);
    return st;
}

/* HPACK static-table strings live forever; everything else is copied
 * into the request pool (the decoder's buffers do not outlive the call).
 * v is rc's buffer, which every caller already has. */
static sl_str_t rc_str(sl_req_t *req, nghttp2_rcbuf *rc, nghttp2_vec v)
{
    if (nghttp2_rcbuf_is_static(rc))
        return (sl_str_t){(const char *)v.base, v.len};
    return (sl_str_t){sl_pool_strndup(&req->pool, (const char *)v.base, v.len), v.len};
}

static void on_pseudo(sl_req_t *req, nghttp2_vec n, nghttp2_rcbuf *value, nghttp2_vec v)
{
    /* nghttp2 has already refused unknown, duplicate and misplaced
     * pseudo-headers (stream reset with PROTOCOL_ERROR). */
    switch (n.len) {
    case 5:
        if (memcmp(n.base, ":path", 5) == 0)
            req->target = rc_str(req, value, v);
        break;
    case 7:
        if (memcmp(n.base, ":method", 7) == 0)
            req->method = rc_str(req, value, v);
        else if (memcmp(n.base, ":scheme", 7) == 0)
            req->scheme = rc_str(req, value, v);
        break;
    case 9:
        if (memcmp(n.base, ":protocol", 9) == 0)
            req->protocol = rc_str(req, value, v);
        break;
    case 10:
        if (memcmp(n.base, ":authority", 10) == 0)
            req->authority = rc_str(req, value, v);
        break;
    default: break;
    }
}

void sl_h2_stream_on_header(sl_h2_stream_t *st, nghttp2_rcbuf *name, nghttp2_rcbuf *value,
                            int trailer)
{
    sl_req_t *req = &st->req;
    nghttp2_vec n = nghttp2_rcbuf_get_buf(name);
    nghttp2_vec v = nghttp2_rcbuf_get_buf(value);
    /* nghttp2 does not enforce our SETTINGS_MAX_HEADER_LIST_SIZE; count
     * as RFC 9113 6.5.2 does and stop storing past it (HPACK bomb). The
     * request is answered 431 once the block ends. */
    st->hdr_bytes += n.len + v.len + 32;
    if (st->hdr_bytes > st->sess->cfg->limits.h2_header_list_bytes) {
        if (!st->hdrs_too_big) {
            st->hdrs_too_big = 1;
            sl_h2_glitch(st->sess, "oversized header lists");
        }
        return;
    }
    if (trailer) {
        /* Pseudo-fields in trailers are refused by nghttp2 (messaging on). */
        sl_headers_add_ref(&req->pool, &req->trailers, rc_str(req, name, n), rc_str(req, value, v));
        return;
    }
    if (n.len && n.base[0] == ':') {
        on_pseudo(req, n, value, v);
        return;
    }
    sl_str_t sn = rc_str(req, name, n), sv = rc_str(req, value, v);
    sl_headers_add_ref(&req->pool, &req->headers, sn, sv);
    if (n.len == 14 && memcmp(n.base, "content-length", 14) == 0)
        req->content_length = sl_str_to_u64(sv); /* nghttp2 validated it */
    else if (n.len == 6 && memcmp(n.base, "cookie", 6) == 0 && st->ncookies < 3)
        st->ncookies++;
}

static void send_continue(sl_h2_stream_t *st)
{
    nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"100", 7, 3,
                     NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
    nghttp2_submit_headers(st->sess->ng, NGHTTP2_FLAG_NONE, st->id, NULL, &nv, 1, NULL);
}

void sl_h2_stream_on_request(sl_h2_stream_t *st, int end_stream)
{
    sl_h2_session_t *s = st->sess;
    sl_req_t *req = &st->req;
    const sl_limits_t *lim = &s->cfg->limits;

    sl_fields_request_done(req, st->ncookies);
    if (end_stream)
        req->body_done = 1;
    st->last_active = ev_now(s->loop);
    /* A connection past its abuse limit serves no new requests. */
    if (s->lim.tripped)
        return;
    st->dispatched = 1;
    if (st->hdrs_too_big) {
        if (!s->logged_hdrs) {
            s->logged_hdrs = 1;
            sl_log_stream(SL_LOG_INFO, s->conn, st->id, "client sent a header list over %u bytes",
                          lim->h2_header_list_bytes);
        }
        sl_metrics_abuse(SL_M_ABUSE_HEADERS);
        sl_resp_error(req, 431, "request header fields too large");
        return;
    }
    if (sl_str_eq(req->method, "CONNECT") && !req->protocol.n) {
        sl_log_stream(SL_LOG_INFO, s->conn, st->id, "client sent CONNECT without :protocol");
        sl_resp_header_add(req, "allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH");
        sl_resp_error(req, 405, "CONNECT is not supported");
        return;
    }
    if (lim->max_body_bytes && req->content_length > lim->max_body_bytes) {
        sl_log_stream(SL_LOG_INFO, s->conn, st->id, "client sent content-length %lld over %lld",
                      (long long)req->content_length, (long long)lim->max_body_bytes);
        sl_resp_error(req, 413, "request body too large");
        return;
    }
    if (!end_stream) {
        const sl_header_t *e = sl_req_header(req, "expect");
        if (e && sl_str_caseeq(e->value, "100-continue")) {
            req->expect_continue = 1;
            send_continue(st);
        }
    }
    sl_router_dispatch(s->cfg, req);
}

void sl_h2_stream_on_data(sl_h2_stream_t *st, const uint8_t *data, size_t len)
{
    sl_h2_session_t *s = st->sess;
    sl_req_t *req = &st->req;
    int64_t max = s->cfg->limits.max_body_bytes;
    req->bytes_in += len;
    st->last_active = ev_now(s->loop);
    if (max && !st->app_reset && req->bytes_in > (uint64_t)max) {
        sl_log_stream(SL_LOG_INFO, s->conn, st->id, "client sent a request body over %lld bytes",
                      (long long)max);
        st->app_reset = 1;
        nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    }
    if (st->discarding) {
        nghttp2_session_consume(s->ng, st->id, len);
        return;
    }
    if (st->dispatched && !st->app_reset && !req->body_done && req->cbs && req->cbs->on_body) {
        st->unconsumed += len;
        req->cbs->on_body(req, data, len, 0);
        return;
    }
    /* Nobody wants it: give the credit back at once. */
    nghttp2_session_consume(s->ng, st->id, len);
}

void sl_h2_stream_discard_body(sl_h2_stream_t *st)
{
    sl_h2_session_t *s = st->sess;
    st->discarding = 1;
    /* The handler is done: what it still holds is credit nobody returns. */
    if (st->unconsumed) {
        nghttp2_session_consume(s->ng, st->id, st->unconsumed);
        st->unconsumed = 0;
    }
}

void sl_h2_stream_on_body_end(sl_h2_stream_t *st)
{
    sl_req_t *req = &st->req;
    if (req->body_done)
        return;
    req->body_done = 1;
    if (st->dispatched && !st->app_reset && !st->discarding && req->cbs && req->cbs->on_body)
        req->cbs->on_body(req, NULL, 0, 1);
}

void sl_h2_stream_close(sl_h2_stream_t *st, uint32_t error_code)
{
    sl_h2_session_t *s = st->sess;
    sl_req_t *req = &st->req;
    SL_ASSERT(!st->closed);
    st->closed = 1;
    sl_h2_session_unlink(s, st);
    /* Body bytes the handler never consumed still hold connection window. */
    if (st->unconsumed && !s->dead)
        nghttp2_session_consume_connection(s->ng, st->unconsumed);
    if (st->dispatched) {
        if (!req->head_sent)
            req->res.status = 0; /* no response: say so in the access log */
        sl_req_finished(req);
        if (req->cbs && req->cbs->on_close)
            req->cbs->on_close(
                req, error_code == NGHTTP2_NO_ERROR && req->final_sent ? 0 : SL_ECANCELED);
    }
    sl_req_dispose(req);
    sl_slab_free(st);
}

void sl_h2_stream_from_h1(sl_h2_stream_t *st, const sl_req_t *h1req)
{
    sl_req_t *req = &st->req;
    sl_pool_t *p = &req->pool;
    req->method = (sl_str_t){sl_pool_strndup(p, h1req->method.p, h1req->method.n), h1req->method.n};
    req->target = (sl_str_t){sl_pool_strndup(p, h1req->target.p, h1req->target.n), h1req->target.n};
    req->authority =
        (sl_str_t){sl_pool_strndup(p, h1req->authority.p, h1req->authority.n), h1req->authority.n};
    req->scheme = SL_STR("http");
    req->content_length = h1req->content_length;
    for (size_t i = 0; i < h1req->headers.n; i++) {
        const sl_header_t *h = &h1req->headers.v[i];
        /* Connection-specific fields and the upgrade's own HTTP2-Settings
         * stay with the HTTP/1.1 hop (RFC 9113 8.2.2). */
        if (!sl_field_is_connection_specific(h->name) && !sl_str_caseeq(h->name, "http2-settings"))
            sl_headers_add(p, &req->headers, h->name.p, h->name.n, h->value.p, h->value.n);
    }
}

/* ---- response side ---- */

#define NV_NO_COPY (NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE)

SL_NV_SAME_LAYOUT(nghttp2_nv);

/* The head in the request pool, in the array nghttp2 takes; its strings
 * stay valid until the stream is freed, so nghttp2 need not copy them. */
static size_t build_head(sl_h2_stream_t *st, nghttp2_nv **out)
{
    sl_req_t *req = &st->req;
    sl_nv_t *f = sl_pool_alloc(&req->pool, (req->res.headers.n + 4) * sizeof(*f));
    size_t n = sl_fields_response(req, ev_now(st->sess->loop), f, NV_NO_COPY, st->status, st->clen);
    *out = (nghttp2_nv *)(void *)f;
    return n;
}

static void submit_trailers(sl_h2_stream_t *st, uint32_t *flags)
{
    sl_req_t *req = &st->req;
    sl_nv_t *f = sl_pool_alloc(&req->pool, (req->res.trailers.n + 1) * sizeof(*f));
    size_t n = sl_fields_trailers(req, f, NV_NO_COPY);
    /* Submitting trailers from the data source callback is allowed. */
    if (n && nghttp2_submit_trailer(st->sess->ng, st->id, (nghttp2_nv *)(void *)f, n) == 0)
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
}

/* The data source: hand nghttp2 a length; the bytes are copied later by
 * sl_h2_stream_send_data straight from the handler's buffer. */
static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user_data)
{
    sl_h2_stream_t *st = src->ptr;
    size_t n = SL_MIN(length, st->pend_len);
    size_t space = sl_conn_out_space(st->sess->conn);
    (void)ng;
    (void)id;
    (void)buf;
    (void)user_data;
    if (n == 0 && !st->pend_final) {
        st->deferred = 1; /* op_send resumes us */
        return NGHTTP2_ERR_DEFERRED;
    }
    /* Keep room for whatever nghttp2 packs next (see SL_H2_OUT_RESERVE). */
    if (space > SL_H2_OUT_RESERVE + SL_H2_FRAME_HDLEN + 4096 &&
        n > space - SL_H2_OUT_RESERVE - SL_H2_FRAME_HDLEN)
        n = space - SL_H2_OUT_RESERVE - SL_H2_FRAME_HDLEN;
    /* Sent from the handler's buffer (sl_h2_stream_send_data): a frame of
     * one full TLS record, header included, so no record carries 9 bytes. */
    if (st->req.res.body_scratch && st->sess->conn->ssl && n > SL_H2_TLS_RECORD - SL_H2_FRAME_HDLEN)
        n = SL_H2_TLS_RECORD - SL_H2_FRAME_HDLEN;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == st->pend_len && st->pend_final) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->req.res.trailers.n)
            submit_trailers(st, flags);
    }
    return (ssize_t)n;
}

/* Padding only for a stream a harness fault asked it for; every other
 * frame goes out as it is (one flag test per frame). */
ssize_t sl_h2_select_padding(nghttp2_session *ng, const nghttp2_frame *frame,
                             size_t max_payloadlen, void *user_data)
{
    const sl_h2_session_t *s = user_data;
    if (!s->padded)
        return (ssize_t)frame->hd.length;
    const sl_h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!st || !st->pad)
        return (ssize_t)frame->hd.length;
    return (ssize_t)SL_MIN(frame->hd.length + st->pad + 1, max_payloadlen);
}

int sl_h2_stream_send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                           size_t length, nghttp2_data_source *source, void *user_data)
{
    sl_h2_stream_t *st = source->ptr;
    sl_h2_session_t *s = user_data;
    sl_conn_t *c = s->conn;
    (void)ng;
    s->last = st; /* on_frame_send asks for this frame's stream next */
    size_t padlen = frame->data.padlen; /* only a harness fault pads */
    if (sl_conn_out_space(c) < SL_H2_FRAME_HDLEN + length + padlen)
        return NGHTTP2_ERR_WOULDBLOCK; /* nghttp2 retries on the next pump */
    static const uint8_t zeros[256];
    uint8_t padfield = (uint8_t)(padlen ? padlen - 1 : 0);
    if (st->req.res.body_scratch && !padlen && c->ssl) {
        /* The header goes in front of the data (scratch or bytes already
         * sent, req.h), and frame and data are encrypted in one piece. */
        uint8_t *hd = (uint8_t *)(uintptr_t)st->pend - SL_H2_FRAME_HDLEN;
        memcpy(hd, framehd, SL_H2_FRAME_HDLEN);
        int rv = sl_conn_write_direct(c, hd, SL_H2_FRAME_HDLEN + length);
        if (rv == SL_EAGAIN)
            return NGHTTP2_ERR_WOULDBLOCK; /* retried on the next pump */
        if (rv != 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    } else if (sl_conn_write(c, framehd, SL_H2_FRAME_HDLEN) != 0 ||
               (padlen && sl_conn_write(c, &padfield, 1) != 0) ||
               (length && sl_conn_write(c, st->pend, length) != 0) ||
               (padlen > 1 && sl_conn_write(c, zeros, padlen - 1) != 0))
        return NGHTTP2_ERR_CALLBACK_FAILURE; /* the conn is closing */
    st->pend += length;
    st->pend_len -= length;
    st->req.bytes_out += length;
    st->last_active = ev_now(s->loop);
    /* The handler's buffer is drained: it may send again, but only after
     * mem_send returns (never from inside nghttp2). */
    if (st->pend_len == 0 && !st->pend_final)
        sl_h2_session_queue_proceed(s, st);
    return 0;
}

static int submit_response(sl_h2_stream_t *st, const uint8_t *data, size_t len, int final)
{
    sl_req_t *req = &st->req;
    sl_h2_session_t *s = st->sess;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    nghttp2_nv *nva;
    size_t n = build_head(st, &nva);
    int with_body = !req->is_head && !(final && len == 0 && req->res.trailers.n == 0);
    st->submitted = 1;
    req->head_sent = 1;
    if (with_body) {
        st->pend = data;
        st->pend_len = len;
        st->pend_final = final ? 1 : 0;
    } else {
        st->no_body = 1; /* END_STREAM on HEADERS; later sends are dropped */
    }
    int rv = nghttp2_submit_response(s->ng, st->id, nva, n, with_body ? &prd : NULL);
    if (rv != 0) {
        sl_log_stream(SL_LOG_ERROR, s->conn, st->id, "nghttp2_submit_response: %s",
                      nghttp2_strerror(rv));
        return SL_ECLOSED;
    }
    if (!final && (!with_body || len == 0))
        sl_h2_session_queue_proceed(s, st);
    sl_h2_session_want_pump(s);
    return 0;
}

static int op_send(sl_req_t *req, const uint8_t *data, size_t len, int final)
{
    sl_h2_stream_t *st = req->pdata;
    sl_h2_session_t *s = st->sess;
    if (st->closed || s->dead)
        return SL_ECLOSED;
    if (!st->submitted)
        return submit_response(st, data, len, final);
    if (st->no_body) {
        if (!final)
            sl_h2_session_queue_proceed(s, st);
        sl_h2_session_want_pump(s);
        return 0;
    }
    /* req.h: one send outstanding at a time, the next after on_proceed. */
    SL_ASSERT(st->pend_len == 0 && !st->pend_final);
    st->pend = data;
    st->pend_len = len;
    st->pend_final = final ? 1 : 0;
    if (len == 0 && !final) {
        sl_h2_session_queue_proceed(s, st);
    } else if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(s->ng, st->id);
    }
    sl_h2_session_want_pump(s);
    return 0;
}

static int op_informational(sl_req_t *req, int status, const sl_headers_t *hdrs)
{
    sl_h2_stream_t *st = req->pdata;
    sl_h2_session_t *s = st->sess;
    size_t cnt = hdrs ? hdrs->n : 0;
    char code[4];
    if (st->closed || s->dead)
        return SL_ECLOSED;
    if (status == 101)
        return SL_EINVAL; /* no such thing in HTTP/2 */
    sl_nv_t *f = sl_pool_alloc(&req->pool, (cnt + 1) * sizeof(*f));
    /* The handler's list may be on its stack: let nghttp2 copy. */
    size_t n = sl_fields_informational(req, status, hdrs, f, NGHTTP2_NV_FLAG_NONE, code);
    int rv = nghttp2_submit_headers(s->ng, NGHTTP2_FLAG_NONE, st->id, NULL, (nghttp2_nv *)(void *)f,
                                    n, NULL);
    sl_h2_session_want_pump(s);
    return rv == 0 ? 0 : SL_ECLOSED;
}

static void op_reset(sl_req_t *req, uint32_t code)
{
    sl_h2_stream_t *st = req->pdata;
    sl_h2_session_t *s = st->sess;
    if (st->closed || s->dead)
        return;
    st->app_reset = 1;
    nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id, code);
    sl_h2_session_want_pump(s);
}

static void op_consume(sl_req_t *req, size_t n)
{
    sl_h2_stream_t *st = req->pdata;
    sl_h2_session_t *s = st->sess;
    if (st->closed || s->dead)
        return;
    n = SL_MIN(n, st->unconsumed);
    st->unconsumed -= n;
    /* Queues WINDOW_UPDATE once enough credit has built up. */
    nghttp2_session_consume(s->ng, st->id, n);
    sl_h2_session_want_pump(s);
}

/* Test faults (harness): GOAWAY and SETTINGS whenever a handler asks. */
static int op_fault(sl_req_t *req, const sl_fault_t *f)
{
    sl_h2_stream_t *st = req->pdata;
    sl_h2_session_t *s = st->sess;
    if (st->closed || s->dead)
        return SL_ECLOSED;
    int rv;
    if (f->kind == SL_FAULT_GOAWAY) {
        int32_t last = f->last_stream_id >= 0 ? f->last_stream_id
                                              : nghttp2_session_get_last_proc_stream_id(s->ng);
        rv = f->immediate ? nghttp2_session_terminate_session2(s->ng, last, f->code)
                          : nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, last, f->code, NULL,
                                                  0); /* counted when sent (session.c) */
    } else if (f->kind == SL_FAULT_PING_ACK) {
        sl_h2_session_ping_fault(s, f->count, f->delay_ms);
        rv = 0;
    } else if (f->kind == SL_FAULT_PADDING) {
        st->pad = (uint8_t)SL_MIN(f->code, 255u);
        s->padded = 1;
        rv = 0;
    } else if (f->kind == SL_FAULT_SETTINGS) {
        nghttp2_settings_entry iv[8];
        size_t n = SL_MIN(f->nsettings, SL_ARRAY_LEN(iv));
        for (size_t i = 0; i < n; i++)
            iv[i] = (nghttp2_settings_entry){(int32_t)f->settings[i][0], f->settings[i][1]};
        rv = nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, n);
    } else {
        return SL_EINVAL;
    }
    sl_h2_session_want_pump(s);
    return rv == 0 ? 0 : SL_EINVAL;
}

static const sl_req_ops_t h2_ops = {
    .send = op_send,
    .informational = op_informational,
    .reset = op_reset,
    .consume = op_consume,
    .fault = op_fault,
};
