/* sluice - SPDX-License-Identifier: MIT
 *
 * Upstream connections: non-blocking connect on the worker's loop and the
 * per-worker keep-alive pool. An idle connection sits on its server's list
 * with a read watcher (any byte or EOF from an idle upstream means it is
 * no longer usable) and an idle timer; both bounded by the upstream's
 * "keepalive" count and "keepalive_idle_s". A busy connection belongs to
 * one request (handler.c), which points the watchers at itself.
 */
#include "proxy_int.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <unistd.h>

/* Busy connections, per server (least_conn) and across servers; taking
 * one also keeps the recent peak that sizes the idle pool (no loop is
 * touched otherwise: discards run after the loop is gone). */
static void busy_add(px_wstate_t *ws, int idx, int d)
{
    ws->srv[idx].active += (size_t)(ssize_t)d;
    ws->busy += (size_t)(ssize_t)d;
    if (d <= 0)
        return;
    double now = ev_now(ws->loop);
    if (ws->busy >= ws->busy_peak || now - ws->peak_at > ws->up->to.keepalive_idle_s) {
        ws->busy_peak = ws->busy;
        ws->peak_at = now;
    }
}

/* Idle connections kept: at least "keepalive", and as many as were busy
 * at once within keepalive_idle_s. A fixed bound below the concurrency
 * closes a connection after nearly every response and opens another for
 * the next request: a TCP (and TLS) handshake per request under load. */
static size_t keep_bound(const px_wstate_t *ws)
{
    return SL_MAX((size_t)ws->up->keepalive, ws->busy_peak);
}

static void unlink_idle(px_uconn_t *u)
{
    px_srvstate_t *s = &u->ws->srv[u->idx];
    for (px_uconn_t **pp = &s->idle; *pp; pp = &(*pp)->next) {
        if (*pp == u) {
            *pp = u->next;
            s->nidle--;
            u->ws->nidle--;
            u->next = NULL;
            px_srv_publish(u->ws, u->idx);
            return;
        }
    }
}

void px_uconn_discard(px_uconn_t *u)
{
    if (!u)
        return;
    if (!u->busy)
        unlink_idle(u);
    else
        busy_add(u->ws, u->idx, -1);
    u->ws->srv[u->idx].nconns--;
    px_srv_publish(u->ws, u->idx);
    SSL_free(u->ssl); /* no close_notify: the connection is given up */
    close(u->fd);
    sl_free(u);
}

void px_uconn_close(px_uconn_t *u)
{
    if (!u)
        return;
    ev_io_stop(u->ws->loop, &u->io);
    ev_timer_stop(u->ws->loop, &u->timer);
    px_uconn_discard(u);
}

static void on_idle_event(struct ev_loop *loop, ev_io *io, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    px_uconn_t *u = io->data;
    if (u->ssl) {
        /* A TLS 1.3 session ticket may arrive late: consumed, not data. */
        char b[1];
        if (px_io_read(u->fd, u->ssl, b, 1) < 0 && errno == EAGAIN && !px_io_pending(u->ssl))
            return;
    }
    /* An idle upstream that speaks or closes is done with us. */
    px_uconn_close(u);
}

static void on_idle_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    px_uconn_close(t->data);
}

px_uconn_t *px_uconn_take_idle(px_wstate_t *ws, int idx)
{
    px_uconn_t *u = ws->srv[idx].idle;
    if (!u)
        return NULL;
    unlink_idle(u);
    ev_io_stop(ws->loop, &u->io);
    ev_timer_stop(ws->loop, &u->timer);
    u->reused = 1;
    u->busy = 1;
    busy_add(ws, idx, 1);
    return u;
}

px_uconn_t *px_uconn_connect(px_wstate_t *ws, int idx)
{
    const px_server_t *srv = &ws->up->servers[idx];
    int fd = socket(srv->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    if (srv->ss.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    int connecting = 0;
    if (connect(fd, (const struct sockaddr *)&srv->ss, srv->sslen) != 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            errno = e;
            return NULL;
        }
        connecting = 1;
    }
    SSL *ssl = NULL;
    if (ws->up->tls_ctx && !(ssl = px_tls_new(ws, idx, fd))) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    px_uconn_t *u = sl_calloc(1, sizeof(*u));
    u->fd = fd;
    u->ssl = ssl;
    if (ssl) {
        u->hs_want = connecting ? 0 : EV_WRITE;
        connecting = 1; /* the handshake follows */
    }
    u->idx = idx;
    u->ws = ws;
    u->connecting = connecting ? 1 : 0;
    u->busy = 1;
    ev_io_init(&u->io, on_idle_event, fd, EV_READ);
    ev_init(&u->timer, on_idle_timeout);
    ws->srv[idx].nconns++;
    px_srv_publish(ws, idx);
    busy_add(ws, idx, 1);
    return u;
}

int px_uconn_events(const px_uconn_t *u)
{
    return u->hs_want ? u->hs_want : EV_WRITE;
}

int px_uconn_progress(px_uconn_t *u, char *cause, size_t cap)
{
    if (!u->hs_want) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err) {
            snprintf(cause, cap, "connect failed: %s", strerror(err));
            return -1;
        }
        u->hs_want = EV_WRITE;
    }
    if (u->ssl) {
        int rc = px_tls_handshake(u->ssl, &u->hs_want, cause, cap);
        if (rc <= 0)
            return rc;
    }
    u->connecting = 0;
    return 1;
}

uint8_t *px_inbuf_get(px_wstate_t *ws)
{
    void *p = ws->in_spare;
    if (!p)
        return sl_malloc(PX_IN_CAP);
    memcpy(&ws->in_spare, p, sizeof(void *));
    ws->nin_spare--;
    return p;
}

void px_inbuf_put(px_wstate_t *ws, uint8_t *p)
{
    if (!p)
        return;
    if (ws->nin_spare >= keep_bound(ws)) {
        sl_free(p);
        return;
    }
    memcpy(p, &ws->in_spare, sizeof(void *));
    ws->in_spare = p;
    ws->nin_spare++;
}

void px_uconn_release(px_uconn_t *u, int reusable)
{
    px_wstate_t *ws = u->ws;
    if (!reusable || ws->up->keepalive == 0 || ws->nidle >= keep_bound(ws)) {
        px_uconn_close(u);
        return;
    }
    ev_io_stop(ws->loop, &u->io);
    ev_timer_stop(ws->loop, &u->timer);
    u->owner = NULL;
    u->busy = 0;
    busy_add(ws, u->idx, -1);
    px_srvstate_t *s = &ws->srv[u->idx];
    u->next = s->idle;
    s->idle = u;
    s->nidle++;
    ws->nidle++;
    px_srv_publish(ws, u->idx);
    ev_set_cb(&u->io, on_idle_event); /* same fd: no re-registration */
    ev_io_modify(&u->io, EV_READ);
    u->io.data = u;
    ev_io_start(ws->loop, &u->io);
    ev_timer_init(&u->timer, on_idle_timeout, ws->up->to.keepalive_idle_s, 0.);
    u->timer.data = u;
    ev_timer_start(ws->loop, &u->timer);
}
