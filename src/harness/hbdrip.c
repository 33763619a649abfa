/* sluice - SPDX-License-Identifier: MIT
 *
 * httpbin's drip?numbytes=N&duration=S&delay=S&code=C: after delay
 * seconds, N bytes of '*' spread evenly over duration seconds (in at most
 * 1000 pieces), with Content-Length N and status C. Times are bounded by
 * the route's max_delay_ms, sizes by max_bytes; a client that leaves
 * stops the timers (the pump's on_close, or ours before it starts).
 */
#include "harness_int.h"
#include "../worker.h"
#include <math.h>
#include <stdlib.h>

#define MAX_PIECES 1000

typedef struct drip {
    sl_harness_pump_t *p;
    struct ev_loop *loop;
    ev_timer delay;
} drip_t;

static size_t fill_stars(sl_harness_pump_t *p, uint8_t *buf, size_t cap, int *last)
{
    uint64_t left = p->total - p->offset;
    size_t n = (size_t)SL_MIN((uint64_t)SL_MIN(cap, p->piece), left);
    memset(buf, '*', n);
    p->offset += n;
    *last = p->offset == p->total;
    return n;
}

static void on_delay(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    drip_t *d = t->data;
    sl_harness_pump_start(d->p);
}

static void on_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    drip_t *d = req->hdata;
    ev_timer_stop(d->loop, &d->delay);
}

static const sl_handler_cbs_t wait_cbs = {.on_body = sl_req_discard_body, .on_close = on_close};

/* Seconds in [0, max_ms / 1000] from a decimal query value; -1 when bad. */
static double seconds(const sl_query_t *q, const char *name, double def, int64_t max_ms)
{
    const sl_str_t *v = sl_query_find(q, name);
    if (!v)
        return def;
    char buf[32];
    if (!v->n || v->n >= sizeof(buf))
        return -1;
    memcpy(buf, v->p, v->n);
    buf[v->n] = 0;
    char *end;
    double s = strtod(buf, &end);
    return *end || !isfinite(s) || s < 0 || s * 1000 > (double)max_ms ? -1 : s;
}

void sl_harness_hb_drip(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    const sl_harness_opts_t *o = cx->opts;
    uint64_t n, code;
    int rv = sl_query_find_u64(&cx->q, "numbytes", 10, 1, (uint64_t)o->max_bytes, &n);
    if (rv != 0) {
        sl_harness_bad_param(req, "numbytes", rv, 1, (uint64_t)o->max_bytes);
        return;
    }
    if ((rv = sl_query_find_u64(&cx->q, "code", 200, 200, 599, &code)) != 0) {
        sl_harness_bad_param(req, "code", rv, 200, 599);
        return;
    }
    double duration = seconds(&cx->q, "duration", 2, o->max_delay_ms);
    double delay = seconds(&cx->q, "delay", 0, o->max_delay_ms);
    if (duration < 0 || delay < 0) {
        sl_harness_bad_request(req, "duration and delay: seconds within max_delay_ms");
        return;
    }
    uint64_t pieces = SL_MIN(n, (uint64_t)MAX_PIECES);
    req->res.status = (int)code;
    req->res.content_length = (int64_t)n;
    sl_resp_header_add(req, "content-type", "application/octet-stream");
    sl_harness_pump_t *p =
        sl_harness_pump_new(req, (size_t)((n + pieces - 1) / pieces), fill_stars);
    p->total = n;
    p->piece = (size_t)((n + pieces - 1) / pieces);
    p->interval_s = pieces > 1 ? duration / (double)(pieces - 1) : 0;
    if (delay <= 0) {
        sl_harness_pump_start(p);
        return;
    }
    sl_worker_t *w = sl_worker_current();
    drip_t *d = sl_pool_alloc(&req->pool, sizeof(*d));
    d->p = p;
    d->loop = w->loop;
    ev_timer_init(&d->delay, on_delay, delay, 0.);
    d->delay.data = d;
    ev_timer_start(d->loop, &d->delay);
    req->hdata = d;
    req->cbs = &wait_cbs;
}
