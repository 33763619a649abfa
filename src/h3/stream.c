/* sluice - SPDX-License-Identifier: MIT
 *
 * HTTP/3 over nghttp3: one request stream = one sl_req_t, answered
 * through the same response sink as HTTP/1.1 and HTTP/2 (req.h).
 *
 * nghttp3 sends a body from the application's memory and needs those
 * bytes until the peer acknowledges them (a lost packet is resent from
 * them), so a handler's bytes are copied into the stream's own bounded
 * queue (quic.response_buffer) and on_proceed comes once they are all
 * copied; acknowledged bytes leave the front of the queue. A reader that
 * acknowledges slowly therefore holds at most response_buffer bytes per
 * stream, and the handler waits.
 *
 * Request bodies are credited back to the client's flow control as the
 * handler consumes them (sl_req_consume), as on the other protocols.
 */
#include "h3_int.h"
#include "../fields.h"
#include "../finish.h"
#include "../metrics.h"
#include "../router.h"
#include "../slab.h"

static const sl_req_ops_t h3_ops;

static sl_h3_stream_t *stream_new(sl_h3_conn_t *hc, int64_t id)
{
    sl_h3_stream_t *st = sl_slab_alloc(sizeof(*st));
    sl_conn_t *c = hc->c;
    sl_req_t *req = &st->req;
    sl_req_init(req, SL_PROTO_H3, c);
    req->body_window = hc->qcfg->stream_window;
    memset((char *)st + sizeof(st->req), 0, sizeof(*st) - sizeof(st->req));
    st->hc = hc;
    st->id = id;
    st->last_active = ev_now(hc->hw->w->loop);
    req->stream_id = (int32_t)id;
    req->worker_id = sl_conn_worker_id(c);
    req->ops = &h3_ops;
    req->pdata = st;
    req->peer = c->tag.peer;
    req->tls.version = c->tls_version;
    req->tls.alpn = c->alpn;
    req->tls.sni = c->sni;
    sl_buf_init(&st->out, c->table->bufpool,
                (hc->qcfg->response_buffer + SL_BUF_CHUNK_SIZE - 1) / SL_BUF_CHUNK_SIZE + 1);
    st->next = hc->streams;
    if (hc->streams)
        hc->streams->prev = st;
    hc->streams = st;
    hc->nstreams++;
    return st;
}

static void unlink_stream(sl_h3_conn_t *hc, sl_h3_stream_t *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        hc->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    if (st->in_proceed) {
        sl_h3_stream_t **pp = &hc->proceed, *prev = NULL;
        while (*pp && *pp != st) {
            prev = *pp;
            pp = &(*pp)->pnext;
        }
        if (*pp) {
            *pp = st->pnext;
            if (hc->proceed_tail == st)
                hc->proceed_tail = prev;
            hc->nproceed--;
        }
    }
    hc->nstreams--;
}

/* The handler's on_close, exactly once, then the stream is gone. */
static void stream_close(sl_h3_stream_t *st, int err)
{
    sl_h3_conn_t *hc = st->hc;
    sl_req_t *req = &st->req;
    st->closed = 1;
    unlink_stream(hc, st);
    if (st->dispatched) {
        if (!req->head_sent)
            req->res.status = 0; /* no response: say so in the access log */
        sl_req_finished(req);
        if (req->cbs && req->cbs->on_close)
            req->cbs->on_close(req, err == 0 && req->final_sent ? 0 : SL_ECANCELED);
    }
    sl_buf_dispose(&st->out);
    sl_req_dispose(req);
    sl_slab_free(st);
}

void sl_h3_streams_abort(sl_h3_conn_t *hc)
{
    while (hc->streams) {
        sl_h3_stream_t *st = hc->streams;
        if (hc->h3)
            nghttp3_conn_set_stream_user_data(hc->h3, st->id, NULL);
        stream_close(st, SL_ECANCELED);
    }
}

static void queue_proceed(sl_h3_stream_t *st)
{
    sl_h3_conn_t *hc = st->hc;
    if (st->in_proceed)
        return;
    st->in_proceed = 1;
    st->pnext = NULL;
    if (hc->proceed_tail)
        hc->proceed_tail->pnext = st;
    else
        hc->proceed = st;
    hc->proceed_tail = st;
    hc->nproceed++;
    sl_h3_conn_want_write(hc);
}

void sl_h3_run_proceed(sl_h3_conn_t *hc)
{
    /* The streams queued when the pass began, first in first out; one a
     * handler queues again waits for the next pass. Taken from the queue
     * one at a time, so a stream another handler closes meanwhile is
     * simply gone from it. */
    for (size_t n = hc->nproceed; n && hc->proceed && !hc->dead; n--) {
        sl_h3_stream_t *st = hc->proceed;
        hc->proceed = st->pnext;
        if (!hc->proceed)
            hc->proceed_tail = NULL;
        hc->nproceed--;
        st->in_proceed = 0;
        st->pnext = NULL;
        if (st->req.cbs && st->req.cbs->on_proceed)
            st->req.cbs->on_proceed(&st->req);
    }
}

/* Give n bytes of request-body credit back to the client. */
static void credit(sl_h3_conn_t *hc, int64_t id, size_t n)
{
    if (!n || hc->dead)
        return;
    ngtcp2_conn_extend_max_stream_offset(hc->qc, id, n);
    ngtcp2_conn_extend_max_offset(hc->qc, n);
    sl_h3_conn_want_write(hc);
}

/* ---- request side ---- */

static sl_str_t rc_str(sl_req_t *req, nghttp3_rcbuf *rc)
{
    nghttp3_vec v = nghttp3_rcbuf_get_buf(rc);
    if (nghttp3_rcbuf_is_static(rc))
        return (sl_str_t){(const char *)v.base, v.len};
    return (sl_str_t){sl_pool_strndup(&req->pool, (const char *)v.base, v.len), v.len};
}

static int h_begin_headers(nghttp3_conn *h3, int64_t id, void *ud, void *sud)
{
    sl_h3_conn_t *hc = ud;
    (void)sud;
    sl_h3_stream_t *st = stream_new(hc, id);
    nghttp3_conn_set_stream_user_data(h3, id, st);
    return 0;
}

static void on_pseudo(sl_req_t *req, int32_t token, nghttp3_rcbuf *value)
{
    /* nghttp3 has refused unknown, duplicate and misplaced pseudo-fields. */
    switch (token) {
    case NGHTTP3_QPACK_TOKEN__PATH: req->target = rc_str(req, value); break;
    case NGHTTP3_QPACK_TOKEN__METHOD: req->method = rc_str(req, value); break;
    case NGHTTP3_QPACK_TOKEN__SCHEME: req->scheme = rc_str(req, value); break;
    case NGHTTP3_QPACK_TOKEN__AUTHORITY: req->authority = rc_str(req, value); break;
    case NGHTTP3_QPACK_TOKEN__PROTOCOL: req->protocol = rc_str(req, value); break;
    default: break;
    }
}

static int h_recv_header(nghttp3_conn *h3, int64_t id, int32_t token, nghttp3_rcbuf *name,
                         nghttp3_rcbuf *value, uint8_t flags, void *ud, void *sud)
{
    sl_h3_stream_t *st = sud;
    (void)h3;
    (void)id;
    (void)flags;
    (void)ud;
    if (!st)
        return 0;
    sl_req_t *req = &st->req;
    nghttp3_vec n = nghttp3_rcbuf_get_buf(name), v = nghttp3_rcbuf_get_buf(value);
    /* RFC 9114 4.2.2: the size the client was told it may send, counted
     * as RFC 9110 does; past it nothing more is stored (the request is
     * answered 431 when its fields end). */
    st->hdr_bytes += n.len + v.len + 32;
    if (st->hdr_bytes > st->hc->qcfg->header_list_bytes) {
        st->hdrs_too_big = 1;
        return 0;
    }
    if (n.len && n.base[0] == ':') {
        on_pseudo(req, token, value);
        return 0;
    }
    sl_str_t sn = rc_str(req, name), sv = rc_str(req, value);
    sl_headers_add_ref(&req->pool, &req->headers, sn, sv);
    if (token == NGHTTP3_QPACK_TOKEN_CONTENT_LENGTH)
        req->content_length = sl_str_to_u64(sv); /* nghttp3 validated it */
    else if (token == NGHTTP3_QPACK_TOKEN_COOKIE && st->ncookies < 3)
        st->ncookies++;
    return 0;
}

static int h_recv_trailer(nghttp3_conn *h3, int64_t id, int32_t token, nghttp3_rcbuf *name,
                          nghttp3_rcbuf *value, uint8_t flags, void *ud, void *sud)
{
    sl_h3_stream_t *st = sud;
    (void)h3;
    (void)id;
    (void)token;
    (void)flags;
    (void)ud;
    if (!st)
        return 0;
    nghttp3_vec n = nghttp3_rcbuf_get_buf(name), v = nghttp3_rcbuf_get_buf(value);
    st->hdr_bytes += n.len + v.len + 32;
    if (st->hdr_bytes <= st->hc->qcfg->header_list_bytes)
        sl_headers_add_ref(&st->req.pool, &st->req.trailers, rc_str(&st->req, name),
                           rc_str(&st->req, value));
    return 0;
}

static void answer_early(sl_h3_stream_t *st, int status, const char *msg)
{
    st->dispatched = 1;
    sl_resp_error(&st->req, status, msg);
}

static int h_end_headers(nghttp3_conn *h3, int64_t id, int fin, void *ud, void *sud)
{
    sl_h3_stream_t *st = sud;
    sl_h3_conn_t *hc = ud;
    (void)h3;
    if (!st)
        return 0;
    sl_req_t *req = &st->req;
    const sl_limits_t *lim = &sl_conn_config(hc->c)->limits;
    sl_fields_request_done(req, st->ncookies);
    if (fin)
        req->body_done = 1;
    if (st->hdrs_too_big) {
        sl_log_stream(SL_LOG_INFO, hc->c, (int32_t)id, "client sent a header list over %u bytes",
                      hc->qcfg->header_list_bytes);
        sl_metrics_abuse(SL_M_ABUSE_HEADERS);
        answer_early(st, 431, "request header fields too large");
        return 0;
    }
    if (sl_str_eq(req->method, "CONNECT")) {
        sl_log_stream(SL_LOG_INFO, hc->c, (int32_t)id, "client sent CONNECT over HTTP/3");
        sl_resp_header_add(req, "allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH");
        answer_early(st, 405, "CONNECT is not supported");
        return 0;
    }
    if (lim->max_body_bytes && req->content_length > lim->max_body_bytes) {
        sl_log_stream(SL_LOG_INFO, hc->c, (int32_t)id, "client sent content-length %lld over %lld",
                      (long long)req->content_length, (long long)lim->max_body_bytes);
        answer_early(st, 413, "request body too large");
        return 0;
    }
    st->dispatched = 1;
    sl_router_dispatch(sl_conn_config(hc->c), req);
    return 0;
}

static int h_recv_data(nghttp3_conn *h3, int64_t id, const uint8_t *data, size_t len, void *ud,
                       void *sud)
{
    sl_h3_stream_t *st = sud;
    sl_h3_conn_t *hc = ud;
    (void)h3;
    if (!st) {
        credit(hc, id, len);
        return 0;
    }
    sl_req_t *req = &st->req;
    int64_t max = sl_conn_config(hc->c)->limits.max_body_bytes;
    req->bytes_in += len;
    st->last_active = ev_now(hc->hw->w->loop);
    if (max && !st->app_reset && req->bytes_in > (uint64_t)max) {
        sl_log_stream(SL_LOG_INFO, hc->c, (int32_t)id, "client sent a request body over %lld bytes",
                      (long long)max);
        st->app_reset = 1;
        ngtcp2_conn_shutdown_stream(hc->qc, id, NGHTTP3_H3_REQUEST_CANCELLED);
        sl_h3_conn_want_write(hc);
    }
    if (st->dispatched && !st->app_reset && !st->discarding && !req->body_done && req->cbs &&
        req->cbs->on_body) {
        st->unconsumed += len;
        req->cbs->on_body(req, data, len, 0);
        return 0;
    }
    credit(hc, id, len); /* nobody wants it */
    return 0;
}

static int h_deferred_consume(nghttp3_conn *h3, int64_t id, size_t n, void *ud, void *sud)
{
    (void)h3;
    (void)sud;
    credit(ud, id, n);
    return 0;
}

static int h_end_stream(nghttp3_conn *h3, int64_t id, void *ud, void *sud)
{
    sl_h3_stream_t *st = sud;
    sl_req_t *req;
    (void)h3;
    (void)id;
    (void)ud;
    if (!st || (req = &st->req)->body_done)
        return 0;
    req->body_done = 1;
    if (st->dispatched && !st->app_reset && !st->discarding && req->cbs && req->cbs->on_body)
        req->cbs->on_body(req, NULL, 0, 1);
    return 0;
}

static int h_stream_close(nghttp3_conn *h3, int64_t id, uint64_t code, void *ud, void *sud)
{
    sl_h3_stream_t *st = sud;
    sl_h3_conn_t *hc = ud;
    (void)h3;
    if (ngtcp2_is_bidi_stream(id))
        ngtcp2_conn_extend_max_streams_bidi(hc->qc, 1);
    if (!st)
        return 0;
    /* Credit the handler never returned still holds connection window. */
    if (st->unconsumed)
        ngtcp2_conn_extend_max_offset(hc->qc, st->unconsumed);
    stream_close(st, code == NGHTTP3_H3_NO_ERROR ? 0 : SL_ECANCELED);
    return 0;
}

static int h_stop_sending(nghttp3_conn *h3, int64_t id, uint64_t code, void *ud, void *sud)
{
    sl_h3_conn_t *hc = ud;
    (void)h3;
    (void)sud;
    ngtcp2_conn_shutdown_stream_read(hc->qc, id, code);
    return 0;
}

static int h_reset_stream(nghttp3_conn *h3, int64_t id, uint64_t code, void *ud, void *sud)
{
    sl_h3_conn_t *hc = ud;
    (void)h3;
    (void)sud;
    ngtcp2_conn_shutdown_stream_write(hc->qc, id, code);
    return 0;
}

/* ---- response side ---- */

/* Copy what the handler's send still holds into the stream's queue; once
 * all of it is in, the handler may send again. */
static void copy_pending(sl_h3_stream_t *st)
{
    while (st->pend_len) {
        ssize_t n = sl_buf_write(&st->out, st->pend, st->pend_len);
        if (n <= 0)
            return; /* full: acknowledgements make room */
        st->pend += n;
        st->pend_len -= (size_t)n;
        st->req.bytes_out += (uint64_t)n;
    }
    if (st->pend_final)
        st->eof_queued = 1;
    else if (st->pend)
        queue_proceed(st);
    st->pend = NULL;
}

static int h_acked(nghttp3_conn *h3, int64_t id, uint64_t len, void *ud, void *sud)
{
    sl_h3_stream_t *st = sud;
    (void)h3;
    (void)id;
    (void)ud;
    if (!st)
        return 0;
    sl_buf_skip(&st->out, (size_t)len);
    st->out_given -= (size_t)len;
    st->last_active = ev_now(st->hc->hw->w->loop);
    if (st->pend_len)
        copy_pending(st);
    if (st->blocked && sl_buf_len(&st->out) > st->out_given) {
        st->blocked = 0;
        nghttp3_conn_resume_stream(h3, st->id);
    }
    return 0;
}

/* Vectors over the queued bytes nghttp3 has not been given yet. */
static size_t out_vecs(sl_h3_stream_t *st, nghttp3_vec *vec, size_t max)
{
    size_t skip = st->out_given, n = 0;
    for (sl_buf_chunk_t *ch = st->out.head; ch && n < max; ch = ch->next) {
        size_t avail = ch->w - ch->r;
        if (skip >= avail) {
            skip -= avail;
            continue;
        }
        vec[n].base = ch->data + ch->r + skip;
        vec[n].len = avail - skip;
        st->out_given += vec[n].len;
        skip = 0;
        n++;
    }
    return n;
}

static void submit_trailers(sl_h3_stream_t *st, uint32_t *flags);

static nghttp3_ssize read_body(nghttp3_conn *h3, int64_t id, nghttp3_vec *vec, size_t veccnt,
                               uint32_t *flags, void *ud, void *sud)
{
    sl_h3_stream_t *st = sud;
    (void)h3;
    (void)id;
    (void)ud;
    if (!st)
        return NGHTTP3_ERR_CALLBACK_FAILURE;
    size_t n = out_vecs(st, vec, veccnt);
    if (st->eof_queued && st->out_given == sl_buf_len(&st->out)) {
        *flags |= NGHTTP3_DATA_FLAG_EOF;
        if (st->req.res.trailers.n)
            submit_trailers(st, flags);
        return (nghttp3_ssize)n;
    }
    if (n == 0) {
        st->blocked = 1; /* op_send or an acknowledgement resumes us */
        return NGHTTP3_ERR_WOULDBLOCK;
    }
    return (nghttp3_ssize)n;
}

SL_NV_SAME_LAYOUT(nghttp3_nv);

/* Field arrays go to nghttp3 as fields.c wrote them (it copies what it
 * keeps). */
static nghttp3_nv *nva_of(sl_nv_t *f)
{
    return (nghttp3_nv *)(void *)f;
}

static void submit_trailers(sl_h3_stream_t *st, uint32_t *flags)
{
    sl_req_t *req = &st->req;
    sl_nv_t *f = sl_pool_alloc(&req->pool, (req->res.trailers.n + 1) * sizeof(*f));
    size_t n = sl_fields_trailers(req, f, NGHTTP3_NV_FLAG_NONE);
    if (n && nghttp3_conn_submit_trailers(st->hc->h3, st->id, nva_of(f), n) == 0)
        *flags |= NGHTTP3_DATA_FLAG_NO_END_STREAM;
}

static int submit_response(sl_h3_stream_t *st, int with_body)
{
    sl_req_t *req = &st->req;
    sl_h3_conn_t *hc = st->hc;
    static const nghttp3_data_reader dr = {.read_data = read_body};
    sl_nv_t *f = sl_pool_alloc(&req->pool, (req->res.headers.n + 4) * sizeof(*f));
    size_t n = sl_fields_response(req, ev_now(hc->hw->w->loop), f, NGHTTP3_NV_FLAG_NONE, st->status,
                                  st->clen);
    st->submitted = 1;
    req->head_sent = 1;
    int rv = nghttp3_conn_submit_response(hc->h3, st->id, nva_of(f), n, with_body ? &dr : NULL);
    if (rv != 0) {
        sl_log_stream(SL_LOG_ERROR, hc->c, (int32_t)st->id, "nghttp3_conn_submit_response: %s",
                      nghttp3_strerror(rv));
        return SL_ECLOSED;
    }
    return 0;
}

/* The response is complete but the request body is not: read and drop
 * the rest, credited at once (still bounded by max_body_bytes). */
static void discard_rest(sl_h3_stream_t *st)
{
    if (st->req.body_done || st->discarding)
        return;
    st->discarding = 1;
    credit(st->hc, st->id, st->unconsumed);
    st->unconsumed = 0;
}

static int op_send(sl_req_t *req, const uint8_t *data, size_t len, int final)
{
    sl_h3_stream_t *st = req->pdata;
    sl_h3_conn_t *hc = st->hc;
    if (st->closed || hc->dead || hc->closing)
        return SL_ECLOSED;
    if (!st->submitted) {
        int with_body = !req->is_head && !(final && len == 0 && req->res.trailers.n == 0);
        if (submit_response(st, with_body) != 0)
            return SL_ECLOSED;
        if (!with_body) {
            st->eof_queued = 1;
            if (!final)
                queue_proceed(st); /* HEAD: the handler's body is dropped */
            else
                discard_rest(st);
            sl_h3_conn_want_write(hc);
            return 0;
        }
    } else if (st->eof_queued) { /* after a bodiless head: dropped */
        if (!final)
            queue_proceed(st);
        return 0;
    }
    /* req.h: one send outstanding at a time, the next after on_proceed. */
    SL_ASSERT(st->pend_len == 0);
    st->pend = data ? data : (const uint8_t *)"";
    st->pend_len = len;
    st->pend_final = final ? 1 : 0;
    st->last_active = ev_now(hc->hw->w->loop);
    copy_pending(st);
    if (final)
        discard_rest(st);
    if (st->blocked) {
        st->blocked = 0;
        nghttp3_conn_resume_stream(hc->h3, st->id);
    }
    sl_h3_conn_want_write(hc);
    return 0;
}

static int op_informational(sl_req_t *req, int status, const sl_headers_t *hdrs)
{
    sl_h3_stream_t *st = req->pdata;
    sl_h3_conn_t *hc = st->hc;
    size_t cnt = hdrs ? hdrs->n : 0;
    char code[4];
    if (st->closed || hc->dead)
        return SL_ECLOSED;
    if (status == 101)
        return SL_EINVAL; /* no such thing in HTTP/3 */
    sl_nv_t *f = sl_pool_alloc(&req->pool, (cnt + 1) * sizeof(*f));
    size_t n = sl_fields_informational(req, status, hdrs, f, NGHTTP3_NV_FLAG_NONE, code);
    int rv = nghttp3_conn_submit_info(hc->h3, st->id, nva_of(f), n);
    sl_h3_conn_want_write(hc);
    return rv == 0 ? 0 : SL_ECLOSED;
}

static void op_reset(sl_req_t *req, uint32_t code)
{
    sl_h3_stream_t *st = req->pdata;
    sl_h3_conn_t *hc = st->hc;
    if (st->closed || hc->dead)
        return;
    st->app_reset = 1;
    /* RFC 9114 8.1: the HTTP/2 codes' HTTP/3 equivalents. */
    uint64_t h3 = code == SL_RESET_NO_ERROR            ? NGHTTP3_H3_NO_ERROR
                  : code == SL_RESET_REFUSED_STREAM    ? NGHTTP3_H3_REQUEST_REJECTED
                  : code == SL_RESET_CANCEL            ? NGHTTP3_H3_REQUEST_CANCELLED
                  : code == SL_RESET_ENHANCE_YOUR_CALM ? NGHTTP3_H3_EXCESSIVE_LOAD
                  : code == SL_RESET_PROTOCOL_ERROR    ? NGHTTP3_H3_GENERAL_PROTOCOL_ERROR
                                                       : NGHTTP3_H3_INTERNAL_ERROR;
    ngtcp2_conn_shutdown_stream(hc->qc, st->id, h3);
    sl_h3_conn_want_write(hc);
}

static void op_consume(sl_req_t *req, size_t n)
{
    sl_h3_stream_t *st = req->pdata;
    if (st->closed || st->hc->dead)
        return;
    n = SL_MIN(n, st->unconsumed);
    st->unconsumed -= n;
    credit(st->hc, st->id, n);
}

static const sl_req_ops_t h3_ops = {
    .send = op_send,
    .informational = op_informational,
    .reset = op_reset,
    .consume = op_consume,
};

/* ---- the HTTP/3 connection ---- */

double sl_h3_streams_sweep(sl_h3_conn_t *hc, double now)
{
    double idle = sl_conn_config(hc->c)->timeouts.stream_idle_s;
    if (idle <= 0 || !hc->streams)
        return 0;
    for (sl_h3_stream_t *st = hc->streams; st; st = st->next) {
        if (st->app_reset || now - st->last_active < idle)
            continue;
        sl_log_stream(SL_LOG_INFO, hc->c, (int32_t)st->id, "stream idle for %.0f s, resetting",
                      idle);
        st->app_reset = 1;
        ngtcp2_conn_shutdown_stream(hc->qc, st->id, NGHTTP3_H3_REQUEST_CANCELLED);
        sl_h3_conn_want_write(hc);
    }
    /* A stream is reset between idle and 1.25 idle after its last byte. */
    return now + SL_MAX(0.25, idle / 4);
}

/* RFC 9114 5.2: a GOAWAY that still lets in what the client may have sent
 * already, and after SL_H3_GOAWAY_GRACE_S the final one; the connection
 * closes once its last stream is done. */
#define SL_H3_GOAWAY_GRACE_S 1.0

void sl_h3_http_goaway(sl_h3_conn_t *hc)
{
    if (hc->goaway || !hc->h3)
        return;
    hc->goaway = 1;
    hc->goaway_at = ev_now(hc->hw->w->loop) + SL_H3_GOAWAY_GRACE_S;
    nghttp3_conn_submit_shutdown_notice(hc->h3);
    sl_h3_conn_want_write(hc);
}

int sl_h3_http_goaway_step(sl_h3_conn_t *hc)
{
    if (hc->goaway == 1 && ev_now(hc->hw->w->loop) >= hc->goaway_at) {
        hc->goaway = 2;
        nghttp3_conn_shutdown(hc->h3);
    }
    return hc->goaway == 2 && hc->nstreams == 0;
}

static const nghttp3_callbacks h3_callbacks = {
    .acked_stream_data = h_acked,
    .stream_close = h_stream_close,
    .recv_data = h_recv_data,
    .deferred_consume = h_deferred_consume,
    .begin_headers = h_begin_headers,
    .recv_header = h_recv_header,
    .end_headers = h_end_headers,
    .recv_trailer = h_recv_trailer,
    .stop_sending = h_stop_sending,
    .end_stream = h_end_stream,
    .reset_stream = h_reset_stream,
};

int sl_h3_http_start(sl_h3_conn_t *hc)
{
    const sl_h3_cfg_t *q = hc->qcfg;
    nghttp3_settings s;
    int64_t ctrl, enc, dec;
    if (hc->h3)
        return 0;
    if (ngtcp2_conn_get_max_local_streams_uni(hc->qc) < 3)
        return SL_ERROR;
    nghttp3_settings_default(&s);
    s.max_field_section_size = q->header_list_bytes;
    s.qpack_max_dtable_capacity = q->qpack_table_bytes;
    s.qpack_blocked_streams = q->qpack_blocked;
    static const nghttp3_mem mem = {NULL, sl_slab_mem_malloc, sl_slab_mem_free,
                                    sl_slab_mem_calloc, sl_slab_mem_realloc};
    if (nghttp3_conn_server_new(&hc->h3, &h3_callbacks, &s, &mem, hc) != 0)
        return SL_ERROR;
    nghttp3_conn_set_max_client_streams_bidi(hc->h3, q->max_streams);
    if (ngtcp2_conn_open_uni_stream(hc->qc, &ctrl, NULL) != 0 ||
        nghttp3_conn_bind_control_stream(hc->h3, ctrl) != 0 ||
        ngtcp2_conn_open_uni_stream(hc->qc, &enc, NULL) != 0 ||
        ngtcp2_conn_open_uni_stream(hc->qc, &dec, NULL) != 0 ||
        nghttp3_conn_bind_qpack_streams(hc->h3, enc, dec) != 0)
        return SL_ERROR;
    if (hc->c->retired || sl_conn_is_draining(hc->c))
        sl_h3_http_goaway(hc);
    return 0;
}
