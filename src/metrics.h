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

#define SL_M_PROTOS 3      /* 0 HTTP/1.x, 1 HTTP/2, 2 HTTP/3 (sl_proto_kind_t - 1) */
#define SL_M_CLASSES 6     /* 0: no response, then 1xx .. 5xx */
#define SL_M_BUCKETS 12    /* request duration: 11 bounds, then +Inf */
#define SL_M_TLS_VERSIONS 3 /* TLSv1.2, TLSv1.3, other */
#define SL_M_MAX_WORKERS 256
#define SL_M_H2_CODES 15 /* RFC 9113 error codes 0x0..0xd, then any other */
#define SL_M_WS_CODES 18 /* no code, 1000..1015, then any other */
/* Route and listener series are keyed by a label interned for the
 * process's life (sl_metrics_intern), not by a config's index, so that a
 * reload keeps them counting. Distinct route paths past SL_M_MAX_ROUTES
 * share the route label "(other)"; listeners past SL_M_MAX_LISTENERS are
 * not counted. */
#define SL_M_MAX_ROUTES 512
#define SL_M_ROUTE_NONE SL_M_MAX_ROUTES        /* no route matched */
#define SL_M_ROUTE_OTHER (SL_M_MAX_ROUTES + 1) /* past the bound */
#define SL_M_MAX_LISTENERS 64

/* Limits a client tripped (docs/ops.md, sluice_abuse_limits_total). */
typedef enum sl_metrics_abuse {
    SL_M_ABUSE_RAPID_RESET, /* HTTP/2 RST_STREAM or HTTP/3 RESET_STREAM bucket empty */
    SL_M_ABUSE_FLOOD,       /* HTTP/2 abusive frames (PING, SETTINGS, empty DATA, ...) */
    SL_M_ABUSE_HEADERS,     /* request header section too large (431) */
    SL_M_ABUSE_CONNS,       /* max_conns_per_worker: a connection refused */
    SL_M_ABUSE_CONNS_PER_IP, /* limits.conns_per_ip: a connection refused */
    SL_M_ABUSE_RATE_LIMIT,   /* a route's rate_limit: 429 */
    SL_M_ABUSE_KINDS
} sl_metrics_abuse_t;

/* QUIC packets no connection took (docs/ops.md, sluice_quic_packets_total). */
typedef enum sl_metrics_quic {
    SL_M_QUIC_RETRY,           /* Retry sent (address validation) */
    SL_M_QUIC_VERSION_NEG,     /* Version Negotiation sent */
    SL_M_QUIC_STATELESS_RESET, /* stateless reset sent */
    SL_M_QUIC_REFUSED,         /* CONNECTION_CLOSE for a connection not made */
    SL_M_QUIC_FORWARDED,       /* handed to the connection's own worker */
    SL_M_QUIC_DROPPED,         /* dropped: not QUIC, no room to forward, ... */
    SL_M_QUIC_KINDS
} sl_metrics_quic_t;

/* Route auth (docs/auth.md): requests to the auth service by outcome,
 * decisions taken from the cache, streams ended by a revocation. */
typedef enum sl_metrics_auth {
    SL_M_AUTH_ALLOW,
    SL_M_AUTH_DENY,
    SL_M_AUTH_ERROR,
    SL_M_AUTH_CACHED,
    SL_M_AUTH_REVOKED,
    SL_M_AUTH_KINDS
} sl_metrics_auth_t;

typedef _Atomic uint64_t sl_counter_t;

typedef struct sl_metrics {
    sl_counter_t *requests; /* [(SL_M_MAX_ROUTES + 2) * SL_M_PROTOS * SL_M_CLASSES] by route slot */
    sl_counter_t accepted[SL_M_MAX_LISTENERS];            /* by listener slot */
    sl_counter_t opened[SL_M_MAX_LISTENERS][SL_M_PROTOS]; /* a protocol started */
    sl_counter_t closed[SL_M_MAX_LISTENERS][SL_M_PROTOS];
    sl_counter_t bytes_in[SL_M_PROTOS], bytes_out[SL_M_PROTOS];
    sl_counter_t duration[SL_M_PROTOS][SL_M_BUCKETS]; /* per bucket, not cumulative */
    sl_counter_t duration_ns[SL_M_PROTOS];
    sl_counter_t tls_ok[SL_M_TLS_VERSIONS], tls_failed;
    sl_counter_t h2_goaway[2][SL_M_H2_CODES]; /* [0 sent, 1 received][code] */
    sl_counter_t h2_rst[2][SL_M_H2_CODES];
    sl_counter_t abuse[SL_M_ABUSE_KINDS];
    sl_counter_t h2_stalls[2]; /* [0 stream, 1 connection] window */
    sl_counter_t ws_opened, ws_closed;
    sl_counter_t ws_messages[2];             /* [0 sent, 1 received] */
    sl_counter_t ws_close[2][SL_M_WS_CODES]; /* [0 sent, 1 received][code] */
    sl_counter_t auth[SL_M_AUTH_KINDS];
    sl_counter_t quic[SL_M_QUIC_KINDS];
} sl_metrics_t;

/* The duration buckets' upper bounds in seconds (the last is +Inf). */
extern const double sl_metrics_bounds[SL_M_BUCKETS - 1];

void sl_metrics_init(sl_metrics_t *m);
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

/* Label interning, on the main thread while a config loads: the slot of a
 * route path (kind SL_M_NAME_ROUTE: SL_M_ROUTE_OTHER past the bound) or a
 * listener address (SL_M_NAME_LISTENER: -1 past the bound). The same label
 * always gets the same slot. */
enum { SL_M_NAME_ROUTE, SL_M_NAME_LISTENER, SL_M_NAME_KINDS };
int sl_metrics_intern(int kind, const char *label);
/* The labels interned so far (any thread): *n of them, by slot. */
const char *const *sl_metrics_names(int kind, size_t *n);

/* Hooks, on the worker thread. */
/* A request finished: protocol, route slot (SL_M_ROUTE_NONE: none), status
 * (0: no response), body bytes both ways, time since its head. */
void sl_metrics_request(int proto, size_t route, int status, uint64_t in, uint64_t out,
                        uint64_t ns);
void sl_metrics_conn_accepted(int listener); /* listener slot, -1: none */
void sl_metrics_conn_proto(int listener, int proto, int delta); /* +1 started, -1 closed */
void sl_metrics_tls(const char *version, int ok);
/* An HTTP/2 GOAWAY (goaway=1) or RST_STREAM sent or received. */
void sl_metrics_h2_frame(int received, int goaway, uint32_t code);
void sl_metrics_abuse(sl_metrics_abuse_t kind);
void sl_metrics_quic(sl_metrics_quic_t kind);
void sl_metrics_auth(sl_metrics_auth_t kind);
/* An HTTP/2 DATA frame used up the client's stream (conn=0) or connection
 * (conn=1) window with more of the body to send. */
void sl_metrics_h2_stall(int conn);
void sl_metrics_ws_conn(int delta); /* +1 accepted, -1 ended */
void sl_metrics_ws_message(int received);
void sl_metrics_ws_close(int received, unsigned code); /* code 0: none */
/* A configuration reload (main thread): ok 1 or failed 0; -1 for the
 * load at start (not counted as a reload). */
void sl_metrics_reload(int ok);

/* ---- exposition: the handler (metrics_http.c) and other modules'
 * sources, which add their own families to every scrape ---- */

typedef struct sl_metrics_text {
    char *p;
    size_t n, cap;
} sl_metrics_text_t;

struct sl_config;
void sl_metrics_printf(sl_metrics_text_t *t, const char *fmt, ...) SL_PRINTF(2, 3);
/* "# HELP name help" and "# TYPE name type". */
void sl_metrics_head(sl_metrics_text_t *t, const char *name, const char *type, const char *help);
/* A counter family with one label over n fixed values (a module's own
 * atomic counters, e.g. the test faults'). */
void sl_metrics_counter_family(sl_metrics_text_t *t, const char *name, const char *help,
                               const char *label, const char *const *values,
                               _Atomic uint64_t *counts, size_t n);
/* s as a label value (backslash, quote and newline escaped) in buf. */
const char *sl_metrics_label(char *buf, size_t cap, const char *s);
/* A histogram's bucket lines, _sum and _count from per-bucket (not
 * cumulative) counts over sl_metrics_bounds; labels without braces. */
void sl_metrics_histogram(sl_metrics_text_t *t, const char *name, const char *labels,
                          const uint64_t counts[SL_M_BUCKETS], double sum_s);

/* A source writes its families for cfg, on the scraping worker's thread:
 * it may read other threads' counters only through sl_counter_get. */
typedef void (*sl_metrics_source_fn)(sl_metrics_text_t *t, const struct sl_config *cfg);
/* Register at start-up, before the workers run (at most 8). */
void sl_metrics_add_source(sl_metrics_source_fn fn);
/* Every registered source, in order (the handler). */
void sl_metrics_run_sources(sl_metrics_text_t *t, const struct sl_config *cfg);

#endif
