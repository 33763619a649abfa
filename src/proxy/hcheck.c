/* sluice - SPDX-License-Identifier: MIT
 *
 * Active health checks: "GET <path>" to every server of an upstream each
 * interval_s, on a fresh connection (HTTP/1.1 with "connection: close",
 * or for h2c / h2 / auto groups one HTTP/2 stream: probe.c); a server
 * whose answer is not the expected status within timeout_s (refused,
 * reset, timeout, other status) is marked down (hc_down) and skipped by
 * balance.c until a later check passes. Each check is an exchange of the
 * upstream client (client.c) pinned to its server: TLS, the reader and
 * the connect code are the proxy's own.
 *
 * One checker per worker, on that worker's loop, over that worker's
 * px_wstate_t: no locks and no shared state, at the price of N workers
 * sending N checks per interval (as each worker also learns passive
 * failures on its own). A worker starts checking an upstream when it
 * first proxies to it (px_wstate_get): its requests are the only readers
 * of the result. Only the final status counts (1xx are skipped); the body
 * is not awaited.
 */
#include "proxy_int.h"
#include "proxy.h"
#include "../log.h"
#include <stdio.h>

typedef struct px_hcheck {
    px_wstate_t *ws;
    int idx;
    int status; /* 0 until the head came */
    sl_proxy_client_t *cl; /* HTTP/1.1 groups */
    px_probe_t *probe;     /* HTTP/2 groups */
} px_hcheck_t;

static char *hc_head(void *arg, const char *host, size_t *len)
{
    px_hcheck_t *h = arg;
    return sl_strdup_printf(len,
                            "GET %s HTTP/1.1\r\nhost: %s\r\nuser-agent: sluice-health-check\r\n"
                            "connection: close\r\n\r\n",
                            h->ws->up->health.path, host);
}

static int hc_on_head(void *arg, int status, const sl_header_t *f, size_t n)
{
    SL_UNUSED(f);
    SL_UNUSED(n);
    ((px_hcheck_t *)arg)->status = status;
    return 1; /* the status is the verdict */
}

/* One check is over: record it, log a change of state. */
static void hc_on_done(void *arg, const char *error)
{
    px_hcheck_t *h = arg;
    px_wstate_t *ws = h->ws;
    px_srvstate_t *s = &ws->srv[h->idx];
    const char *name = ws->up->servers[h->idx].name;
    char cause[64];
    int ok = !error && h->status == ws->up->health.expect;
    if (!error) {
        snprintf(cause, sizeof(cause), "status %d, expected %d", h->status, ws->up->health.expect);
        error = cause;
    }
    if (ok && s->hc_down) {
        sl_log(SL_LOG_WARN, NULL, "proxy: upstream \"%s\" server %s: health check passed; up",
               ws->up->name, name);
        s->down_until = 0; /* a passing check also ends a passive back-off */
        s->fails = 0;
    } else if (!ok && !s->hc_down) {
        sl_log(SL_LOG_WARN, NULL,
               "proxy: upstream \"%s\" server %s: health check failed (%s); "
               "marked down until a check passes",
               ws->up->name, name, error);
    }
    s->hc_down = !ok;
    px_srv_publish(ws, h->idx);
    s->hc = NULL;
    sl_free(h); /* the client or probe frees itself after this call */
}

static void hc_probe_done(void *arg, int status, const char *error)
{
    ((px_hcheck_t *)arg)->status = status;
    hc_on_done(arg, error);
}

static const sl_proxy_client_cbs_t hc_cbs = {
    .head = hc_head,
    .on_head = hc_on_head,
    .on_done = hc_on_done,
};

static void hc_begin(px_wstate_t *ws, int idx)
{
    px_hcheck_t *h = sl_calloc(1, sizeof(*h));
    h->ws = ws;
    h->idx = idx;
    ws->srv[idx].hc = h;
    if (ws->up->proto != PX_PROTO_H1) {
        px_probe_t *p = px_probe_start(ws, idx, hc_probe_done, h);
        if (p) /* else done already ran and freed h */
            h->probe = p;
        return;
    }
    h->cl =
        px_client_start(ws, idx, ws->up->health.timeout_s, NULL, 0, "health check: ", &hc_cbs, h);
    sl_proxy_client_end(h->cl);
}

static void on_round(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    px_wstate_t *ws = t->data;
    for (size_t i = 0; i < ws->up->nservers; i++)
        if (!ws->srv[i].hc) /* a check still in flight (timeout > interval) is not doubled */
            hc_begin(ws, (int)i);
}

void px_hcheck_start(px_wstate_t *ws)
{
    if (!ws->up->health.path)
        return;
    ev_timer_init(&ws->hc_timer, on_round, 0., ws->up->health.interval_s);
    ws->hc_timer.data = ws;
    ev_timer_start(ws->loop, &ws->hc_timer);
}

void px_hcheck_free(px_wstate_t *ws, int live)
{
    /* live: see px_wstate_free */
    if (live && ws->up->health.path)
        ev_timer_stop(ws->loop, &ws->hc_timer);
    for (size_t i = 0; i < ws->up->nservers; i++) {
        px_hcheck_t *h = ws->srv[i].hc;
        if (h) {
            if (live)
                sl_proxy_client_cancel(h->cl);
            else if (h->cl)
                px_client_discard(h->cl);
            px_probe_discard(h->probe, live);
            sl_free(h);
            ws->srv[i].hc = NULL;
        }
    }
}
