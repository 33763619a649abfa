/* sluice - SPDX-License-Identifier: MIT
 *
 * Private to src/cache/: zones (zone.c), RFC 9111 rules (policy.c), fills
 * (fill.c), readers (serve.c), the lookup (cache.c), purge (purge.c) and
 * the configuration (config.c). docs/cache.md has the whole picture.
 *
 * Ownership and threads:
 *   zone (shared by the workers; its mutex guards the table, the LRU list
 *       and the byte count) --table--> entry (one ref held by the table)
 *   entry: refcounted (atomic). Its fill runs on one worker (owner);
 *       readers on any worker follow it. While it fills, its mutex (mu)
 *       guards what the fill changes and readers look at: the head, the
 *       chunk list and body_len, the state, the reader groups. Bytes below
 *       a published length never change, so they are sent without it. A
 *       complete entry is immutable: readers serve it with a ref and no
 *       lock. Lock order: entry, then zone.
 *   group: an entry's readers on one worker, woken there by one post
 *       (sl_worker_post) per wake-up however many they are.
 *   fill --> a detached sl_req_t run by the proxy engine, whose response
 *       sink appends to the entry instead of a client connection.
 *   reader --> one client request answered from an entry (req pool).
 */
#ifndef SL_CACHE_INT_H
#define SL_CACHE_INT_H

#include "cache.h"
#include "../lru.h"
#include "../metrics.h"
#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>

#define CC_CHUNK 65536         /* body chunk size (the last may be smaller) */
#define CC_WINDOW (256 * 1024) /* transient: bytes ahead of the slowest reader */
#define CC_VARY_MAX 2048       /* bytes of a variant's Vary values */
#define CC_KEY_MAX 8192        /* longer keys are not cached */

/* ---- Cache-Control and responses (policy.c) ---- */

typedef struct cc_cc {
    int64_t max_age, s_maxage, swr, sie, min_fresh, max_stale; /* -1: absent */
    unsigned no_store : 1, no_cache : 1, priv : 1, pub : 1, must_revalidate : 1, only_if_cached : 1,
        max_age_bad : 1;
} cc_cc_t;

/* A response as the rules see it. */
typedef struct cc_resp {
    int status;
    const sl_header_t *h;
    size_t n;
    cc_cc_t cc;
    double resp_time; /* wall clock when its head arrived */
} cc_resp_t;

/* Every Cache-Control (and Pragma) field of h into c. */
void cc_cc_parse(const sl_header_t *h, size_t n, cc_cc_t *c);
const sl_header_t *cc_find(const sl_header_t *h, size_t n, const char *name);
/* Why a shared cache must not store r, or NULL when it may. */
const char *cc_unstorable(const cc_resp_t *r, const cc_cc_t *req_cc, int req_has_auth);
/* Freshness lifetime in seconds (explicit, else heuristic, else 0). */
double cc_lifetime(const cc_resp_t *r);
/* corrected_initial_age of RFC 9111 4.2.3. */
double cc_initial_age(const cc_resp_t *r, double request_time);
/* The request's values of the fields Vary names, one per line, into
 * out; the length, or SL_ETOOBIG. */
ssize_t cc_vary_values(const sl_req_t *req, sl_str_t vary, char *out, size_t cap);

/* ---- zones and entries (zone.c) ---- */

typedef enum cc_result {
    CC_R_HIT = 0,
    CC_R_STALE,       /* served stale (while revalidating, or on error) */
    CC_R_MISS,        /* went upstream */
    CC_R_COLLAPSED,   /* waited for another request's fill */
    CC_R_REVALIDATED, /* a conditional request upstream said 304 */
    CC_R_PASS,        /* not cacheable: proxied */
    CC_R_BYPASS,      /* method or request not cacheable */
    CC_R_MAX
} cc_result_t;

typedef enum cc_state { CE_FILLING = 0, CE_COMPLETE, CE_FAILED, CE_PASS } cc_state_t;

typedef struct cc_chunk {
    struct cc_chunk *next;
    size_t len, cap;
    uint8_t data[];
} cc_chunk_t;

typedef struct cc_zone cc_zone_t;
typedef struct cc_entry cc_entry_t;
typedef struct cc_reader cc_reader_t;
typedef struct cc_fill cc_fill_t;

struct cc_entry {
    cc_entry_t *hnext;
    sl_lru_node_t lru;
    cc_zone_t *z;
    uint64_t hash;
    char *key;
    size_t klen;
    atomic_int refs;
    _Atomic int state;     /* cc_state_t; COMPLETE is set under the zone lock */
    atomic_int refreshing; /* a background fill renews it (stale-while-revalidate) */
    int owner;             /* the worker that fills it */
    struct sl_worker *owner_w;
    uint8_t linked;            /* in the table (zone lock) */
    uint8_t on_lru;            /* (zone lock) */
    pthread_mutex_t mu;        /* while filling: see above */
    unsigned has_head : 1;     /* status and fields set (then immutable) */
    unsigned shareable : 1;    /* may go to requests other than the fill's own */
    unsigned transient : 1;    /* not in the table: streamed with backpressure */
    unsigned moved_posted : 1; /* the owner is told that readers moved */
    double pass_until;         /* CE_PASS: a marker that says "not cacheable" */
    /* the stored response */
    int status;
    sl_header_t *h;
    size_t nh;
    sl_header_t *t; /* trailers */
    size_t nt;
    char *hmem;                         /* one block: h and its strings */
    char *tmem;                         /* the same for t */
    sl_str_t vary, etag, last_modified; /* into hmem, or empty */
    char *vary_vals;                    /* the fill request's values (cc_vary_values) */
    size_t vary_len;
    int64_t clen;      /* declared length, -1 when unknown */
    uint64_t body_len; /* bytes so far; all of them once complete */
    uint64_t base;     /* offset of first (a transient entry drops what all have read) */
    cc_chunk_t *first, *last;
    cc_entry_t *body_of; /* refreshed by a 304: the body is that entry's (ref held) */
    double resp_time, init_age, lifetime;
    int64_t swr, sie; /* stale-while-revalidate / stale-if-error seconds, -1: none */
    unsigned must_revalidate : 1, no_cache : 1;
    int fwd_status;          /* what the upstream answered the fill */
    const char *why_pass;    /* not stored because (a token, static), or NULL */
    size_t mem;              /* charged to the zone */
    cc_fill_t *fill;         /* owner worker only */
    struct cc_group *groups; /* readers by worker (mu) */
    cc_entry_t *fallback;    /* stale-if-error: served instead of a failed fill (ref) */
};

/* An entry's readers on one worker (serve.c). */
typedef struct cc_group {
    struct cc_group *next; /* e->groups */
    cc_entry_t *e;
    int worker;
    struct sl_worker *w;
    cc_reader_t *readers; /* changed by its worker only, under e->mu */
    unsigned posted : 1;  /* a wake-up is queued for its worker (e->mu) */
} cc_group_t;

struct cc_zone {
    char *name;
    int64_t memory_bytes, max_entries;
    int refs;   /* configs that name it (registry lock) */
    int listed; /* in the registry (a resized zone's old self is not) */
    pthread_mutex_t mu;
    cc_entry_t **buckets;
    size_t nbuckets; /* power of two */
    size_t n;        /* linked entries */
    uint64_t mem;    /* bytes of every entry alive, linked or not */
    sl_lru_t lru;    /* complete linked entries; head: the most recent */
    uint64_t seed;
    _Atomic uint64_t results[CC_R_MAX], evictions, stored, purged;
    cc_zone_t *next; /* registry */
};

/* The registry keeps zones across reloads: a config that names a zone
 * with the same size gets the same zone, entries and all. */
cc_zone_t *cc_zone_acquire(const char *name, int64_t memory_bytes, int64_t max_entries);
void cc_zone_release(cc_zone_t *z);
uint64_t cc_key_hash(const cc_zone_t *z, const char *key, size_t n);

cc_entry_t *cc_entry_new(cc_zone_t *z, const char *key, size_t klen, uint64_t hash);
void cc_entry_ref(cc_entry_t *e);
void cc_entry_unref(cc_entry_t *e);
/* Put e in the table (it takes a ref); evicts the least recently used
 * complete entries past max_entries. SL_ETOOBIG when no room is made. */
int cc_zone_link(cc_entry_t *e);
/* The same unless a fill of e's key is under way (found and linked in
 * one hold of the lock, so that simultaneous misses on several workers
 * make one fill): then *other is that entry (ref) and e stays out. */
int cc_zone_link_or_join(cc_entry_t *e, cc_entry_t **other);
/* Out of the table (the table's ref is dropped); no-op when not in it. */
void cc_zone_unlink(cc_entry_t *e);
/* Charge n more bytes of e to its zone, evicting others past
 * memory_bytes. SL_ETOOBIG when the zone stays over. */
int cc_zone_charge(cc_entry_t *e, size_t n);
void cc_zone_uncharge(cc_entry_t *e, size_t n);
/* e's fill ended whole: it becomes a hit for every worker. Returns
 * whether e is (still) in the table: an evicted one serves only its
 * readers. */
int cc_zone_complete(cc_entry_t *e);
/* e (complete, or a pass marker) is the newest of its key: entries it
 * replaces leave (same Vary values; older markers), then the oldest
 * variants past max_variants. */
void cc_zone_settle(cc_entry_t *e, int64_t max_variants);
/* Take the zone lock around a walk of one hash chain. */
void cc_zone_lock(cc_zone_t *z);
void cc_zone_unlock(cc_zone_t *z);
cc_entry_t *cc_zone_chain(cc_zone_t *z, uint64_t hash);
/* Used now (zone lock held). */
void cc_zone_touch(cc_entry_t *e);
/* Unlink the entries whose key is key (exact) or starts with it. */
size_t cc_zone_purge(cc_zone_t *z, const char *key, size_t n, int prefix);
const char *cc_result_name(cc_result_t r);
/* Count r for the metrics and name it in the access log. */
static inline void cc_count(cc_zone_t *z, sl_req_t *req, cc_result_t r)
{
    atomic_fetch_add_explicit(&z->results[r], 1, memory_order_relaxed);
    const char *n = cc_result_name(r);
    req->log_cache = (sl_str_t){n, strlen(n)};
}
/* The body of e, for a reader (a refreshed entry reads its original). */
static inline const cc_entry_t *cc_body(const cc_entry_t *e)
{
    return e->body_of ? e->body_of : e;
}
/* Age now (RFC 9111 4.2.3) and how long it stays fresh (negative: stale). */
double cc_age(const cc_entry_t *e, double now);
/* Metrics source for the zones of cfg. */
void cc_metrics_source(sl_metrics_text_t *t, const struct sl_config *cfg);

/* ---- route options (config.c) ---- */

/* The zone called name in the config being loaded, or NULL. */
cc_zone_t *cc_zone_named(const char *name);

struct sl_cache_route {
    cc_zone_t *z;
    int64_t max_entry_bytes;
    double pass_s;        /* how long "not cacheable" is remembered */
    double swr_s, sie_s;  /* stale-while-revalidate / -if-error when the response is silent */
    double lock_s;        /* the longest a collapsed request waits */
    int64_t max_variants; /* per key */
    const sl_cache_upstream_t *up;
};

/* ---- fills (fill.c) ---- */

/* Start filling e (linked or transient) for origin with the route's
 * upstream; stale, when set, is revalidated (its validators are sent)
 * and is the stale-if-error fallback. */
int cc_fill_start(cc_entry_t *e, const sl_req_t *origin, const sl_cache_route_t *cr,
                  cc_entry_t *stale);
/* Owner worker: a reader of a transient entry moved on or left: drop
 * what every reader has passed, and let a paused fill go on; no readers
 * left: cancel it. */
void cc_fill_readers_moved(cc_entry_t *e);
/* The same from any worker (posted to the owner when need be). */
void cc_readers_moved(cc_entry_t *e);
/* Any group has readers (e->mu held). */
int cc_has_readers(const cc_entry_t *e);
/* The lowest offset a reader still needs (e->mu held). */
uint64_t cc_slowest(const cc_entry_t *e);

/* ---- readers (serve.c) ---- */

struct cc_reader {
    sl_req_t *req;
    cc_entry_t *e; /* ref held */
    const sl_cache_route_t *cr;
    cc_group_t *g;            /* while following a fill (attached) */
    cc_reader_t *prev, *next; /* g->readers */
    const cc_chunk_t *ck;     /* the chunk off is in */
    uint64_t ck_base;         /* its offset */
    uint64_t off, end;        /* next byte to send; UINT64_MAX: to the end */
    cc_result_t kind;
    const char *fwd; /* Cache-Status fwd= of a miss: uri-miss, vary-miss, stale, request */
    int fwd_status;  /* stale-if-error: what the failed fill got */
    ev_timer lock;   /* collapsed: the longest wait for the fill's head */
    unsigned attached : 1, sending : 1, head_sent : 1, origin : 1, done : 1, restarted : 1,
        lock_on : 1, no_body : 1;
};

/* Send what r can send now (serve.c). */
void cc_reader_pump(cc_reader_t *r);
/* Join e's readers on this worker (e->mu held), and leave (follow.c). */
void cc_attach_locked(cc_reader_t *r);
void cc_detach(cc_reader_t *r);

/* Answer req from e (ref moved in): now, or as e's fill goes on. fwd:
 * req started e's fill, and why it went upstream (Cache-Status fwd=:
 * "uri-miss", "vary-miss", "stale"); NULL for every other reader. */
void cc_serve(sl_req_t *req, const sl_cache_route_t *cr, cc_entry_t *e, cc_result_t kind,
              const char *fwd, int restarted);
/* The fill of e moved (head, bytes, end, failure): wake its readers,
 * this worker's at once, the others' through their workers' mailboxes.
 * Not with e->mu held. */
void cc_wake(cc_entry_t *e);
/* Forward req upstream uncached, saying why in Cache-Status. */
void cc_pass(sl_req_t *req, const sl_cache_route_t *cr, cc_result_t kind, const char *detail);

/* ---- the lookup (cache.c) ---- */

/* req's cache key ("host/path?query") into out; the length or
 * SL_ETOOBIG. */
ssize_t cc_key(const sl_req_t *req, const sl_cache_route_t *cr, char *out, size_t cap);
/* Look req up again (after a Vary mismatch while following a fill). */
void cc_lookup(sl_req_t *req, const sl_cache_route_t *cr, int restarted);

#endif
