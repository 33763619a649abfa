/* sluice - SPDX-License-Identifier: MIT
 *
 * echo: the request body streamed back as it arrives. The response head
 * goes out at once, so on HTTP/2 the exchange is full duplex. Received
 * bytes wait in a bounded sl_buf; credit (sl_req_consume) is given back
 * only when the protocol has taken them for the response (on_proceed), so
 * a client that does not read its response stops being able to send: flow
 * control carries the backpressure end to end. The buffer bound is the
 * protocol's own bound on unconsumed body bytes, so it can never overflow.
 */
#include "harness_int.h"
#include "../buf.h"
#include "../config.h"
#include "../conn.h"
#include "../log.h"
#include "../worker.h"

typedef struct echo {
    sl_req_t *req;
    sl_buf_t buf;
    size_t inflight; /* bytes handed to sl_resp_send, not yet taken */
    unsigned waiting : 1;
    unsigned in_send : 1;
    unsigned body_done : 1;
    unsigned failed : 1;
} echo_t;

/* Send what is buffered, one contiguous run at a time. As in pump.c,
 * nothing is touched after a final send or a reset. */
static void flush(echo_t *e)
{
    while (!e->waiting) {
        const uint8_t *p = NULL;
        size_t n = 0;
        if (sl_buf_peek(&e->buf, &p, &n) != 0 && !e->body_done)
            return; /* nothing to send yet */
        int final = e->body_done && n == sl_buf_len(&e->buf);
        if (final && n)
            sl_req_consume(e->req, n); /* the last credit; nothing follows */
        e->inflight = final ? 0 : n;
        e->waiting = 1;
        e->in_send = 1;
        if (sl_resp_send(e->req, p, n, final) != 0 || final)
            return;
        e->in_send = 0;
    }
}

static void on_proceed(sl_req_t *req)
{
    echo_t *e = req->hdata;
    e->waiting = 0;
    if (e->inflight) {
        sl_buf_skip(&e->buf, e->inflight);
        sl_req_consume(req, e->inflight);
        e->inflight = 0;
    }
    if (!e->in_send)
        flush(e);
}

static void on_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    echo_t *e = req->hdata;
    if (e->failed || (e->body_done && len == 0))
        return;
    if (len && sl_buf_write_all(&e->buf, data, len) != 0) {
        /* The protocol delivered more than its own window: a bug, not the
         * client's fault. Abort this stream only. */
        sl_log_stream(SL_LOG_ERROR, req->conn, req->stream_id,
                      "echo: %zu body bytes past the buffer bound", len);
        e->failed = 1;
        sl_resp_reset(req, SL_RESET_INTERNAL_ERROR);
        return;
    }
    if (fin)
        e->body_done = 1;
    if (!e->in_send)
        flush(e);
}

static void on_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    echo_t *e = req->hdata;
    sl_buf_dispose(&e->buf);
}

static const sl_handler_cbs_t echo_cbs = {
    .on_body = on_body,
    .on_proceed = on_proceed,
    .on_close = on_close,
};

/* Unconsumed body bytes the protocol allows, in chunks, plus slack for a
 * read that straddles the bound. */
static size_t buffer_chunks(const sl_req_t *req)
{
    return sl_req_body_chunks(req);
}

void sl_harness_echo(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    sl_worker_t *w = sl_worker_current();
    SL_ASSERT(w != NULL);
    echo_t *e = sl_pool_alloc(&req->pool, sizeof(*e));
    memset(e, 0, sizeof(*e));
    e->req = req;
    sl_buf_init(&e->buf, &w->bufpool, buffer_chunks(req));
    e->body_done = req->body_done;
    const sl_header_t *ct = sl_req_header(req, "content-type");
    req->res.status = 200;
    req->res.content_length = req->content_length;
    if (ct)
        sl_resp_header_addn(req, "content-type", 12, ct->value.p, ct->value.n);
    else
        sl_resp_header_add(req, "content-type", "application/octet-stream");
    req->cbs = &echo_cbs;
    req->hdata = e;
    /* Head first (an empty, non-final send), then data as it comes. */
    e->waiting = 1;
    e->in_send = 1;
    if (e->body_done) {
        sl_resp_send(req, NULL, 0, 1);
        return;
    }
    if (sl_resp_send(req, NULL, 0, 0) != 0)
        return;
    e->in_send = 0;
    if (!e->waiting)
        flush(e);
}
