/* sluice - SPDX-License-Identifier: MIT
 *
 * A connection without a network for protocol unit tests (h1, h2): the
 * conn sits in a table of its own with its own loop and buffer pool, on
 * one end of a socketpair nobody reads, under a one-route config whose
 * handler the test registers. The test feeds bytes to the protocol's
 * on_read, drains c->out itself and plays the worker: a conn on the flush
 * list gets on_writable (sl_fake_conn_flush_due), the timer on_timeout.
 */
#ifndef SL_TEST_FAKE_CONN_H
#define SL_TEST_FAKE_CONN_H

#include "config.h"
#include "conn.h"
#include "router.h"
#include <check.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct sl_fake_conn {
    sl_config_t *cfg;
    sl_conn_table_t tab;
    sl_buf_pool_t pool;
    int sp[2];
    sl_conn_t *c;
} sl_fake_conn_t;

static void sl_fake_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(t);
    SL_UNUSED(revents);
}

static void sl_fake_on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(io);
    SL_UNUSED(revents);
}

/* Load a config whose one route "/" goes to handler (registered here
 * once), with limits_json ("\"k\": v, ...") inside "limits", then make
 * the conn. Returns f->c. */
static inline sl_conn_t *sl_fake_conn_open(sl_fake_conn_t *f, const sl_handler_def_t *handler,
                                           const char *limits_json)
{
    char json[2048], err[256];
    memset(f, 0, sizeof(*f));
    if (!sl_router_find_handler(handler->name))
        sl_router_register(handler);
    sl_router_init();
    snprintf(json, sizeof(json),
             "{\"listen\": [{\"addr\": \"127.0.0.1:0\"}], \"access_log\": false,"
             " \"limits\": {%s}, \"routes\": [{\"path\": \"/\", \"handler\": \"%s\"}]}",
             limits_json ? limits_json : "", handler->name);
    f->cfg = sl_config_load_string(json, "t.json", err, sizeof(err));
    ck_assert_msg(f->cfg != NULL, "%s", err);
    f->tab.loop = ev_loop_new(EVFLAG_AUTO);
    f->tab.cfg = f->cfg;
    f->tab.bufpool = &f->pool;
    sl_buf_pool_init(&f->pool, 4);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, f->sp), 0);
    sl_conn_t *c = f->c = sl_calloc(1, sizeof(*c));
    c->table = &f->tab;
    c->cfg = f->cfg;
    c->fd = f->sp[0];
    c->lcfg = &f->cfg->listeners[0];
    snprintf(c->tag.peer, sizeof(c->tag.peer), "127.0.0.1:1234");
    sl_buf_init(&c->out, &f->pool, f->cfg->limits.conn_out_bytes / SL_BUF_CHUNK_SIZE + 2);
    ev_io_init(&c->rio, sl_fake_on_io, f->sp[0], EV_READ);
    ev_init(&c->timer, sl_fake_on_timer);
    return c;
}

/* The protocol asked for a flush (sl_conn_flush_soon): take the request
 * off the list as the worker would; the caller then calls on_writable. */
static inline int sl_fake_conn_flush_due(sl_fake_conn_t *f)
{
    if (!f->c->in_flush_list)
        return 0;
    f->c->in_flush_list = 0;
    f->tab.flushing = NULL;
    return 1;
}

/* Free the conn, its table and the config (the protocol's on_close must
 * have run). */
static inline void sl_fake_conn_close(sl_fake_conn_t *f)
{
    ev_timer_stop(f->tab.loop, &f->c->timer);
    ev_io_stop(f->tab.loop, &f->c->rio);
    sl_buf_dispose(&f->c->out);
    sl_free(f->c);
    close(f->sp[0]);
    close(f->sp[1]);
    sl_buf_pool_dispose(&f->pool);
    ev_loop_destroy(f->tab.loop);
    sl_config_free(f->cfg);
}

#endif
