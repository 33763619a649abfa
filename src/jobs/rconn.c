/* sluice - SPDX-License-Identifier: MIT
 *
 * One connection to Redis on a libev loop (hiredis's async API and its
 * libev adapter): connect, AUTH and SELECT pipelined before anything
 * else, reconnect with back-off (100 ms doubling to 5 s), and the bounds
 * hiredis 0.14 lacks: a connect timeout, a reply watchdog (a Redis that
 * stops answering for store.timeout_ms is dropped, which fails every
 * pending command, and dialled again) and at most store.max_pending
 * commands in flight, so a slow Redis never grows a queue in here.
 */
#include "rconn.h"
#include "../log.h"
#include <hiredis/adapters/libev.h>
#include <stdio.h>

#define BACKOFF_MIN 0.1
#define BACKOFF_MAX 5.0

struct sl_jobs_rconn {
    struct ev_loop *loop;
    const sl_jobs_store_cfg_t *cfg;
    const char *role;
    redisAsyncContext *ac;
    atomic_int up;
    int watch;   /* replies are expected promptly (not a blocking reader) */
    int closing; /* sl_jobs_rconn_free under way: no reconnect */
    int was_up;  /* for one log line per outage */
    double backoff;
    long pending;
    ev_tstamp last_progress;
    ev_timer retry, watchdog;
    sl_jobs_rconn_state_fn on_state;
    void *arg;
};

typedef struct pending {
    sl_jobs_rconn_t *rc;
    sl_jobs_rconn_cb cb;
    void *priv;
} pending_t;

static void dial(sl_jobs_rconn_t *rc);

static const char *where(const sl_jobs_rconn_t *rc, char *buf, size_t n)
{
    if (rc->cfg->unix_path[0])
        snprintf(buf, n, "unix:%s", rc->cfg->unix_path);
    else
        snprintf(buf, n, "%s:%d", rc->cfg->host, rc->cfg->port);
    return buf;
}

static void set_up(sl_jobs_rconn_t *rc, int up)
{
    atomic_store(&rc->up, up);
    if (rc->on_state && !rc->closing)
        rc->on_state(rc, up, rc->arg);
}

static void schedule_retry(sl_jobs_rconn_t *rc, const char *why)
{
    char w[300];
    rc->ac = NULL;
    if (rc->closing)
        return;
    if (rc->was_up || rc->backoff == 0)
        sl_log(SL_LOG_WARN, NULL, "redis (%s): %s: %s; retrying", rc->role, where(rc, w, sizeof(w)), why);
    rc->was_up = 0;
    rc->backoff = rc->backoff == 0 ? BACKOFF_MIN : SL_MIN(rc->backoff * 2, BACKOFF_MAX);
    ev_timer_set(&rc->retry, rc->backoff, 0.);
    ev_timer_start(rc->loop, &rc->retry);
    if (atomic_load(&rc->up))
        set_up(rc, 0);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    sl_jobs_rconn_t *rc = ac->data;
    if (!rc || rc->ac != ac)
        return; /* dropped by us already (drop() clears rc->ac first) */
    schedule_retry(rc, status == REDIS_OK ? "connection closed" : ac->errstr);
}

static void on_auth(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    SL_UNUSED(priv);
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        sl_log(SL_LOG_ERROR, NULL, "redis: AUTH/SELECT refused: %.*s", (int)reply->len, reply->str);
        redisAsyncDisconnect(ac);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    sl_jobs_rconn_t *rc = ac->data;
    char w[300];
    if (!rc || rc->ac != ac)
        return;
    ev_timer_stop(rc->loop, &rc->watchdog);
    if (status != REDIS_OK) {
        schedule_retry(rc, ac->errstr); /* hiredis frees ac after this */
        return;
    }
    redisAsyncContext *c = (redisAsyncContext *)ac;
    if (rc->cfg->password[0])
        redisAsyncCommand(c, on_auth, NULL, "AUTH %s", rc->cfg->password);
    if (rc->cfg->db)
        redisAsyncCommand(c, on_auth, NULL, "SELECT %d", rc->cfg->db);
    sl_log(rc->backoff > 0 ? SL_LOG_WARN : SL_LOG_INFO, NULL, "redis (%s): connected to %s", rc->role,
           where(rc, w, sizeof(w)));
    rc->was_up = 1;
    rc->backoff = 0;
    rc->last_progress = ev_now(rc->loop);
    if (rc->watch)
        ev_timer_again(rc->loop, &rc->watchdog);
    set_up(rc, 1);
}

/* Drop the connection on purpose (stuck): every pending callback gets a
 * NULL reply, then we dial again. */
static void drop(sl_jobs_rconn_t *rc, const char *why)
{
    redisAsyncContext *ac = rc->ac;
    schedule_retry(rc, why); /* clears rc->ac: on_disconnect ignores it */
    rc->was_up = 0;
    ac->data = NULL;
    redisAsyncFree(ac);
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    SL_UNUSED(revents);
    sl_jobs_rconn_t *rc = w->data;
    double limit = (double)rc->cfg->timeout_ms / 1000.0;
    if (!rc->ac)
        return;
    if (!atomic_load(&rc->up)) { /* still connecting */
        drop(rc, "connect timed out");
        return;
    }
    if (rc->pending > 0 && ev_now(loop) - rc->last_progress > limit)
        drop(rc, "no reply within store.timeout_ms");
    else if (rc->watch)
        ev_timer_again(loop, w);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    dial(w->data);
}

static void dial(sl_jobs_rconn_t *rc)
{
    const sl_jobs_store_cfg_t *c = rc->cfg;
    redisAsyncContext *ac =
        c->unix_path[0] ? redisAsyncConnectUnix(c->unix_path) : redisAsyncConnect(c->host, c->port);
    if (!ac || ac->err) {
        const char *why = ac ? ac->errstr : "out of memory";
        char msg[160];
        snprintf(msg, sizeof(msg), "%s", why);
        if (ac)
            redisAsyncFree(ac);
        rc->ac = NULL;
        schedule_retry(rc, msg);
        return;
    }
    ac->data = rc;
    rc->ac = ac;
    redisLibevAttach(rc->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    ev_timer_set(&rc->watchdog, 0., (double)c->timeout_ms / 1000.0);
    ev_timer_again(rc->loop, &rc->watchdog); /* the connect timeout */
}

sl_jobs_rconn_t *sl_jobs_rconn_new(struct ev_loop *loop, const sl_jobs_store_cfg_t *cfg,
                                   const char *role, int watch, sl_jobs_rconn_state_fn fn,
                                   void *arg)
{
    sl_jobs_rconn_t *rc = sl_calloc(1, sizeof(*rc));
    rc->loop = loop;
    rc->cfg = cfg;
    rc->role = role;
    rc->watch = watch;
    rc->on_state = fn;
    rc->arg = arg;
    ev_timer_init(&rc->retry, on_retry, 0., 0.);
    rc->retry.data = rc;
    ev_init(&rc->watchdog, on_watchdog);
    rc->watchdog.data = rc;
    dial(rc);
    return rc;
}

void sl_jobs_rconn_free(sl_jobs_rconn_t *rc)
{
    if (!rc)
        return;
    rc->closing = 1;
    ev_timer_stop(rc->loop, &rc->retry);
    ev_timer_stop(rc->loop, &rc->watchdog);
    if (rc->ac) {
        redisAsyncContext *ac = rc->ac;
        rc->ac = NULL;
        redisAsyncFree(ac); /* pending callbacks run with NULL */
    }
    sl_free(rc);
}

int sl_jobs_rconn_up(const sl_jobs_rconn_t *rc)
{
    return rc && atomic_load(&((sl_jobs_rconn_t *)rc)->up);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    SL_UNUSED(ac);
    pending_t *p = priv;
    sl_jobs_rconn_t *rc = p->rc;
    rc->pending--;
    if (r)
        rc->last_progress = ev_now(rc->loop);
    if (p->cb)
        p->cb(rc, r, p->priv);
    sl_free(p);
}

int sl_jobs_rconn_argv(sl_jobs_rconn_t *rc, sl_jobs_rconn_cb cb, void *priv, int argc,
                       const char **argv, const size_t *lens)
{
    if (!rc->ac || !atomic_load(&rc->up) || rc->pending >= rc->cfg->max_pending)
        return SL_EAGAIN;
    pending_t *p = sl_malloc(sizeof(*p));
    *p = (pending_t){rc, cb, priv};
    if (rc->pending == 0)
        rc->last_progress = ev_now(rc->loop); /* the clock starts with the first wait */
    if (redisAsyncCommandArgv(rc->ac, on_reply, p, argc, argv, lens) != REDIS_OK) {
        sl_free(p);
        return SL_EAGAIN;
    }
    rc->pending++;
    return 0;
}
