/* sluice - SPDX-License-Identifier: MIT
 *
 * Per-worker upstream state, server choice and passive health. Each worker
 * keeps its own counters (connections, weights, failures) so nothing here
 * takes a lock; the price is that each worker learns on its own that a
 * server is down, as nginx workers do without a shared zone.
 * Policies: smooth weighted round robin (nginx's), least connections per
 * weight (ties by round robin), and a hash of a header or the client
 * address over the weighted server list, probing on when the target is
 * down or already tried.
 */
#include "proxy_int.h"
#include "proxy.h"
#include "../log.h"
#include "../worker.h"
#include <unistd.h>

static __thread struct ev_loop *thread_loop; /* sl_proxy_client_bind */

void sl_proxy_client_bind(struct ev_loop *loop)
{
    SL_ASSERT(!sl_worker_current());
    thread_loop = loop;
}

px_wstate_t *px_wstate_get(px_upstream_t *up)
{
    sl_worker_t *w = sl_worker_current();
    SL_ASSERT(w ? w->id >= 0 && w->id < PX_MAX_WORKERS : thread_loop != NULL);
    int slot = w ? w->id : PX_SLOT_THREAD;
    /* Only the slot's thread reads or writes it. */
    px_wstate_t *ws = up->ws[slot];
    if (ws)
        return ws;
    ws = sl_calloc(1, sizeof(*ws) + up->nservers * sizeof(px_srvstate_t));
    ws->loop = w ? w->loop : thread_loop;
    ws->bufpool = w ? &w->bufpool : NULL;
    ws->up = up;
    /* release: a scrape on another worker reads the slot (metrics.c) */
    __atomic_store_n(&up->ws[slot], ws, __ATOMIC_RELEASE);
    if (w)
        px_hcheck_start(ws); /* active checks are the workers' */
    return ws;
}

void px_srv_publish(px_wstate_t *ws, int idx)
{
    px_srvstate_t *s = &ws->srv[idx];
    atomic_store_explicit(&s->m_conns, s->nconns, memory_order_relaxed);
    atomic_store_explicit(&s->m_idle, s->nidle, memory_order_relaxed);
    /* until when (ms of ev_time) it is skipped; a failed check: for good */
    uint64_t until = s->hc_down ? UINT64_MAX : (uint64_t)(s->down_until * 1000.0);
    atomic_store_explicit(&s->m_down, until, memory_order_relaxed);
}

void px_wstate_free(px_wstate_t *ws, int live)
{
    if (!ws)
        return;
    /* live: the loop runs on (a reload retired the config), so every
     * watcher is stopped; else the loop is gone and only memory and
     * sockets are let go. */
    px_hcheck_free(ws, live);
    px_h2_discard(ws, live);
    for (size_t i = 0; i < ws->up->nservers; i++) {
        while (ws->srv[i].idle)
            (live ? px_uconn_close : px_uconn_discard)(ws->srv[i].idle);
        SSL_SESSION_free(ws->srv[i].tls_sess);
    }
    while (ws->in_spare)
        sl_free(px_inbuf_get(ws));
    sl_free(ws);
}

static int is_tried(const uint8_t *tried, size_t i)
{
    return tried && (tried[i / 8] >> (i % 8)) & 1;
}

static int usable(const px_wstate_t *ws, const uint8_t *tried, size_t i, double now)
{
    const px_srvstate_t *s = &ws->srv[i];
    return !is_tried(tried, i) && s->down_until <= now && !s->hc_down &&
           (int64_t)(s->nconns - s->nidle) < ws->up->max_conns;
}

static int pick_rr(px_wstate_t *ws, const uint8_t *tried, double now)
{
    int best = -1, total = 0;
    for (size_t i = 0; i < ws->up->nservers; i++) {
        if (!usable(ws, tried, i, now))
            continue;
        px_srvstate_t *s = &ws->srv[i];
        s->cur_weight += ws->up->servers[i].weight;
        total += ws->up->servers[i].weight;
        if (best < 0 || s->cur_weight > ws->srv[best].cur_weight)
            best = (int)i;
    }
    if (best >= 0)
        ws->srv[best].cur_weight -= total;
    return best;
}

static int pick_least(px_wstate_t *ws, const uint8_t *tried, double now)
{
    int best = -1;
    for (size_t i = 0; i < ws->up->nservers; i++) {
        if (!usable(ws, tried, i, now))
            continue;
        /* active/weight < best.active/best.weight, cross-multiplied */
        if (best < 0 || ws->srv[i].active * (size_t)ws->up->servers[best].weight <
                            ws->srv[best].active * (size_t)ws->up->servers[i].weight)
            best = (int)i;
    }
    if (best < 0)
        return -1;
    /* Among equals, rotate so idle servers share the load. */
    size_t n = ws->up->nservers, start = (size_t)ws->srv[0].cur_weight++ % n;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        if (usable(ws, tried, i, now) &&
            ws->srv[i].active * (size_t)ws->up->servers[best].weight ==
                ws->srv[best].active * (size_t)ws->up->servers[i].weight)
            return (int)i;
    }
    return best;
}

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int pick_hash(px_wstate_t *ws, const uint8_t *tried, const char *key, size_t keylen,
                     double now)
{
    const px_upstream_t *up = ws->up;
    uint64_t slot = fnv1a(key, keylen) % (uint64_t)up->total_weight;
    size_t first = 0;
    for (uint64_t acc = 0; first < up->nservers; first++) {
        acc += (uint64_t)up->servers[first].weight;
        if (slot < acc)
            break;
    }
    for (size_t k = 0; k < up->nservers; k++) {
        size_t i = (first + k) % up->nservers;
        if (usable(ws, tried, i, now))
            return (int)i;
    }
    return -1;
}

int px_balance_pick(px_wstate_t *ws, const uint8_t *tried, const char *key, size_t keylen,
                    double now, int *all_down)
{
    int idx;
    switch (ws->up->balance) {
    case PX_LEAST_CONN: idx = pick_least(ws, tried, now); break;
    case PX_HASH: idx = pick_hash(ws, tried, key ? key : "", key ? keylen : 0, now); break;
    default: idx = pick_rr(ws, tried, now); break;
    }
    *all_down = 0;
    if (idx < 0) {
        int down = 0, avail = 0;
        for (size_t i = 0; i < ws->up->nservers; i++) {
            if (is_tried(tried, i))
                continue;
            avail++;
            down += ws->srv[i].down_until > now || ws->srv[i].hc_down;
        }
        *all_down = avail > 0 && down == avail;
    }
    return idx;
}

void px_health_fail(px_wstate_t *ws, int idx, double now)
{
    px_srvstate_t *s = &ws->srv[idx];
    s->fails++;
    if (ws->up->fail_threshold == 0 || s->fails < ws->up->fail_threshold || s->down_until > now)
        return;
    s->down_until = now + ws->up->down_s;
    px_srv_publish(ws, idx);
    s->fails = 0;
    sl_log(SL_LOG_WARN, NULL, "proxy: upstream \"%s\" server %s marked down for %gs", ws->up->name,
           ws->up->servers[idx].name, ws->up->down_s);
}

void px_health_ok(px_wstate_t *ws, int idx)
{
    ws->srv[idx].fails = 0;
}

double px_health_retry_after(px_wstate_t *ws, double now)
{
    double best = -1;
    for (size_t i = 0; i < ws->up->nservers; i++) {
        double left = ws->srv[i].down_until - now;
        if (ws->srv[i].hc_down) /* up again at the earliest with the next check */
            left = SL_MAX(left, ws->up->health.interval_s);
        if (left > 0 && (best < 0 || left < best))
            best = left;
    }
    return best < 0 ? 1 : best;
}
