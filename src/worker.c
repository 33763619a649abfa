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

static void stop_listeners(sl_worker_t *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        sl_listener_t *l = &w->listeners[i];
        if (l->fd < 0)
            continue;
        ev_io_stop(w->loop, &l->io);
        close(l->fd);
        l->fd = -1;
    }
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

int sl_worker_on_drain(sl_worker_t *w, void (*fn)(sl_worker_t *w, void *arg), void *arg)
{
    if (w->ndrain_hooks == SL_ARRAY_LEN(w->drain_hooks))
        return SL_ENOMEM;
    w->drain_hooks[w->ndrain_hooks].fn = fn;
    w->drain_hooks[w->ndrain_hooks].arg = arg;
    w->ndrain_hooks++;
    return 0;
}

static void on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    sl_worker_t *w = a->data;
    (void)revents;
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
    sl_access_init(&w->access, id);
    size_t nroutes;
    sl_router_routes(cfg, &nroutes);
    sl_metrics_init(&w->metrics, nroutes, cfg->nlisteners);
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
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        sl_listener_t *l = &w->listeners[i];
        l->fd = fds[i];
        l->lcfg = &cfg->listeners[i];
        l->ssl_ctx = ctxs[i];
        l->worker = w;
        ev_io_init(&l->io, on_accept, l->fd, EV_READ);
        l->io.data = l;
        ev_io_start(w->loop, &l->io);
    }
    ev_prepare_init(&w->prepare, on_prepare);
    w->prepare.data = w;
    ev_prepare_start(w->loop, &w->prepare);
    ev_idle_init(&w->idle, on_idle);
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
    sl_metrics_bind(&w->metrics);
    ev_run(w->loop, 0);
    /* Leftovers after a STOP: abort, then free everything. */
    stop_listeners(w);
    for (sl_conn_t *c = w->conns.live; c; c = w->conns.live) {
        c->lingering = 0;
        sl_conn_close(c, 0);
    }
    sl_conn_reap(&w->conns);
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
    if (!w->loop)
        return;
    stop_listeners(w);
    ev_loop_destroy(w->loop);
    w->loop = NULL;
    sl_buf_pool_dispose(&w->bufpool);
    sl_free(w->listeners);
    sl_access_dispose(&w->access);
    sl_metrics_unregister(w->id);
    sl_metrics_dispose(&w->metrics);
}
