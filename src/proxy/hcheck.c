/* sluice - SPDX-License-Identifier: MIT
 *
 * Active health checks: "GET <path>" to every server of an upstream each
 * interval_s, on a fresh connection with "connection: close"; a server
 * whose answer is not the expected status within timeout_s (refused,
 * reset, timeout, other status) is marked down (hc_down) and skipped by
 * balance.c until a later check passes.
 *
 * One checker per worker, on that worker's loop, over that worker's
 * px_wstate_t: no locks and no shared state, at the price of N workers
 * sending N checks per interval (as each worker also learns passive
 * failures on its own). A worker starts checking an upstream when it
 * first proxies to it (px_wstate_get): its requests are the only readers
 * of the result. Only the first status line is read (a 1xx there fails
 * the check); the body is not awaited.
 */
#include "proxy_int.h"
#include "../log.h"
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <unistd.h>

#define HC_REQ_MAX 2048
#define HC_LINE_MAX 256 /* status line bound */

typedef struct px_hcheck {
    px_wstate_t *ws;
    int idx;
    int fd;
    SSL *ssl;    /* TLS upstream: the check runs over TLS too */
    int hs_want; /* events the handshake waits for; 0 when done or plain */
    ev_io io;
    ev_timer timer;
    char req[HC_REQ_MAX];
    size_t req_len, req_off;
    char line[HC_LINE_MAX];
    size_t line_len;
    unsigned connecting : 1;
} px_hcheck_t;

static void hc_free(px_hcheck_t *h)
{
    SSL_free(h->ssl);
    if (h->fd >= 0)
        close(h->fd);
    h->ws->srv[h->idx].hc = NULL;
    sl_free(h);
}

/* One check is over: record it, log a change of state. */
static void hc_done(px_hcheck_t *h, int ok, const char *cause)
{
    px_wstate_t *ws = h->ws;
    px_srvstate_t *s = &ws->srv[h->idx];
    const char *name = ws->up->servers[h->idx].name;
    ev_io_stop(ws->loop, &h->io);
    ev_timer_stop(ws->loop, &h->timer);
    if (ok && s->hc_down) {
        sl_log(SL_LOG_WARN, NULL, "proxy: upstream \"%s\" server %s: health check passed; up",
               ws->up->name, name);
        s->down_until = 0; /* a passing check also ends a passive back-off */
        s->fails = 0;
    } else if (!ok && !s->hc_down) {
        sl_log(SL_LOG_WARN, NULL,
               "proxy: upstream \"%s\" server %s: health check failed (%s); "
               "marked down until a check passes",
               ws->up->name, name, cause);
    }
    s->hc_down = !ok;
    hc_free(h);
}

/* "HTTP/1.x NNN ..." in line[]: 1 when complete (status in *st), 0 for
 * more, -1 when it is not a status line. */
static int status_of(px_hcheck_t *h, int *st)
{
    char *eol = memchr(h->line, '\n', h->line_len);
    if (!eol)
        return h->line_len == HC_LINE_MAX ? -1 : 0;
    if (eol - h->line < 12 || memcmp(h->line, "HTTP/1.", 7) != 0 || h->line[8] != ' ')
        return -1;
    const char *d = h->line + 9;
    for (int i = 0; i < 3; i++)
        if (d[i] < '0' || d[i] > '9')
            return -1;
    *st = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    return 1;
}

static void hc_read(px_hcheck_t *h)
{
    ssize_t r = px_io_read(h->fd, h->ssl, h->line + h->line_len, HC_LINE_MAX - h->line_len);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        hc_done(h, 0, r == 0 ? "closed before answering" : strerror(errno));
        return;
    }
    h->line_len += (size_t)r;
    int st = 0, rc = status_of(h, &st);
    if (rc == 0)
        return;
    if (rc < 0) {
        hc_done(h, 0, "not an HTTP/1.x answer");
        return;
    }
    char cause[64];
    snprintf(cause, sizeof(cause), "status %d, expected %d", st, h->ws->up->health.expect);
    hc_done(h, st == h->ws->up->health.expect, cause);
}

static void hc_write(px_hcheck_t *h)
{
    while (h->req_off < h->req_len) {
        ssize_t w = px_io_write(h->fd, h->ssl, h->req + h->req_off, h->req_len - h->req_off);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (w < 0) {
            hc_done(h, 0, strerror(errno));
            return;
        }
        h->req_off += (size_t)w;
    }
    ev_io_stop(h->ws->loop, &h->io);
    ev_io_set(&h->io, h->fd, EV_READ);
    ev_io_start(h->ws->loop, &h->io);
}

/* Step the TLS handshake. 1 when done (go on), 0 waiting or failed. */
static int hc_handshake(px_hcheck_t *h)
{
    char cause[256];
    int rc = px_tls_handshake(h->ssl, &h->hs_want, cause, sizeof(cause));
    if (rc < 0) {
        hc_done(h, 0, cause);
        return 0;
    }
    if (rc == 0) {
        ev_io_stop(h->ws->loop, &h->io);
        ev_io_set(&h->io, h->fd, h->hs_want);
        ev_io_start(h->ws->loop, &h->io);
        return 0;
    }
    h->hs_want = 0;
    ev_io_stop(h->ws->loop, &h->io);
    ev_io_set(&h->io, h->fd, EV_WRITE);
    ev_io_start(h->ws->loop, &h->io);
    return 1;
}

static void on_hc_io(struct ev_loop *loop, ev_io *io, int revents)
{
    SL_UNUSED(loop);
    px_hcheck_t *h = io->data;
    if (h->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err) {
            char cause[96];
            snprintf(cause, sizeof(cause), "connect failed: %s", strerror(err));
            hc_done(h, 0, cause);
            return;
        }
        h->connecting = 0;
        if (h->ssl)
            h->hs_want = EV_WRITE;
    }
    if (h->hs_want && !hc_handshake(h))
        return;
    if (h->req_off < h->req_len)
        hc_write(h);
    else if (revents & EV_READ)
        hc_read(h);
}

static void on_hc_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    px_hcheck_t *h = t->data;
    char cause[64];
    snprintf(cause, sizeof(cause), "no answer within timeout_s %gs", h->ws->up->health.timeout_s);
    hc_done(h, 0, cause);
}

static void hc_begin(px_wstate_t *ws, int idx)
{
    const px_server_t *srv = &ws->up->servers[idx];
    px_hcheck_t *h = sl_calloc(1, sizeof(*h));
    h->ws = ws;
    h->idx = idx;
    h->fd = -1;
    ws->srv[idx].hc = h;
    int n = snprintf(h->req, sizeof(h->req),
                     "GET %s HTTP/1.1\r\nhost: %s\r\nuser-agent: sluice-health-check\r\n"
                     "connection: close\r\n\r\n",
                     ws->up->health.path, srv->host);
    h->req_len = (size_t)SL_MIN(n, (int)sizeof(h->req) - 1); /* config bounds the path */
    ev_io_init(&h->io, on_hc_io, -1, 0);
    h->io.data = h;
    ev_timer_init(&h->timer, on_hc_timeout, ws->up->health.timeout_s, 0.);
    h->timer.data = h;
    h->fd = socket(srv->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->fd < 0) {
        hc_done(h, 0, strerror(errno));
        return;
    }
    if (connect(h->fd, (const struct sockaddr *)&srv->ss, srv->sslen) != 0) {
        if (errno != EINPROGRESS) {
            char cause[96];
            snprintf(cause, sizeof(cause), "connect failed: %s", strerror(errno));
            hc_done(h, 0, cause);
            return;
        }
        h->connecting = 1;
    }
    if (ws->up->tls_ctx && !(h->ssl = px_tls_new(ws, idx, h->fd))) {
        hc_done(h, 0, "TLS setup failed");
        return;
    }
    if (h->ssl && !h->connecting)
        h->hs_want = EV_WRITE;
    ev_io_set(&h->io, h->fd, EV_WRITE);
    ev_io_start(ws->loop, &h->io);
    ev_timer_start(ws->loop, &h->timer);
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

void px_hcheck_free(px_wstate_t *ws)
{
    /* The worker's loop is gone (px_wstate_free): no watcher calls. */
    for (size_t i = 0; i < ws->up->nservers; i++)
        if (ws->srv[i].hc)
            hc_free(ws->srv[i].hc);
}
