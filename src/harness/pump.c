/* sluice - SPDX-License-Identifier: MIT
 *
 * The pump: a paced producer of response body pieces shared by bytes,
 * stream, reset and sse. It follows the sl_resp pull contract (req.h): fill
 * one piece into its buffer, send it, and wait for on_proceed before
 * touching the buffer again; with an interval it waits that long (a timer
 * on the worker loop) between pieces. After the last piece it either ends
 * the response or, for reset, aborts the stream with an HTTP/2 error code.
 * Everything lives in the request pool; on_close only stops the timer.
 */
#include "harness_int.h"
#include "../worker.h"

static void pump_run(sl_harness_pump_t *p);

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    sl_harness_pump_t *p = w->data;
    p->timer_on = 0;
    p->paced = 1;
    pump_run(p);
}

static void on_proceed(sl_req_t *req)
{
    sl_harness_pump_t *p = req->hdata;
    p->waiting = 0;
    /* Taken synchronously inside sl_resp_send: pump_run's loop goes on. */
    if (!p->in_send)
        pump_run(p);
}

static void on_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    sl_harness_pump_t *p = req->hdata;
    if (p->timer_on) {
        ev_timer_stop(p->loop, &p->timer);
        p->timer_on = 0;
    }
}

static const sl_handler_cbs_t pump_cbs = {
    .on_body = sl_req_discard_body,
    .on_proceed = on_proceed,
    .on_close = on_close,
};

static void arm_timer(sl_harness_pump_t *p)
{
    ev_timer_set(&p->timer, p->interval_s, 0.);
    ev_timer_start(p->loop, &p->timer);
    p->timer_on = 1;
}

/* Runs until a send is outstanding, a timer is armed or the response is
 * over. After a final send or a reset the req may be gone (on_close can run
 * inside either call), so nothing is touched after them. */
static void pump_run(sl_harness_pump_t *p)
{
    for (;;) {
        if (p->end_next) {
            sl_resp_reset(p->req, (uint32_t)p->reset_code);
            return;
        }
        if (p->pieces > 0 && p->interval_s > 0 && !p->paced) {
            arm_timer(p);
            return;
        }
        p->paced = 0;
        int last = 0;
        size_t n = p->fill(p, p->buf, p->cap, &last);
        int final = last && p->reset_code < 0;
        p->end_next = last && !final;
        p->pieces++;
        p->waiting = 1;
        p->in_send = 1;
        if (sl_resp_send(p->req, p->buf, n, final) != 0 || final)
            return;
        p->in_send = 0;
        if (p->waiting)
            return; /* on_proceed calls us again */
    }
}

sl_harness_pump_t *sl_harness_pump_new(sl_req_t *req, size_t cap, sl_harness_fill_fn fill)
{
    sl_harness_pump_t *p = sl_pool_alloc(&req->pool, sizeof(*p));
    memset(p, 0, sizeof(*p));
    p->req = req;
    p->fill = fill;
    p->cap = cap;
    p->buf = sl_pool_alloc(&req->pool, cap ? cap : 1);
    p->reset_code = -1;
    return p;
}

void sl_harness_pump_start(sl_harness_pump_t *p)
{
    sl_worker_t *w = sl_worker_current();
    SL_ASSERT(w != NULL); /* handlers run on a worker loop */
    p->loop = w->loop;
    ev_init(&p->timer, on_timer);
    p->timer.data = p;
    p->req->cbs = &pump_cbs;
    p->req->hdata = p;
    /* HEAD: the head says it all; do not generate a body to drop. */
    if (p->req->is_head) {
        sl_resp_send(p->req, NULL, 0, 1);
        return;
    }
    pump_run(p);
}
