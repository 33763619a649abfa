/* sluice - SPDX-License-Identifier: MIT
 *
 * Attempts (proxy_int.h, px_attempt_t): the part of talking to an upstream
 * that every user shares. Server choice with the group's balance key (a
 * header's value or the client's address), the servers already tried,
 * passive health on every connect failure, the retry bound, and the
 * watchers of the attempt's connection. The proxy handler and the
 * WebSocket tunnel add only what they send and read.
 */
#include "proxy_int.h"
#include "../log.h"
#include <errno.h>
#include <stdio.h>

void px_attempt_init(px_attempt_t *a, const sl_req_t *req, px_upstream_t *up, const char *what)
{
    memset(a, 0, sizeof(*a));
    a->req = req;
    a->up = up;
    a->ws = px_wstate_get(up);
    a->what = what;
}

static const char *server_name(const px_attempt_t *a, int idx)
{
    return idx >= 0 ? a->up->servers[idx].name : "-";
}

static void log_server(const px_attempt_t *a, int idx, const char *cause)
{
    sl_log_stream(SL_LOG_WARN, a->req ? a->req->conn : NULL, a->req ? a->req->stream_id : -1,
                  "proxy: upstream \"%s\" server %s: %s%s", a->up->name, server_name(a, idx),
                  a->what, cause);
}

void px_attempt_log(const px_attempt_t *a, const char *cause)
{
    log_server(a, a->u ? a->u->idx : -1, cause);
}

void px_attempt_set_io(px_attempt_t *a, int events)
{
    px_uconn_t *u = a->u;
    if (!u || events == a->io_events)
        return;
    ev_io_stop(a->ws->loop, &u->io);
    a->io_events = events;
    if (events) {
        ev_io_modify(&u->io, events); /* same fd: see watch() */
        ev_io_start(a->ws->loop, &u->io);
    }
}

void px_attempt_set_timer(px_attempt_t *a, double secs)
{
    ev_timer_stop(a->ws->loop, &a->u->timer);
    if (secs > 0) {
        ev_timer_set(&a->u->timer, secs, 0.);
        ev_timer_start(a->ws->loop, &a->u->timer);
    }
}

void px_attempt_ok(px_attempt_t *a, int idx)
{
    px_srvstate_t *s = &a->ws->srv[idx];
    px_health_ok(a->ws, idx);
    double secs = SL_MAX(0.0, ev_now(a->ws->loop) - a->sent_at);
    size_t b = 0;
    while (b < SL_M_BUCKETS - 1 && secs > sl_metrics_bounds[b])
        b++;
    sl_counter_add(&s->m_lat[b], 1);
    sl_counter_add(&s->m_lat_ns, (uint64_t)(secs * 1e9));
}

void px_attempt_drop(px_attempt_t *a)
{
    if (!a->u)
        return;
    px_uconn_close(a->u);
    a->u = NULL;
    a->io_events = 0;
}

static void server_failed(px_attempt_t *a, int idx, int health)
{
    sl_counter_add(&a->ws->srv[idx].m_failures, 1);
    if (health)
        px_health_fail(a->ws, idx, ev_now(a->ws->loop));
    a->tried[idx / 8] |= (uint8_t)(1u << (idx % 8));
}

void px_attempt_connect_failed(px_attempt_t *a, int idx, int err)
{
    snprintf(a->cause, sizeof(a->cause), "connect failed: %s", strerror(err));
    log_server(a, idx, a->cause);
    server_failed(a, idx, 1);
}

void px_attempt_failed(px_attempt_t *a, const char *cause, int health)
{
    int reused = a->u && a->u->reused;
    snprintf(a->cause, sizeof(a->cause), "%s%s", cause,
             reused ? " (reused keep-alive connection)" : "");
    px_attempt_log(a, a->cause);
    if (a->u && !reused) /* a stale keep-alive connection: the server may be fine */
        server_failed(a, a->u->idx, health);
}

/* hash policy: the configured header's value, else the client address */
static const char *balance_key(const px_attempt_t *a, char *ip, size_t cap, size_t *n)
{
    if (!a->req) {
        *n = a->key ? strlen(a->key) : 0;
        return a->key ? a->key : "";
    }
    if (a->up->hash_header) {
        const sl_header_t *h = sl_req_header(a->req, a->up->hash_header);
        *n = h ? h->value.n : 0;
        return h ? h->value.p : "";
    }
    px_peer_ip(a->req->peer, ip, cap);
    *n = strlen(ip);
    return ip;
}

static px_uconn_t *connect_to(px_attempt_t *a, int idx, int use_idle)
{
    px_uconn_t *u = use_idle ? px_uconn_take_idle(a->ws, idx) : NULL;
    if (u)
        return u;
    u = px_uconn_connect(a->ws, idx);
    if (!u)
        px_attempt_connect_failed(a, idx, errno);
    return u;
}

static void watch(px_attempt_t *a, void (*io_cb)(struct ev_loop *, ev_io *, int),
                  void (*timer_cb)(struct ev_loop *, ev_timer *, int), void *data)
{
    a->io_events = 0;
    /* The watcher keeps the fd it was made with (px_uconn_connect): a new
     * ev_io_set would make libev re-register the fd with the kernel
     * (a failing EPOLL_CTL_ADD) on every hand-over. */
    ev_set_cb(&a->u->io, io_cb);
    ev_io_modify(&a->u->io, 0);
    a->u->io.data = data;
    ev_init(&a->u->timer, timer_cb);
    a->u->timer.data = data;
}

int px_attempt_to(px_attempt_t *a, int idx, void (*io_cb)(struct ev_loop *, ev_io *, int),
                  void (*timer_cb)(struct ev_loop *, ev_timer *, int), void *data)
{
    a->attempts++;
    a->u = px_uconn_connect(a->ws, idx);
    if (!a->u) {
        snprintf(a->cause, sizeof(a->cause), "connect failed: %s", strerror(errno));
        return 502;
    }
    watch(a, io_cb, timer_cb, data);
    return 0;
}

int px_attempt_pick(px_attempt_t *a)
{
    char ip[64];
    size_t kn = 0;
    const char *key = a->up->balance == PX_HASH ? balance_key(a, ip, sizeof(ip), &kn) : NULL;
    int all_down = 0;
    int idx = px_balance_pick(a->ws, a->tried, key, kn, ev_now(a->ws->loop), &all_down);
    if (idx >= 0)
        return idx;
    if (all_down || a->attempts == 0) {
        sl_log_stream(SL_LOG_WARN, a->req ? a->req->conn : NULL, a->req ? a->req->stream_id : -1,
                      "proxy: upstream \"%s\": %s%s", a->up->name, a->what,
                      all_down ? "no server up" : "every server at max_conns");
        return -503;
    }
    return -502;
}

int px_attempt_next(px_attempt_t *a, int use_idle, void (*io_cb)(struct ev_loop *, ev_io *, int),
                    void (*timer_cb)(struct ev_loop *, ev_timer *, int), void *data)
{
    while (!a->u) {
        int idx = px_attempt_pick(a);
        if (idx < 0)
            return -idx;
        a->attempts++;
        a->sent_at = ev_now(a->ws->loop);
        sl_counter_add(&a->ws->srv[idx].m_attempts, 1);
        a->u = connect_to(a, idx, use_idle);
        if (!a->u && a->attempts > a->up->retries)
            return 502; /* nothing was sent: any method may have gone on */
    }
    watch(a, io_cb, timer_cb, data);
    return 0;
}
