/* sluice - SPDX-License-Identifier: MIT
 *
 * The HTTP/1.1 faults of fault/NAME: responses a correct server never
 * sends, written as raw bytes (sl_fault_t RAW), after which the
 * connection closes. They test a client's framing and its smuggling
 * defences:
 *
 *   h1-close-mid-headers    part of a head, then FIN
 *   h1-close-mid-body       Content-Length: 100 and 50 bytes, then FIN
 *   h1-close-mid-chunked    one chunk, no last chunk, then FIN
 *   h1-bad-chunk-size       a chunk size that is not hex
 *   h1-trailing-garbage     a whole response, then bytes that are not one
 *   h1-cl-and-chunked       Content-Length and Transfer-Encoding: chunked
 *                           (only where the route says "fault_smuggling")
 *   h1-slow-headers         a whole response, one byte every interval_ms
 */
#include "harness_int.h"
#include "../worker.h"

static const char *const raw[] = {
    "HTTP/1.1 200 OK\r\nContent-Type: text/pl",
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"
    "0123456789012345678901234567890123456789012345678\n",
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    "a\r\n0123456789\r\n",
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    "zz\r\nhello\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n"
    "GARBAGE AFTER THE RESPONSE\r\n",
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
    "Transfer-Encoding: chunked\r\n\r\n6\r\nhello\n\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n"
    "Connection: close\r\n\r\nhello\n",
};

typedef struct slow {
    sl_req_t *req;
    struct ev_loop *loop;
    ev_timer timer;
    const char *p;
    size_t left;
} slow_t;

static void write_raw(sl_req_t *req, const char *p, size_t n)
{
    sl_fault_t f = {.kind = SL_FAULT_RAW, .data = p, .len = n};
    sl_resp_fault(req, &f);
}

static void slow_step(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    slow_t *s = t->data;
    write_raw(s->req, s->p++, 1);
    if (--s->left == 0) {
        ev_timer_stop(s->loop, &s->timer);
        sl_resp_reset(s->req, SL_RESET_NO_ERROR); /* out, then closed */
    }
}

static void slow_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    slow_t *s = req->hdata;
    ev_timer_stop(s->loop, &s->timer);
}

static const sl_handler_cbs_t slow_cbs = {.on_body = sl_req_discard_body, .on_close = slow_close};

static void slow_headers(sl_harness_ctx_t *cx, const char *p)
{
    sl_req_t *req = cx->req;
    size_t n = strlen(p);
    uint64_t max = (uint64_t)cx->opts->max_delay_ms / n, ms;
    int rv = sl_query_find_u64(&cx->q, "interval_ms", SL_MIN(50, max), 1, SL_MAX(max, 1), &ms);
    if (rv != 0) {
        sl_harness_bad_param(req, "interval_ms", rv, 1, SL_MAX(max, 1));
        return;
    }
    slow_t *s = sl_pool_alloc(&req->pool, sizeof(*s));
    s->req = req;
    s->loop = sl_worker_current()->loop;
    s->p = p;
    s->left = n;
    ev_timer_init(&s->timer, slow_step, 0., (double)ms / 1000.0);
    s->timer.data = s;
    ev_timer_start(s->loop, &s->timer);
    req->hdata = s;
    req->cbs = &slow_cbs;
}

void sl_harness_fault_h1(sl_harness_ctx_t *cx, int kind)
{
    sl_req_t *req = cx->req;
    int i = kind - SL_HARNESS_FAULT_H1_FIRST;
    if (req->proto != SL_PROTO_H1) {
        sl_harness_bad_request(req, "this fault needs HTTP/1.1");
        return;
    }
    if (kind == SL_HARNESS_FAULT_H1_SMUGGLING && !cx->opts->fault_smuggling) {
        req->cbs = &sl_req_discard_cbs;
        sl_resp_error(req, 404, "h1-cl-and-chunked is off on this route (\"fault_smuggling\")");
        return;
    }
    sl_harness_fault_note(req, kind);
    if (kind == SL_HARNESS_FAULT_H1_SLOW) {
        slow_headers(cx, raw[i]);
        return;
    }
    req->cbs = &sl_req_discard_cbs;
    write_raw(req, raw[i], strlen(raw[i]));
    sl_resp_reset(req, SL_RESET_NO_ERROR); /* the bytes leave, then the connection closes */
}
