/* sluice - SPDX-License-Identifier: MIT
 *
 * Worker threads: each runs one libev loop over its own SO_REUSEPORT
 * listening sockets and the connections it accepts. Once per loop
 * iteration, just before blocking, the prepare watcher flushes queued
 * output, writes buffered access lines and frees closed connections. The
 * main thread talks to a worker only through `command` + ev_async. Worker
 * 0 also hands freed heap back to the system after load drops.
 */
#include "worker.h"
#include "log.h"
#include "handlers.h"
#include "router.h"
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPTS_PER_EVENT 64
#define SPARE_CHUNKS 64 /* per-worker free list: 1 MiB of 16 KiB chunks */
#define TRIM_EVERY_S 2.0
#define TRIM_FREE_BYTES (4u << 20)

static __thread sl_worker_t *current;

sl_worker_t *sl_worker_current(void)
{
    return current;
}

int sl_listener_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int sl_listener_open(const sl_listener_cfg_t *lcfg, int port, char *err, size_t errlen)
{
    struct sockaddr_storage ss = lcfg->ss;
    int one = 1, zero = 0;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (port) {
        if (ss.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
        else
            ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        goto fail;
    /* "[::]" serves IPv4 too (dual stack), as users of one listen line expect. */
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (bind(fd, (struct sockaddr *)&ss, lcfg->sslen) != 0)
        goto fail;
    if (listen(fd, lcfg->backlog > 0 ? lcfg->backlog : 511) != 0)
        goto fail;
    return fd;
fail:
    snprintf(err, errlen, "listen %s: %s", lcfg->addr, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    sl_listener_t *l = io->data;
    sl_worker_t *w = l->worker;
    (void)loop;
    (void)revents;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                sl_log(SL_LOG_WARN, NULL, "accept: %s (raise the fd limit)", strerror(errno));
            return;
        }
        if (w->conns.nlive >= w->cfg->limits.max_conns_per_worker) {
            /* Over the bound: refuse at once rather than queue unbounded. */
            close(fd);
            sl_metrics_abuse(SL_M_ABUSE_CONNS);
            continue;
        }
        sl_conn_new(&w->conns, fd, l->lcfg, l->ssl_ctx, (struct sockaddr *)&ss, len);
    }
}

static void close_listeners(sl_worker_t *w, sl_listener_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sl_listener_t *l = &v[i];
        if (l->fd < 0)
            continue;
        ev_io_stop(w->loop, &l->io);
        close(l->fd);
        l->fd = -1;
    }
}

static void stop_listeners(sl_worker_t *w)
{
    close_listeners(w, w->listeners, w->nlisteners);
}

static void listener_setup(sl_worker_t *w, sl_listener_t *l, int fd, const sl_listener_cfg_t *lcfg,
                           SSL_CTX *ctx)
{
    l->fd = fd;
    l->lcfg = lcfg;
    l->ssl_ctx = ctx;
    l->worker = w;
    ev_io_init(&l->io, on_accept, fd, EV_READ);
    l->io.data = l;
    if (fd >= 0 && !w->conns.draining)
        ev_io_start(w->loop, &l->io);
}

static void close_all(sl_worker_t *w, int flush)
{
    while (w->conns.live) {
        sl_conn_t *c = w->conns.live;
        sl_conn_close(c, flush);
        if (!c->closing)
            break; /* lingering: let it flush */
    }
}

static void on_drain_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    sl_worker_t *w = t->data;
    (void)loop;
    (void)revents;
    if (w->conns.nlive)
        sl_log(SL_LOG_WARN, NULL, "drain timeout: closing %zu connection(s)", w->conns.nlive);
    /* Abort what is left, lingering ones included. */
    for (sl_conn_t *c = w->conns.live; c; c = w->conns.live) {
        c->lingering = 0;
        sl_conn_close(c, 0);
    }
}

static void start_drain(sl_worker_t *w)
{
    if (w->conns.draining)
        return;
    w->conns.draining = 1;
    stop_listeners(w);
    for (size_t i = 0; i < w->ndrain_hooks; i++)
        w->drain_hooks[i].fn(w, w->drain_hooks[i].arg);
    for (sl_conn_t *c = w->conns.live, *next; c; c = next) {
        next = c->next;
        sl_conn_drain(c);
    }
    ev_timer_init(&w->drain_timer, on_drain_timeout, w->cfg->timeouts.drain_s, 0.);
    w->drain_timer.data = w;
    ev_timer_start(w->loop, &w->drain_timer);
}

static void (*exit_hooks[4])(void);
static void (*config_hooks[4])(sl_worker_t *w);

void sl_worker_on_config(void (*fn)(sl_worker_t *w))
{
    for (size_t i = 0; i < SL_ARRAY_LEN(config_hooks); i++)
        if (!config_hooks[i] || config_hooks[i] == fn) {
            config_hooks[i] = fn;
            return;
        }
    SL_ASSERT(0 && "worker config hooks full");
}

static void run_config_hooks(sl_worker_t *w)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(config_hooks) && config_hooks[i]; i++)
        config_hooks[i](w);
}

void sl_worker_at_exit(void (*fn)(void))
{
    for (size_t i = 0; i < SL_ARRAY_LEN(exit_hooks); i++)
        if (!exit_hooks[i] || exit_hooks[i] == fn) {
            exit_hooks[i] = fn;
            return;
        }
    SL_ASSERT(0 && "worker exit hooks full");
}

int sl_worker_on_drain(sl_worker_t *w, void (*fn)(sl_worker_t *w, void *arg), void *arg)
{
    if (w->ndrain_hooks == SL_ARRAY_LEN(w->drain_hooks))
        return SL_ENOMEM;
    w->drain_hooks[w->ndrain_hooks].fn = fn;
    w->drain_hooks[w->ndrain_hooks].arg = arg;
    w->ndrain_hooks++;
    return 0;
}

/* Conns on a config a reload replaced get timeouts.reload_drain_s from
 * that reload (so that load generators and long-lived clients that never
 * reconnect by themselves see no error during routine reloads), then
 * sl_conn_retire. One timer, at the earliest grace still running. */
static void retire_due(sl_worker_t *w)
{
    double now = ev_time(), next = 0;
    double grace = w->cfg->timeouts.reload_drain_s;
    for (sl_conn_t *c = w->conns.live, *after; c; c = after) {
        after = c->next;
        if (c->cfg == w->cfg || c->retired)
            continue;
        double due = c->cfg->replaced_at + grace;
        if (!c->proto) /* a handshake: look again in a second */
            due = SL_MAX(due, now + 1);
        if (due <= now)
            sl_conn_retire(c);
        else if (next == 0 || due < next)
            next = due;
    }
    ev_timer_stop(w->loop, &w->retire_timer);
    if (next > 0) {
        ev_timer_set(&w->retire_timer, next - now, 0.);
        ev_timer_start(w->loop, &w->retire_timer);
    }
}

static void on_retire_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    retire_due(t->data);
}

/* Counting costs a little on every request (docs/ops.md): only a config
 * that can show the counters (a "metrics" route) turns it on. */
static void bind_metrics(sl_worker_t *w)
{
    size_t n;
    const sl_route_t *r = sl_router_routes(w->cfg, &n);
    int on = 0;
    for (size_t i = 0; i < n && !on; i++)
        on = r[i].handler == &sl_metrics_handler;
    sl_metrics_bind(on ? &w->metrics : NULL);
}

struct sl_worker_msg {
    void (*fn)(sl_worker_t *w, void *arg);
    void *arg;
    sl_worker_msg_t *next;
};

int sl_worker_post(sl_worker_t *w, void (*fn)(sl_worker_t *w, void *arg), void *arg)
{
    sl_worker_msg_t *m = sl_malloc(sizeof(*m));
    *m = (sl_worker_msg_t){fn, arg, NULL};
    pthread_mutex_lock(&w->mail_mu);
    int closed = w->mail_closed;
    if (!closed) {
        if (w->mail_tail)
            w->mail_tail->next = m;
        else
            w->mail_head = m;
        w->mail_tail = m;
    }
    pthread_mutex_unlock(&w->mail_mu);
    if (closed) {
        sl_free(m);
        return SL_ERROR;
    }
    ev_async_send(w->loop, &w->wake);
    return 0;
}

/* Run what was posted; close the mailbox first when the loop is over. */
static void run_mail(sl_worker_t *w, int close_it)
{
    pthread_mutex_lock(&w->mail_mu);
    sl_worker_msg_t *m = w->mail_head;
    w->mail_head = w->mail_tail = NULL;
    w->mail_closed |= close_it;
    pthread_mutex_unlock(&w->mail_mu);
    while (m) {
        sl_worker_msg_t *next = m->next;
        m->fn(w, m->arg);
        sl_free(m);
        m = next;
    }
}

void sl_worker_reload(sl_worker_t *w, const sl_config_t *cfg, const int *keep, const int *fds,
                      SSL_CTX *const *ctxs)
{
    sl_listener_t *old = w->listeners, *v = sl_calloc(cfg->nlisteners, sizeof(*v));
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        int fd = fds[i];
        const sl_listener_cfg_t *lc = &cfg->listeners[i];
        if (keep[i] >= 0 && (size_t)keep[i] < w->nlisteners && old[keep[i]].fd >= 0) {
            /* The same socket, never closed: no gap for clients. */
            ev_io_stop(w->loop, &old[keep[i]].io);
            fd = old[keep[i]].fd;
            old[keep[i]].fd = -1;
            listen(fd, lc->backlog > 0 ? lc->backlog : 511); /* a new backlog applies */
        }
        listener_setup(w, &v[i], fd, lc, ctxs[i]);
    }
    close_listeners(w, old, w->nlisteners); /* the ones the new config dropped */
    sl_free(old);
    w->listeners = v;
    w->nlisteners = cfg->nlisteners;
    const sl_config_t *prev = w->cfg;
    w->cfg = w->conns.cfg = cfg;
    bind_metrics(w);
    run_config_hooks(w);
    retire_due(w);
    sl_config_release(prev);
}

static void on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    sl_worker_t *w = a->data;
    (void)revents;
    run_mail(w, 0);
    int cmd = atomic_exchange(&w->command, SL_WORKER_CMD_NONE);
    if (cmd == SL_WORKER_CMD_DRAIN) {
        start_drain(w);
    } else if (cmd == SL_WORKER_CMD_STOP) {
        stop_listeners(w);
        close_all(w, 0);
        ev_break(loop, EVBREAK_ALL);
    }
}

/* glibc keeps freed heap in its arenas: after a burst (an attack holding
 * thousands of streams, then gone) RSS would stay at the peak. Every
 * TRIM_EVERY_S, when the arenas hold more than TRIM_FREE_BYTES free,
 * malloc_trim returns whole free pages (also inside the heaps, by
 * madvise). mallinfo2 and malloc_trim cover every arena, so one worker does
 * it for the process; both take the arena locks for about a millisecond,
 * and only when there is something to give back. */
static void on_trim(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    struct mallinfo2 mi = mallinfo2();
    if (mi.fordblks > TRIM_FREE_BYTES)
        malloc_trim(0);
}

static void on_idle(struct ev_loop *loop, ev_idle *i, int revents)
{
    (void)loop;
    (void)i;
    (void)revents; /* exists only so that the loop does not block */
}

static void on_tick(struct ev_loop *loop, ev_check *c, int revents)
{
    (void)loop;
    (void)c;
    (void)revents;
    sl_clock_tick();
}

static void on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
    sl_worker_t *w = p->data;
    (void)revents;
    sl_conn_flush_pending(&w->conns);
    sl_access_flush(&w->access);
    sl_conn_reap(&w->conns);
    if (w->conns.flushing)
        ev_idle_start(loop, &w->idle);
    else
        ev_idle_stop(loop, &w->idle);
    if (w->conns.draining && w->conns.nlive == 0)
        ev_break(loop, EVBREAK_ALL);
}

int sl_worker_init(sl_worker_t *w, int id, const sl_config_t *cfg, const int *fds,
                   SSL_CTX *const *ctxs)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->cfg = cfg;
    sl_config_hold(cfg);
    pthread_mutex_init(&w->mail_mu, NULL);
    sl_access_init(&w->access, id);
    sl_metrics_init(&w->metrics);
    sl_metrics_register(id, &w->metrics);
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!w->loop)
        return SL_ERROR;
    sl_buf_pool_init(&w->bufpool, SPARE_CHUNKS);
    w->conns.loop = w->loop;
    w->conns.cfg = cfg;
    w->conns.bufpool = &w->bufpool;
    w->conns.worker_id = id;
    w->nlisteners = cfg->nlisteners;
    w->listeners = sl_calloc(cfg->nlisteners, sizeof(*w->listeners));
    for (size_t i = 0; i < cfg->nlisteners; i++)
        listener_setup(w, &w->listeners[i], fds[i], &cfg->listeners[i], ctxs[i]);
    ev_prepare_init(&w->prepare, on_prepare);
    w->prepare.data = w;
    ev_prepare_start(w->loop, &w->prepare);
    /* Highest priority: it runs before this iteration's I/O callbacks. */
    ev_check_init(&w->tick, on_tick);
    ev_set_priority(&w->tick, EV_MAXPRI);
    ev_check_start(w->loop, &w->tick);
    ev_idle_init(&w->idle, on_idle);
    ev_init(&w->retire_timer, on_retire_timer);
    w->retire_timer.data = w;
    ev_async_init(&w->wake, on_wake);
    w->wake.data = w;
    ev_async_start(w->loop, &w->wake);
    if (id == 0) {
        ev_timer_init(&w->trim_timer, on_trim, TRIM_EVERY_S, TRIM_EVERY_S);
        ev_timer_start(w->loop, &w->trim_timer);
        ev_unref(w->loop); /* never what keeps the loop alive */
    }
    return 0;
}

static void *worker_main(void *arg)
{
    sl_worker_t *w = arg;
    current = w;
    sl_log_bind_worker(w->id);
    sl_access_bind(&w->access);
    bind_metrics(w);
    run_config_hooks(w);
    ev_run(w->loop, 0);
    /* Leftovers after a STOP: abort, then free everything. */
    stop_listeners(w);
    for (sl_conn_t *c = w->conns.live; c; c = w->conns.live) {
        c->lingering = 0;
        sl_conn_close(c, 0);
    }
    sl_conn_reap(&w->conns);
    for (size_t i = 0; i < SL_ARRAY_LEN(exit_hooks) && exit_hooks[i]; i++)
        exit_hooks[i]();
    run_mail(w, 1); /* after this nothing more is posted */
    stop_listeners(w); /* a reload that came late opened some */
    sl_access_flush(&w->access);
    sl_access_bind(NULL);
    sl_metrics_bind(NULL);
    sl_log_bind_worker(-1);
    current = NULL;
    atomic_store(&w->done, 1);
    return NULL;
}

int sl_worker_start(sl_worker_t *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : SL_ERROR;
}

void sl_worker_command(sl_worker_t *w, int cmd)
{
    atomic_store(&w->command, cmd);
    ev_async_send(w->loop, &w->wake);
}

int sl_worker_is_done(const sl_worker_t *w)
{
    return atomic_load(&w->done);
}

void sl_worker_join(sl_worker_t *w)
{
    pthread_join(w->thread, NULL);
}

void sl_worker_dispose(sl_worker_t *w)
{
    if (w->loop)
        run_mail(w, 1); /* only when the thread never ran: it empties its own */
    if (w->cfg) {
        sl_config_release(w->cfg);
        w->cfg = NULL;
    }
    if (!w->loop)
        return;
    pthread_mutex_destroy(&w->mail_mu);
    stop_listeners(w);
    ev_loop_destroy(w->loop);
    w->loop = NULL;
    sl_buf_pool_dispose(&w->bufpool);
    sl_free(w->listeners);
    sl_access_dispose(&w->access);
    sl_metrics_unregister(w->id);
    sl_metrics_dispose(&w->metrics);
}
