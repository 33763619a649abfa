/* sluice - SPDX-License-Identifier: MIT
 *
 * The upstream client (proxy.h): the jobs "upstream" executor and
 * reply_to on the jobs thread, and the workers' active health checks
 * (px_client_start to one server). It is a thin user of the engine the
 * proxy handler runs on: attempt.c picks the server (balance key, tried
 * set, passive health, retries), upconn.c connects (TLS included), and
 * reader.c reads the response. What is left here is the order of
 * things:
 *
 *   pick + connect [-> TLS] -> write head, then the body as the caller
 *   sends it (on_drained asks for more) -> read: head, body -> on_done
 *
 * A connect or TLS failure before any byte went out tries the next
 * server (within the group's retries); later failures end the exchange.
 * Timers: connect_s while connecting, send_idle_s while bytes wait to be
 * written, first_byte_s from the end of the request to the head, and
 * read_idle_s between reads (and while the caller holds the body back);
 * or one deadline for the whole exchange (a health check's timeout_s).
 */
#include "proxy_int.h"
#include "proxy.h"
#include "../config.h"
#include "../log.h"
#include <errno.h>
#include <stdio.h>

#define READ_CHUNK 16384

struct sl_proxy_client {
    px_attempt_t at;
    int server;        /* >= 0: that server only (no retry, health or log) */
    double deadline_s; /* > 0: one timer for the whole exchange */
    const sl_proxy_client_cbs_t *cbs;
    void *arg;
    char *key, *what;
    int head_request;
    px_reader_t *rd;
    char *head; /* this attempt's head */
    size_t head_len, head_off;
    uint8_t *out; /* body bytes sent by the caller, not written yet */
    size_t out_len, out_off, out_cap;
    ev_timer kick;        /* starts the first attempt from the loop */
    unsigned wrote : 1;   /* a byte went to this attempt's server: no retry */
    unsigned ended : 1;   /* the caller's request is complete */
    unsigned drained : 1; /* on_drained was called for what is written */
    unsigned got_head : 1;
    unsigned head_enough : 1; /* on_head said the rest is not needed */
    unsigned finished : 1;
};

static void attempt(sl_proxy_client_t *c);

static void client_free(sl_proxy_client_t *c)
{
    ev_timer_stop(c->at.ws->loop, &c->kick);
    px_attempt_drop(&c->at);
    px_client_discard(c);
}

static void finish(sl_proxy_client_t *c, const char *error)
{
    c->finished = 1;
    px_attempt_drop(&c->at);
    c->cbs->on_done(c->arg, error);
    client_free(c);
}

static void log_cause(sl_proxy_client_t *c, const char *cause)
{
    if (c->server < 0)
        px_attempt_log(&c->at, cause);
}

/* Before any byte went out the request may go to another server. */
static void attempt_failed(sl_proxy_client_t *c, const char *cause)
{
    if (c->wrote || c->got_head || c->server >= 0) {
        log_cause(c, cause);
        finish(c, cause);
        return;
    }
    px_attempt_failed(&c->at, cause, 1);
    px_attempt_drop(&c->at);
    if (c->at.attempts > c->at.up->retries) {
        finish(c, cause);
        return;
    }
    attempt(c);
}

/* ---- timers and events ---- */

static int has_output(const sl_proxy_client_t *c)
{
    return c->head_off < c->head_len || c->out_off < c->out_len;
}

static void update(sl_proxy_client_t *c)
{
    const px_timeouts_t *to = &c->at.up->to;
    px_uconn_t *u = c->at.u;
    if (u->connecting) {
        px_attempt_set_io(&c->at, px_uconn_events(u));
        if (c->deadline_s <= 0)
            px_attempt_set_timer(&c->at, to->connect_s);
        return;
    }
    int out = has_output(c);
    px_attempt_set_io(&c->at, EV_READ | (out ? EV_WRITE : 0));
    if (c->deadline_s > 0)
        return; /* armed once for the whole exchange */
    if (out)
        px_attempt_set_timer(&c->at, to->send_idle_s);
    else if (c->ended && !c->got_head)
        px_attempt_set_timer(&c->at, to->first_byte_s);
    else
        px_attempt_set_timer(&c->at, to->read_idle_s);
}

static void on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    sl_proxy_client_t *c = t->data;
    const px_timeouts_t *to = &c->at.up->to;
    char cause[96];
    if (c->deadline_s > 0)
        snprintf(cause, sizeof(cause), "no answer within %gs", c->deadline_s);
    else if (c->at.u->connecting)
        snprintf(cause, sizeof(cause), "connect timed out after %gs", to->connect_s);
    else if (has_output(c))
        snprintf(cause, sizeof(cause), "send idle for %gs", to->send_idle_s);
    else if (c->ended && !c->got_head)
        snprintf(cause, sizeof(cause), "no response head within %gs", to->first_byte_s);
    else
        snprintf(cause, sizeof(cause), "idle for %gs", to->read_idle_s);
    attempt_failed(c, cause);
}

/* ---- writing ---- */

/* Write what is queued. 0, or -1 when the exchange ended. */
static int write_out(sl_proxy_client_t *c)
{
    px_uconn_t *u = c->at.u;
    while (has_output(c)) {
        int in_head = c->head_off < c->head_len;
        const char *p = in_head ? c->head + c->head_off : (const char *)c->out + c->out_off;
        size_t n = in_head ? c->head_len - c->head_off : c->out_len - c->out_off;
        ssize_t w = px_io_write(u->fd, u->ssl, p, n);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        if (w <= 0) {
            attempt_failed(c, "send failed");
            return -1;
        }
        c->wrote = 1;
        if (in_head)
            c->head_off += (size_t)w;
        else
            c->out_off += (size_t)w;
    }
    c->out_len = c->out_off = 0;
    if (!c->drained && !c->ended && c->cbs->on_drained) {
        c->drained = 1;
        c->cbs->on_drained(c->arg); /* may send or end: both only queue */
    }
    return 0;
}

/* ---- reading ---- */

static void on_head(void *arg, int status, const sl_header_t *f, size_t n)
{
    sl_proxy_client_t *c = arg;
    c->got_head = 1;
    if (c->server < 0)
        px_attempt_ok(&c->at, c->at.u->idx);
    c->head_enough = c->cbs->on_head(c->arg, status, f, n) == 1;
}

static void on_data(void *arg, const uint8_t *p, size_t n)
{
    sl_proxy_client_t *c = arg;
    if (n && c->cbs->on_data)
        c->cbs->on_data(c->arg, p, n);
}

static const px_reader_cbs_t reader_cbs = {on_head, on_data};

/* Read what is there. 0, or -1 when the exchange ended. */
static int read_in(sl_proxy_client_t *c)
{
    px_uconn_t *u = c->at.u;
    uint8_t buf[READ_CHUNK];
    for (;;) {
        ssize_t n = px_io_read(u->fd, u->ssl, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        if (n <= 0) {
            if (n == 0 && px_reader_eof(c->rd))
                finish(c, NULL);
            else
                attempt_failed(c,
                               n == 0 ? "closed before the response was complete" : "read failed");
            return -1;
        }
        const char *err = NULL;
        int r = px_reader_feed(c->rd, buf, (size_t)n, &err);
        if (r != 0 || c->head_enough) {
            if (r < 0)
                log_cause(c, err);
            finish(c, r < 0 ? err : NULL);
            return -1;
        }
    }
}

static void on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    SL_UNUSED(loop);
    sl_proxy_client_t *c = io->data;
    px_uconn_t *u = c->at.u;
    if (u->connecting) {
        char cause[256];
        int rc = px_uconn_progress(u, cause, sizeof(cause));
        if (rc < 0) {
            attempt_failed(c, cause);
            return;
        }
        if (rc == 0) {
            update(c);
            return;
        }
        revents |= EV_WRITE;
    }
    if ((revents & EV_READ) || px_io_pending(u->ssl)) {
        if (read_in(c) != 0)
            return;
    }
    if ((revents & EV_WRITE) && write_out(c) != 0)
        return;
    update(c);
}

/* ---- attempts ---- */

static void attempt(sl_proxy_client_t *c)
{
    int status = c->server >= 0 ? px_attempt_to(&c->at, c->server, on_io, on_timeout, c)
                                : px_attempt_next(&c->at, 0, on_io, on_timeout, c);
    if (status) {
        finish(c, status == 503 || !c->at.cause[0] ? "no upstream server available" : c->at.cause);
        return;
    }
    px_uconn_t *u = c->at.u;
    u->owner = c;
    sl_free(c->head);
    c->head = c->cbs->head(c->arg, c->at.up->servers[u->idx].host, &c->head_len);
    c->head_off = 0;
    c->out_off = 0; /* nothing of it reached the failed server */
    px_reader_free(c->rd);
    c->rd = px_reader_new(c->head_request, &reader_cbs, c);
    if (c->deadline_s > 0)
        px_attempt_set_timer(&c->at, c->deadline_s);
    if (!u->connecting) {
        on_io(c->at.ws->loop, &u->io, EV_WRITE);
        return;
    }
    update(c);
}

static void on_kick(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    attempt(t->data);
}

sl_proxy_client_t *px_client_start(px_wstate_t *ws, int server, double deadline_s, const char *key,
                                   int head_request, const char *log_prefix,
                                   const sl_proxy_client_cbs_t *cbs, void *arg)
{
    sl_proxy_client_t *c = sl_calloc(1, sizeof(*c));
    c->key = sl_strdup(key ? key : "");
    c->what = sl_strdup(log_prefix ? log_prefix : "");
    memset(&c->at, 0, sizeof(c->at));
    c->at.up = ws->up;
    c->at.ws = ws;
    c->at.what = c->what;
    c->at.key = c->key;
    c->server = server;
    c->deadline_s = deadline_s;
    c->cbs = cbs;
    c->arg = arg;
    c->head_request = head_request;
    ev_timer_init(&c->kick, on_kick, 0., 0.);
    c->kick.data = c;
    ev_timer_start(c->at.ws->loop, &c->kick);
    return c;
}

sl_proxy_client_t *sl_proxy_client_start(const sl_config_t *cfg, const char *group, const char *key,
                                         int head_request, const char *log_prefix,
                                         const sl_proxy_client_cbs_t *cbs, void *arg)
{
    const px_upstreams_t *ups = cfg ? sl_config_section(cfg, "upstreams") : NULL;
    px_upstream_t *up = ups && group ? px_upstream_find(ups, group) : NULL;
    if (!up || up->nservers == 0)
        return NULL;
    return px_client_start(px_wstate_get(up), -1, 0, key, head_request, log_prefix, cbs, arg);
}

void px_client_discard(sl_proxy_client_t *c)
{
    px_uconn_discard(c->at.u);
    c->at.u = NULL;
    px_reader_free(c->rd);
    sl_free(c->head);
    sl_free(c->out);
    sl_free(c->key);
    sl_free(c->what);
    sl_free(c);
}

void sl_proxy_client_send(sl_proxy_client_t *c, const void *p, size_t n)
{
    SL_ASSERT(!c->ended);
    if (c->out_len + n > c->out_cap) {
        c->out_cap = SL_MAX(c->out_cap * 2, c->out_len + n);
        c->out = sl_realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    c->drained = 0;
    if (c->at.u && !c->at.u->connecting)
        update(c);
}

void sl_proxy_client_end(sl_proxy_client_t *c)
{
    c->ended = 1;
    if (c->at.u && !c->at.u->connecting)
        update(c);
}

void sl_proxy_client_cancel(sl_proxy_client_t *c)
{
    if (c && !c->finished)
        client_free(c);
}
