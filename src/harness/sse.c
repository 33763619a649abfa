/* sluice - SPDX-License-Identifier: MIT
 *
 * sse?n=N&interval_ms=I: a text/event-stream of N "tick" events with ids
 * 1..N, I ms apart, resuming after Last-Event-ID when the client sends
 * one. With no interval, events are batched into 16 KiB pieces.
 */
#include "harness_int.h"
#include <stdio.h>

#define DEFAULT_EVENTS 10
#define BATCH 16384
#define EVENT_MAX 96 /* "id: k\nevent: tick\ndata: {\"n\":k}\n\n" with 20-digit k */

static size_t fill_events(sl_harness_pump_t *p, uint8_t *buf, size_t cap, int *last)
{
    size_t n = 0;
    /* One event per piece when paced, else as many as fit. */
    while (p->next <= p->end && cap - n >= EVENT_MAX) {
        unsigned long long k = (unsigned long long)p->next++;
        n += (size_t)snprintf((char *)buf + n, cap - n,
                              "id: %llu\nevent: tick\ndata: {\"n\":%llu}\n\n", k, k);
        if (p->interval_s > 0)
            break;
    }
    *last = p->next > p->end;
    return n;
}

static int last_event_id(sl_harness_ctx_t *cx, uint64_t *from)
{
    const sl_header_t *h = sl_req_header(cx->req, "last-event-id");
    *from = 0;
    if (!h)
        return 0;
    if (sl_str_parse_u64(h->value, 0, UINT64_MAX - 1, from) != 0) {
        sl_harness_bad_request(cx->req, "last-event-id: not an event id of this stream");
        return SL_EINVAL;
    }
    return 0;
}

void sl_harness_sse(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    const sl_harness_opts_t *o = cx->opts;
    uint64_t n, interval, from;
    uint64_t max_n = (uint64_t)o->max_sse_events;
    int rv = sl_query_find_u64(&cx->q, "n", SL_MIN(DEFAULT_EVENTS, max_n), 0, max_n, &n);
    if (rv != 0) {
        sl_harness_bad_param(req, "n", rv, 0, max_n);
        return;
    }
    rv = sl_query_find_u64(&cx->q, "interval_ms", 0, 0, (uint64_t)o->max_interval_ms, &interval);
    if (rv != 0) {
        sl_harness_bad_param(req, "interval_ms", rv, 0, (uint64_t)o->max_interval_ms);
        return;
    }
    if (last_event_id(cx, &from) != 0)
        return;
    req->res.status = 200;
    req->res.content_length = -1;
    sl_resp_header_add(req, "content-type", "text/event-stream");
    sl_resp_header_add(req, "cache-control", "no-cache");
    sl_harness_pump_t *p = sl_harness_pump_new(req, interval ? EVENT_MAX : BATCH, fill_events);
    p->next = from + 1;
    p->end = n;
    p->interval_s = (double)interval / 1000.0;
    sl_harness_pump_start(p);
}
