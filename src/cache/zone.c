/* sluice - SPDX-License-Identifier: MIT
 *
 * Cache zones: a hash table of entries shared by the workers under one
 * mutex, a recency list of the complete ones (the least recently used is
 * evicted first), and the bytes of every live entry, bounded by
 * memory_bytes. An entry that is evicted or replaced leaves the table at
 * once and is freed when its last reader lets go; its bytes count until
 * then, so the bound holds for what is really in memory. Keys are hashed
 * with a per-zone random seed, so a client cannot aim its query strings
 * at one chain.
 */
#include "cache_int.h"
#include "../log.h"
#include <stdio.h>
#include <sys/random.h>

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static cc_zone_t *registry;

#define ENTRY(n) sl_container_of(n, cc_entry_t, lru)

/* ---- registry ---- */

static cc_zone_t *zone_new(const char *name, int64_t memory_bytes, int64_t max_entries)
{
    cc_zone_t *z = sl_calloc(1, sizeof(*z));
    z->name = sl_strdup(name);
    z->memory_bytes = memory_bytes;
    z->max_entries = max_entries;
    pthread_mutex_init(&z->mu, NULL);
    z->nbuckets = 64;
    while (z->nbuckets < (size_t)max_entries && z->nbuckets < ((size_t)1 << 24))
        z->nbuckets <<= 1;
    z->buckets = sl_calloc(z->nbuckets, sizeof(*z->buckets));
    if (getrandom(&z->seed, sizeof(z->seed), 0) != sizeof(z->seed))
        sl_rand_fast(&z->seed, sizeof(z->seed));
    return z;
}

static void entry_free(cc_entry_t *e);

static void zone_free(cc_zone_t *z)
{
    for (size_t i = 0; i < z->nbuckets; i++) {
        for (cc_entry_t *e = z->buckets[i], *nx; e; e = nx) {
            nx = e->hnext;
            e->linked = 0;
            cc_entry_unref(e);
        }
    }
    pthread_mutex_destroy(&z->mu);
    sl_free(z->buckets);
    sl_free(z->name);
    sl_free(z);
}

/* registry_mu held */
static void unlist(cc_zone_t *z)
{
    if (!z->listed)
        return;
    cc_zone_t **pp = &registry;
    while (*pp != z)
        pp = &(*pp)->next;
    *pp = z->next;
    z->listed = 0;
}

cc_zone_t *cc_zone_acquire(const char *name, int64_t memory_bytes, int64_t max_entries)
{
    pthread_mutex_lock(&registry_mu);
    cc_zone_t *z = registry;
    while (z && strcmp(z->name, name) != 0)
        z = z->next;
    if (z && (z->memory_bytes != memory_bytes || z->max_entries != max_entries)) {
        /* Resized: the old zone lives on for the old config only, out of
         * the registry (one series per name). */
        unlist(z);
        z = NULL;
    }
    if (!z) {
        z = zone_new(name, memory_bytes, max_entries);
        z->next = registry;
        z->listed = 1;
        registry = z;
    }
    z->refs++;
    pthread_mutex_unlock(&registry_mu);
    return z;
}

void cc_zone_release(cc_zone_t *z)
{
    pthread_mutex_lock(&registry_mu);
    int last = --z->refs == 0;
    if (last)
        unlist(z);
    pthread_mutex_unlock(&registry_mu);
    if (last)
        zone_free(z);
}

/* ---- entries ---- */

uint64_t cc_key_hash(const cc_zone_t *z, const char *key, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ z->seed; /* FNV-1a, seeded */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)key[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

cc_entry_t *cc_entry_new(cc_zone_t *z, const char *key, size_t klen, uint64_t hash)
{
    cc_entry_t *e = sl_calloc(1, sizeof(*e));
    e->z = z;
    e->key = sl_malloc(klen + 1);
    memcpy(e->key, key, klen);
    e->key[klen] = 0;
    e->klen = klen;
    e->hash = hash;
    e->clen = -1;
    e->swr = e->sie = -1;
    pthread_mutex_init(&e->mu, NULL);
    atomic_init(&e->refs, 1);
    e->mem = sizeof(*e) + klen + 1;
    pthread_mutex_lock(&z->mu);
    z->mem += e->mem;
    pthread_mutex_unlock(&z->mu);
    return e;
}

void cc_entry_ref(cc_entry_t *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

static void entry_free(cc_entry_t *e)
{
    for (cc_chunk_t *c = e->first, *nx; c; c = nx) {
        nx = c->next;
        sl_free(c);
    }
    if (e->body_of)
        cc_entry_unref(e->body_of);
    if (e->fallback)
        cc_entry_unref(e->fallback);
    for (cc_group_t *g = e->groups, *nx; g; g = nx) {
        nx = g->next;
        sl_free(g);
    }
    pthread_mutex_destroy(&e->mu);
    cc_zone_t *z = e->z;
    pthread_mutex_lock(&z->mu);
    z->mem -= e->mem;
    pthread_mutex_unlock(&z->mu);
    sl_free(e->hmem);
    sl_free(e->tmem);
    sl_free(e->vary_vals);
    sl_free(e->key);
    sl_free(e);
}

void cc_entry_unref(cc_entry_t *e)
{
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        entry_free(e);
}

/* ---- the table (zone lock held) ---- */

static cc_entry_t **slot_of(cc_zone_t *z, uint64_t hash)
{
    return &z->buckets[hash & (z->nbuckets - 1)];
}

/* Out of the table; returns the table's ref for the caller to drop
 * after the lock. */
static cc_entry_t *unlink_locked(cc_entry_t *e)
{
    if (!e->linked)
        return NULL;
    cc_zone_t *z = e->z;
    cc_entry_t **pp = slot_of(z, e->hash);
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    e->hnext = NULL;
    e->linked = 0;
    if (e->on_lru)
        sl_lru_remove(&z->lru, &e->lru);
    e->on_lru = 0;
    z->n--;
    return e;
}

/* Evict from the tail until cond holds (the victims' refs go into
 * drop[], at most cap). Returns how many were taken. */
static size_t evict_locked(cc_zone_t *z, const cc_entry_t *keep, int for_bytes, size_t need,
                           cc_entry_t **drop, size_t cap)
{
    size_t k = 0;
    sl_lru_node_t *n = z->lru.tail;
    while (n && k < cap) {
        int over =
            for_bytes ? z->mem + need > (uint64_t)z->memory_bytes : z->n >= (size_t)z->max_entries;
        if (!over)
            break;
        cc_entry_t *v = ENTRY(n);
        n = n->prev;
        if (v == keep)
            continue;
        drop[k++] = unlink_locked(v);
        atomic_fetch_add_explicit(&z->evictions, 1, memory_order_relaxed);
    }
    return k;
}

static void drop_all(cc_entry_t **drop, size_t k)
{
    for (size_t i = 0; i < k; i++)
        cc_entry_unref(drop[i]); /* outside the lock: freeing takes it */
}

static cc_entry_t *filling_locked(cc_zone_t *z, const cc_entry_t *e)
{
    for (cc_entry_t *x = *slot_of(z, e->hash); x; x = x->hnext)
        if (x != e && x->klen == e->klen && memcmp(x->key, e->key, e->klen) == 0 &&
            atomic_load(&x->state) == CE_FILLING)
            return x;
    return NULL;
}

int cc_zone_link(cc_entry_t *e)
{
    return cc_zone_link_or_join(e, NULL);
}

int cc_zone_link_or_join(cc_entry_t *e, cc_entry_t **other)
{
    cc_zone_t *z = e->z;
    cc_entry_t *drop[16];
    pthread_mutex_lock(&z->mu);
    if (other && (*other = filling_locked(z, e)) != NULL) {
        cc_entry_ref(*other);
        pthread_mutex_unlock(&z->mu);
        return 0;
    }
    size_t k = evict_locked(z, e, 0, 0, drop, SL_ARRAY_LEN(drop));
    int full = z->n >= (size_t)z->max_entries;
    if (!full) {
        cc_entry_t **slot = slot_of(z, e->hash);
        e->hnext = *slot;
        *slot = e;
        e->linked = 1;
        z->n++;
        cc_entry_ref(e);
        if (atomic_load(&e->state) != CE_FILLING) {
            sl_lru_push(&z->lru, &e->lru);
            e->on_lru = 1;
        }
    }
    pthread_mutex_unlock(&z->mu);
    drop_all(drop, k);
    return full ? SL_ETOOBIG : 0;
}

void cc_zone_unlink(cc_entry_t *e)
{
    pthread_mutex_lock(&e->z->mu);
    cc_entry_t *d = unlink_locked(e);
    pthread_mutex_unlock(&e->z->mu);
    if (d)
        cc_entry_unref(d);
}

int cc_zone_charge(cc_entry_t *e, size_t n)
{
    cc_zone_t *z = e->z;
    cc_entry_t *drop[16];
    pthread_mutex_lock(&z->mu);
    size_t k = evict_locked(z, e, 1, n, drop, SL_ARRAY_LEN(drop));
    int over = z->mem + n > (uint64_t)z->memory_bytes;
    z->mem += n; /* charged either way: the bytes are allocated */
    e->mem += n;
    pthread_mutex_unlock(&z->mu);
    drop_all(drop, k);
    return over ? SL_ETOOBIG : 0;
}

void cc_zone_uncharge(cc_entry_t *e, size_t n)
{
    pthread_mutex_lock(&e->z->mu);
    e->z->mem -= n;
    e->mem -= n;
    pthread_mutex_unlock(&e->z->mu);
}

int cc_zone_complete(cc_entry_t *e)
{
    cc_zone_t *z = e->z;
    pthread_mutex_lock(&z->mu);
    atomic_store(&e->state, CE_COMPLETE);
    int linked = e->linked;
    if (linked && !e->on_lru) {
        sl_lru_push(&z->lru, &e->lru);
        e->on_lru = 1;
    }
    pthread_mutex_unlock(&z->mu);
    return linked;
}

static int same_variant(const cc_entry_t *a, const cc_entry_t *b)
{
    return a->vary.n == b->vary.n && memcmp(a->vary.p, b->vary.p, a->vary.n) == 0 &&
           a->vary_len == b->vary_len &&
           (!a->vary_len || memcmp(a->vary_vals, b->vary_vals, a->vary_len) == 0);
}

void cc_zone_settle(cc_entry_t *e, int64_t max_variants)
{
    cc_zone_t *z = e->z;
    cc_entry_t *drop[64];
    size_t k = 0;
    int marker = atomic_load(&e->state) == CE_PASS;
    pthread_mutex_lock(&z->mu);
    int64_t count = 0;
    for (cc_entry_t *x = *slot_of(z, e->hash), *nx; x; x = nx) {
        nx = x->hnext;
        if (x == e || x->klen != e->klen || memcmp(x->key, e->key, e->klen) != 0)
            continue;
        int st = atomic_load(&x->state);
        if (st == CE_FILLING)
            continue;
        int replaced = st == CE_PASS ? 1 : !marker && same_variant(x, e);
        if (replaced && k < SL_ARRAY_LEN(drop))
            drop[k++] = unlink_locked(x);
        else if (st != CE_PASS)
            count++;
    }
    while (!marker && count >= max_variants && k < SL_ARRAY_LEN(drop)) {
        cc_entry_t *old = NULL;
        for (cc_entry_t *x = *slot_of(z, e->hash); x; x = x->hnext)
            if (x != e && x->klen == e->klen && memcmp(x->key, e->key, e->klen) == 0 &&
                atomic_load(&x->state) == CE_COMPLETE && (!old || x->resp_time < old->resp_time))
                old = x;
        if (!old)
            break;
        drop[k++] = unlink_locked(old);
        atomic_fetch_add_explicit(&z->evictions, 1, memory_order_relaxed);
        count--;
    }
    pthread_mutex_unlock(&z->mu);
    drop_all(drop, k);
}

void cc_zone_lock(cc_zone_t *z)
{
    pthread_mutex_lock(&z->mu);
}

void cc_zone_unlock(cc_zone_t *z)
{
    pthread_mutex_unlock(&z->mu);
}

cc_entry_t *cc_zone_chain(cc_zone_t *z, uint64_t hash)
{
    return *slot_of(z, hash);
}

void cc_zone_touch(cc_entry_t *e)
{
    if (e->on_lru)
        sl_lru_touch(&e->z->lru, &e->lru);
}

size_t cc_zone_purge(cc_zone_t *z, const char *key, size_t n, int prefix)
{
    size_t purged = 0;
    for (;;) {
        cc_entry_t *drop[64];
        size_t k = 0;
        pthread_mutex_lock(&z->mu);
        if (!prefix) {
            for (cc_entry_t *e = *slot_of(z, cc_key_hash(z, key, n)), *nx; e && k < 64; e = nx) {
                nx = e->hnext;
                if (e->klen == n && memcmp(e->key, key, n) == 0)
                    drop[k++] = unlink_locked(e);
            }
        } else {
            for (size_t b = 0; b < z->nbuckets && k < 64; b++)
                for (cc_entry_t *e = z->buckets[b], *nx; e && k < 64; e = nx) {
                    nx = e->hnext;
                    if (e->klen >= n && memcmp(e->key, key, n) == 0)
                        drop[k++] = unlink_locked(e);
                }
        }
        pthread_mutex_unlock(&z->mu);
        drop_all(drop, k);
        purged += k;
        if (k < 64)
            break;
    }
    atomic_fetch_add_explicit(&z->purged, purged, memory_order_relaxed);
    return purged;
}

double cc_age(const cc_entry_t *e, double now)
{
    return e->init_age + SL_MAX(0, now - e->resp_time);
}

/* ---- metrics ---- */

static const char *const result_names[CC_R_MAX] = {"hit",         "stale", "miss",  "collapsed",
                                                   "revalidated", "pass",  "bypass"};

const char *cc_result_name(cc_result_t r)
{
    return result_names[r];
}

enum { M_ENTRIES, M_BYTES, M_EVICTIONS, M_STORED, M_PURGED, M_MAX };

static uint64_t zone_value(cc_zone_t *z, int which)
{
    switch (which) {
    case M_ENTRIES:
    case M_BYTES: {
        pthread_mutex_lock(&z->mu);
        uint64_t v = which == M_ENTRIES ? z->n : z->mem;
        pthread_mutex_unlock(&z->mu);
        return v;
    }
    case M_EVICTIONS: return atomic_load(&z->evictions);
    case M_STORED: return atomic_load(&z->stored);
    default: return atomic_load(&z->purged);
    }
}

void cc_metrics_source(sl_metrics_text_t *t, const struct sl_config *cfg)
{
    static const char *const fam[M_MAX][3] = {
        {"sluice_cache_entries", "gauge", "Entries in the zone's table"},
        {"sluice_cache_bytes", "gauge", "Bytes the zone's entries hold, in use or not"},
        {"sluice_cache_evictions_total", "counter", "Entries evicted to stay within bounds"},
        {"sluice_cache_stored_total", "counter", "Responses stored"},
        {"sluice_cache_purged_total", "counter", "Entries purged"},
    };
    SL_UNUSED(cfg);
    char zn[128];
    pthread_mutex_lock(&registry_mu);
    if (registry) {
        sl_metrics_head(t, "sluice_cache_requests_total", "counter",
                        "Requests on cached routes by outcome");
        for (cc_zone_t *z = registry; z; z = z->next)
            for (int r = 0; r < CC_R_MAX; r++)
                sl_metrics_printf(t,
                                  "sluice_cache_requests_total{zone=\"%s\",result=\"%s\"} %llu\n",
                                  sl_metrics_label(zn, sizeof(zn), z->name), result_names[r],
                                  (unsigned long long)atomic_load(&z->results[r]));
        for (int m = 0; m < M_MAX; m++) {
            sl_metrics_head(t, fam[m][0], fam[m][1], fam[m][2]);
            for (cc_zone_t *z = registry; z; z = z->next)
                sl_metrics_printf(t, "%s{zone=\"%s\"} %llu\n", fam[m][0],
                                  sl_metrics_label(zn, sizeof(zn), z->name),
                                  (unsigned long long)zone_value(z, m));
        }
    }
    pthread_mutex_unlock(&registry_mu);
}
