/* sluice - SPDX-License-Identifier: MIT
 *
 * A worker: one thread, one libev loop, its own SO_REUSEPORT listeners and
 * the connections it accepted (a connection never leaves its worker). The
 * main thread starts the workers, then tells them to drain or stop through
 * ev_async. Nothing on the request path takes a lock.
 */
#ifndef SL_WORKER_H
#define SL_WORKER_H

#include "sl.h"
#include "access.h"
#include "metrics.h"
#include "buf.h"
#include "config.h"
#include "conn.h"
#include <ev.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>

typedef struct sl_listener sl_listener_t;

typedef struct sl_listener {
    ev_io io;
    int fd;
    const sl_listener_cfg_t *lcfg;
    SSL_CTX *ssl_ctx; /* NULL for cleartext */
    struct sl_worker *worker;
} sl_listener_t;

typedef struct sl_worker_msg sl_worker_msg_t;

typedef struct sl_worker {
    int id;
    struct ev_loop *loop;
    const sl_config_t *cfg;
    pthread_t thread;
    sl_buf_pool_t bufpool;
    sl_listener_t *listeners;
    size_t nlisteners;
    sl_conn_table_t conns; /* its connections (drain flag included) */
    ev_prepare prepare;
    ev_check tick; /* sl_clock_tick once per iteration */
    ev_idle idle;  /* keeps the loop from blocking while output is pending */
    ev_async wake; /* main -> worker: check `command` */
    ev_timer drain_timer;
    ev_timer trim_timer; /* worker 0: malloc_trim after load drops */
    ev_timer retire_timer; /* conns on an old config past reload_drain_s */
    atomic_int command;  /* SL_WORKER_CMD_* set by main before ev_async_send */
    atomic_int done;
    pthread_mutex_t mail_mu; /* main -> worker messages (sl_worker_post) */
    sl_worker_msg_t *mail_head, *mail_tail;
    int mail_closed; /* the loop is over: sl_worker_post refuses */
    sl_access_log_t access; /* pending access-log lines (bounded) */
    sl_metrics_t metrics;   /* its counters, summed by the metrics handler */
    struct {
        void (*fn)(struct sl_worker *w, void *arg);
        void *arg;
    } drain_hooks[8]; /* sl_worker_on_drain */
    size_t ndrain_hooks;
} sl_worker_t;

#define SL_WORKER_CMD_NONE 0
#define SL_WORKER_CMD_DRAIN 1
#define SL_WORKER_CMD_STOP 2

/* The calling thread's worker, or NULL on the main thread. */
sl_worker_t *sl_worker_current(void);

/* Set up worker id over cfg. fds[i] is this worker's own SO_REUSEPORT
 * socket for cfg->listeners[i] (ownership passes to the worker), ctxs[i]
 * its TLS context or NULL. */
int sl_worker_init(sl_worker_t *w, int id, const sl_config_t *cfg, const int *fds,
                   SSL_CTX *const *ctxs);
int sl_worker_start(sl_worker_t *w); /* spawn the thread */
void sl_worker_command(sl_worker_t *w, int cmd);
void sl_worker_join(sl_worker_t *w);
void sl_worker_dispose(sl_worker_t *w);

/* Call fn(w, arg) on w's thread when w starts to drain, before the
 * connections are told (for modules above core that say goodbye in their
 * own protocol, e.g. WebSocket close 1001). Call on w's thread. Returns 0,
 * or SL_ENOMEM when the 8 slots are taken. */
int sl_worker_on_drain(sl_worker_t *w, void (*fn)(sl_worker_t *w, void *arg), void *arg);

/* Call fn() on every worker's thread once its loop is over and its
 * connections are closed, for modules above core that own work with no
 * connection (cache fills). Register from the main thread before the
 * workers start; at most 4. */
void sl_worker_at_exit(void (*fn)(void));
/* Call fn(w) on every worker's thread whenever its configuration is set:
 * just before its loop first runs and after each reload (w->cfg and
 * w->listeners are the new ones), for modules above core that own sockets
 * of their own (HTTP/3's UDP sockets). Register from the main thread
 * before the workers start; at most 4. */
void sl_worker_on_config(void (*fn)(sl_worker_t *w));

/* Run fn(w, arg) on w's thread, in order of posting. Any thread. Returns
 * 0, or SL_ERROR when w's loop is over (fn will never run: the caller
 * keeps arg). */
int sl_worker_post(sl_worker_t *w, void (*fn)(sl_worker_t *w, void *arg), void *arg);

/* A reload, on w's thread: cfg (held for w by the caller) becomes current.
 * For each of cfg's listeners, keep[i] is the index of w's listener whose
 * socket it keeps (-1: none) and fds[i] the new socket otherwise (owned
 * by w from now on); ctxs[i] its TLS context or NULL. Listeners not kept
 * are closed; open connections finish on their own snapshot. */
void sl_worker_reload(sl_worker_t *w, const sl_config_t *cfg, const int *keep, const int *fds,
                      SSL_CTX *const *ctxs);

/* True once the worker's loop has returned. */
int sl_worker_is_done(const sl_worker_t *w);

/* Open one listening socket for lcfg with SO_REUSEPORT; port overrides
 * the configured port when non-zero. Returns the fd or -1 with err set. */
int sl_listener_open(const sl_listener_cfg_t *lcfg, int port, char *err, size_t errlen);
/* The port an fd is bound to. */
int sl_listener_port(int fd);

#endif
