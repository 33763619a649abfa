/* sluice - SPDX-License-Identifier: MIT
 *
 * delay/MS: answers 200 {"delay_ms":MS} after MS milliseconds, measured
 * with a timer on the worker loop (the worker keeps serving meanwhile).
 * A client that leaves early stops the timer through on_close.
 */
#include "harness_int.h"
#include "../worker.h"
#include <stdio.h>

typedef struct delay {
    sl_req_t *req;
    struct ev_loop *loop;
    ev_timer timer;
    uint64_t ms;
} delay_t;

static void answer(sl_req_t *req, uint64_t ms)
{
    char body[48];
    int n = snprintf(body, sizeof(body), "{\"delay_ms\":%llu}\n", (unsigned long long)ms);
    sl_resp_simple(req, 200, "application/json", body, (size_t)n);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    delay_t *d = w->data;
    answer(d->req, d->ms);
}

static void on_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    delay_t *d = req->hdata;
    ev_timer_stop(d->loop, &d->timer); /* no-op once it has fired */
}

static const sl_handler_cbs_t delay_cbs = {.on_body = sl_req_discard_body, .on_close = on_close};

void sl_harness_delay(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    uint64_t max = (uint64_t)cx->opts->max_delay_ms, ms;
    int rv = sl_str_parse_u64(cx->arg, 0, max, &ms);
    if (rv != 0) {
        sl_harness_bad_param(req, "MS", rv, 0, max);
        return;
    }
    if (ms == 0) {
        req->cbs = &sl_req_discard_cbs;
        answer(req, 0);
        return;
    }
    sl_worker_t *w = sl_worker_current();
    SL_ASSERT(w != NULL);
    delay_t *d = sl_pool_alloc(&req->pool, sizeof(*d));
    d->req = req;
    d->loop = w->loop;
    d->ms = ms;
    ev_timer_init(&d->timer, on_timer, (double)ms / 1000.0, 0.);
    d->timer.data = d;
    req->cbs = &delay_cbs;
    req->hdata = d;
    ev_timer_start(d->loop, &d->timer);
}
