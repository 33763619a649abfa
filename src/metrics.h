/* sluice - SPDX-License-Identifier: MIT
 *
 * Metrics: counters each worker keeps for itself and the "metrics"
 * handler sums when scraped (Prometheus text format, metrics_http.c). On
 * the hot path a counter is one relaxed load and one relaxed store by its
 * only writer (plain moves on x86): no lock, no atomic read-modify-write;
 * the scrape reads other workers' counters with relaxed loads, so a sum
 * may miss an increment made during the scrape, never tear one.
 *
 * Ownership: each worker embeds one sl_metrics_t (worker.c), registered
 * here by id from the main thread before the workers start and
 * unregistered after they stop; the calling thread's one is
 * sl_metrics_current() (NULL elsewhere: every hook is then a no-op).
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include "sl.h"
#include <stdatomic.h>


#define SL_M_PROTOS 2      /* 0 HTTP/1.x, 1 HTTP/2 */
#define SL_M_CLASSES 6     /* 0: no response, then 1xx .. 5xx */
#define SL_M_BUCKETS 12    /* request duration: 11 bounds, then +Inf */
#define SL_M_TLS_VERSIONS 3 /* TLSv1.2, TLSv1.3, other */
#define SL_M_MAX_WORKERS 256

typedef _Atomic uint64_t sl_counter_t;

typedef struct sl_metrics {
    size_t nroutes, nlisteners;
    sl_counter_t *requests; /* [(nroutes + 1) * SL_M_PROTOS * SL_M_CLASSES]; route nroutes: none */
    sl_counter_t *accepted; /* [nlisteners] */
    sl_counter_t *opened;   /* [nlisteners * SL_M_PROTOS]: a protocol started */
    sl_counter_t *closed;   /* [nlisteners * SL_M_PROTOS] */
    sl_counter_t bytes_in[SL_M_PROTOS], bytes_out[SL_M_PROTOS];
    sl_counter_t duration[SL_M_PROTOS][SL_M_BUCKETS]; /* per bucket, not cumulative */
    sl_counter_t duration_ns[SL_M_PROTOS];
    sl_counter_t tls_ok[SL_M_TLS_VERSIONS], tls_failed;
} sl_metrics_t;

/* The duration buckets' upper bounds in seconds (the last is +Inf). */
extern const double sl_metrics_bounds[SL_M_BUCKETS - 1];

void sl_metrics_init(sl_metrics_t *m, size_t nroutes, size_t nlisteners);
void sl_metrics_dispose(sl_metrics_t *m);
/* Main thread, around the workers' lives. */
void sl_metrics_register(int worker_id, sl_metrics_t *m);
void sl_metrics_unregister(int worker_id);
/* Worker thread: make m the calling thread's (NULL: none). */
void sl_metrics_bind(sl_metrics_t *m);
sl_metrics_t *sl_metrics_current(void);
/* The registered workers' blocks (NULL where none) for a scrape. */
sl_metrics_t *sl_metrics_worker(int worker_id);

static inline void sl_counter_add(sl_counter_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline uint64_t sl_counter_get(const sl_counter_t *c)
{
    return atomic_load_explicit((sl_counter_t *)c, memory_order_relaxed);
}

/* Hooks, on the worker thread. */
/* A request finished: protocol, route index (>= nroutes: none), status (0:
 * no response), body bytes both ways, time since its head. */
void sl_metrics_request(int h2, size_t route, int status, uint64_t in, uint64_t out, uint64_t ns);
void sl_metrics_conn_accepted(int listener);
void sl_metrics_conn_proto(int listener, int h2, int delta); /* +1 started, -1 closed */
void sl_metrics_tls(const char *version, int ok);

#endif
