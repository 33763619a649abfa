/* sluice - SPDX-License-Identifier: MIT
 *
 * The HTTP/1.1 request body: Content-Length, chunked (decoded in place,
 * the newest run held back so the last one carries fin) or raw after a
 * 101. Credit bounds what the handler holds: at most
 * limits.body_window_bytes unconsumed bytes are handed over, the rest
 * waits in the conn's input buffer with reads stopped until
 * sl_req_consume gives credit back. After the response, the rest of a
 * body is read and dropped within a budget (H1_DISCARD).
 */
#include "server_int.h"
#include "../log.h"

/* A raw (upgraded) stream has no body timeout: the handler keeps its own. */
double sl_h1_body_timeout(const h1_conn_t *hc)
{
    return hc->body == BODY_RAW ? 0 : hc->cfg->timeouts.request_body_s;
}

static int deliver(h1_conn_t *hc, const uint8_t *p, size_t n, int fin)
{
    if (hc->state == H1_DISCARD) {
        if (n > hc->discard_left) {
            hc->discard_over = 1;
            return SL_ECLOSED;
        }
        hc->discard_left -= n;
        return 0;
    }
    h1_exch_t *x = &hc->x;
    sl_req_t *req = &x->req;
    if (n)
        x->got_body = 1;
    if (fin)
        req->body_done = 1;
    req->bytes_in += n;
    if (x->closed || hc->reset_pending || !req->cbs || !req->cbs->on_body)
        return 0; /* nobody wants it: dropped, still read */
    x->delivered += n;
    req->cbs->on_body(req, p, n, fin);
    return 0;
}

/* How many more body bytes the handler may be given: limits.
 * body_window_bytes minus what it has not consumed yet. Bytes nobody reads
 * need no credit. */
static size_t body_credit(const h1_conn_t *hc)
{
    const h1_exch_t *x = &hc->x;
    const sl_req_t *req = &x->req;
    if (hc->state != H1_ACTIVE || x->closed || hc->reset_pending || !req->cbs || !req->cbs->on_body)
        return SIZE_MAX;
    uint64_t out = x->delivered - x->consumed, w = hc->cfg->limits.body_window_bytes;
    return out >= w ? 0 : (size_t)(w - out);
}

static void on_chunk_run(void *arg, const uint8_t *p, size_t n)
{
    h1_conn_t *hc = arg;
    int64_t max = hc->cfg->limits.max_body_bytes;
    if (hc->too_big || hc->discard_over)
        return;
    if (max > 0 && hc->state == H1_ACTIVE && hc->body_seen + n > (uint64_t)max) {
        hc->too_big = 1;
        return;
    }
    hc->body_seen += n;
    /* Hold the newest run back so the last one can carry fin. */
    if (hc->run_n && deliver(hc, hc->run_p, hc->run_n, 0) != 0)
        return;
    hc->run_p = p;
    hc->run_n = n;
}

/* Timers and state after body bytes went in. Returns 0 or SL_ECLOSED. */
static int after_body(h1_conn_t *hc)
{
    if (hc->state == H1_DISCARD) {
        if (hc->body == BODY_NONE)
            sl_h1_next_request(hc);
        else
            sl_h1_set_timer(hc, hc->cfg->timeouts.request_body_s);
        return 0;
    }
    if (hc->body == BODY_NONE) {
        hc->paused_body = 0;
        sl_h1_set_timer(hc, hc->cfg->timeouts.stream_idle_s);
        sl_h1_update_read(hc);
    } else if (!hc->paused_body) {
        sl_h1_set_timer(hc, sl_h1_body_timeout(hc));
    }
    return sl_h1_after_handler(hc);
}

/* Body bytes from p; returns how many were taken (0: no credit, the rest
 * waits in `in` with reads stopped), or SL_ECLOSED. At most the credit is
 * fed, framing included, so the handler never holds more than the window. */
ssize_t sl_h1_feed_body(h1_conn_t *hc, const uint8_t *p, size_t len)
{
    size_t n, credit = body_credit(hc);
    int r = 0;
    if (credit == 0) {
        hc->paused_body = 1; /* op_consume lifts it */
        /* A stall now is the handler's: only the idle bound applies. */
        sl_h1_set_timer(hc, hc->cfg->timeouts.stream_idle_s);
        return 0;
    }
    len = SL_MIN(len, credit);
    if (hc->body == BODY_RAW) {
        n = len;
        r = deliver(hc, p, n, 0);
    } else if (hc->body == BODY_LENGTH) {
        n = (size_t)SL_MIN((uint64_t)len, hc->body_left);
        hc->body_left -= n;
        hc->body_seen += n;
        int fin = hc->body_left == 0;
        if (fin)
            hc->body = BODY_NONE;
        r = deliver(hc, p, n, fin);
    } else {
        hc->run_p = NULL;
        hc->run_n = 0;
        ssize_t k = sl_h1_chunked_decode(&hc->chunk, p, len, on_chunk_run, hc);
        if (hc->discard_over)
            return SL_ECLOSED;
        if (k < 0 || hc->too_big) {
            int status = hc->too_big ? 413 : 400;
            sl_log(SL_LOG_INFO, hc->c, "client sent %s; answered %d",
                   hc->too_big       ? "a chunked body larger than limits.max_body_bytes"
                   : k == SL_ETOOBIG ? "chunk extensions or trailers over the limit"
                                     : "a malformed chunked body",
                   status);
            return hc->state == H1_ACTIVE ? sl_h1_fail_exchange(hc, status) : SL_ECLOSED;
        }
        n = (size_t)k;
        int fin = hc->chunk.done;
        if (fin)
            hc->body = BODY_NONE;
        if (hc->run_n || fin)
            r = deliver(hc, hc->run_p, hc->run_n, fin);
    }
    if (r != 0)
        return r;
    r = after_body(hc);
    return r != 0 ? r : (ssize_t)n;
}

void sl_h1_op_consume(sl_req_t *req, size_t n)
{
    h1_exch_t *x = req->pdata;
    h1_conn_t *hc = x->hc;
    x->consumed += n;
    if (!hc->paused_body || x->delivered - x->consumed >= hc->cfg->limits.body_window_bytes)
        return;
    hc->paused_body = 0;
    if (hc->in_len) {
        /* Held bytes are delivered from on_writable, not inside this call. */
        hc->kick = 1;
        sl_conn_flush_soon(hc->c);
        return;
    }
    sl_h1_update_read(hc);
    if (hc->body != BODY_NONE)
        sl_h1_set_timer(hc, sl_h1_body_timeout(hc));
}
