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
#include "buf.h"
#include "config.h"
#include <ev.h>
#include <pthread.h>

typedef struct sl_conn sl_conn_t;
typedef struct sl_listener sl_listener_t;

typedef struct sl_worker {
    int id;
    struct ev_loop *loop;
    const sl_config_t *cfg;
    pthread_t thread;
    sl_buf_pool_t bufpool;
    sl_listener_t *listeners;
    size_t nlisteners;
    sl_conn_t *conns;         /* live connections (doubly linked) */
    size_t nconns;
    sl_conn_t *closing;       /* freed in the prepare watcher */
    sl_conn_t *flushing;      /* flush queued output before the loop blocks */
    ev_prepare prepare;
    ev_async wake;            /* main -> worker: check `command` */
    ev_timer drain_timer;
    volatile int command;     /* SL_WORKER_CMD_* set by main before ev_async_send */
    int draining;
    uint64_t next_conn_id;
    char *access_buf;         /* pending access-log lines (bounded) */
    size_t access_len, access_cap;
} sl_worker_t;

#define SL_WORKER_CMD_NONE 0
#define SL_WORKER_CMD_DRAIN 1
#define SL_WORKER_CMD_STOP 2

/* The calling thread's worker, or NULL on the main thread. */
sl_worker_t *sl_worker_current(void);

/* Bind listeners (SO_REUSEPORT, one set per worker), returns 0 or SL_ERROR
 * with a logged reason. */
int sl_worker_init(sl_worker_t *w, int id, const sl_config_t *cfg);
int sl_worker_start(sl_worker_t *w);  /* spawn the thread */
void sl_worker_command(sl_worker_t *w, int cmd);
void sl_worker_join(sl_worker_t *w);
void sl_worker_dispose(sl_worker_t *w);

/* Actual bound port of listener i on worker w (for ":0" configs). */
int sl_worker_listener_port(const sl_worker_t *w, size_t i);

#endif
