/* sluice - SPDX-License-Identifier: MIT
 *
 * The open-file cache: per route and per worker (no locks: only the owning
 * worker touches its cache), a hash of path -> (fd, stat) with an LRU list
 * bounded by open_file_cache.max and entries that expire after ttl_s, so a
 * hot file costs no open/fstat per request while a changed file is seen
 * within the TTL. An entry also keeps the formatted validators and, for
 * files up to content_bytes, the content, so a hot small file costs no
 * syscall at all. Requests hold a ref on the entry they read from; an
 * entry evicted or expired while referenced is unlinked at once and freed
 * (fd closed) by the last release. See the drawing in static_int.h.
 */
#include "static_int.h"
#include "../lru.h"
#include <unistd.h>

#define KEY_MAX 1024 /* longer keys are not cached */

typedef struct entry entry_t;
struct entry {
    entry_t *hnext;        /* bucket chain */
    sl_lru_node_t lru;     /* most recent first */
    sl_static_file_t file; /* fd; file.m -> meta, file.data -> content */
    sl_static_meta_t meta; /* stat, validators, type */
    double expires;
    unsigned refs;
    unsigned linked : 1;
    size_t klen;
    char key[];
};

struct sl_static_cache {
    entry_t **buckets;
    size_t mask; /* buckets - 1, a power of two minus one */
    sl_lru_t lru;
    size_t n, max;
};

static uint64_t hash(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void entry_destroy(entry_t *e)
{
    close(e->file.fd);
    sl_free(e);
}

#define ENTRY(n) sl_container_of(n, entry_t, lru)

/* Out of the table; the fd lives on while a request still reads it. */
static void unlink_entry(sl_static_cache_t *c, entry_t *e)
{
    entry_t **pp = &c->buckets[hash(e->key, e->klen) & c->mask];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    sl_lru_remove(&c->lru, &e->lru);
    e->linked = 0;
    c->n--;
    if (e->refs == 0)
        entry_destroy(e);
}

static entry_t *find(sl_static_cache_t *c, const char *key, size_t klen)
{
    for (entry_t *e = c->buckets[hash(key, klen) & c->mask]; e; e = e->hnext)
        if (e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    return NULL;
}

static sl_static_cache_t *cache_for(sl_static_opts_t *o, int worker)
{
    SL_ASSERT(worker >= 0 && worker < SL_STATIC_MAX_WORKERS);
    sl_static_cache_t *c = o->caches[worker];
    if (c || o->cache_max == 0)
        return c;
    c = sl_calloc(1, sizeof(*c));
    size_t nb = 16;
    while (nb < o->cache_max)
        nb <<= 1;
    c->buckets = sl_calloc(nb, sizeof(*c->buckets));
    c->mask = nb - 1;
    c->max = o->cache_max;
    o->caches[worker] = c;
    return c;
}

int sl_static_cache_get(sl_static_opts_t *o, int worker, const char *key, size_t klen, double now,
                        sl_static_file_t *f)
{
    SL_ASSERT(worker >= 0 && worker < SL_STATIC_MAX_WORKERS);
    sl_static_cache_t *c = o->caches[worker];
    if (!c)
        return 0;
    entry_t *e = find(c, key, klen);
    if (!e)
        return 0;
    if (now >= e->expires) {
        unlink_entry(c, e);
        return 0;
    }
    sl_lru_touch(&c->lru, &e->lru);
    e->refs++;
    *f = e->file;
    f->_entry = e;
    return 1;
}

void sl_static_cache_put(sl_static_opts_t *o, int worker, const char *key, size_t klen, double now,
                         sl_static_file_t *f)
{
    if (o->cache_ttl_s <= 0 || klen > KEY_MAX || f->_entry)
        return;
    sl_static_cache_t *c = cache_for(o, worker);
    if (!c)
        return;
    entry_t *old = find(c, key, klen);
    if (old)
        unlink_entry(c, old); /* two misses raced: the newer open wins */
    if (c->n >= c->max && c->lru.tail)
        unlink_entry(c, ENTRY(c->lru.tail));
    /* Small files ride along in the entry: the key, then the content. */
    size_t size = (size_t)f->m->st.st_size;
    int keep = f->m->st.st_size > 0 && (uint64_t)f->m->st.st_size <= o->cache_content_bytes;
    entry_t *e = sl_malloc(sizeof(*e) + klen + (keep ? size : 0));
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, klen);
    e->klen = klen;
    e->meta = *f->m;
    e->file = *f;
    e->file.m = &e->meta;
    e->file.data = NULL;
    if (keep && pread(f->fd, e->key + klen, size, 0) == (ssize_t)size)
        e->file.data = (const uint8_t *)e->key + klen;
    e->expires = now + o->cache_ttl_s;
    e->refs = 1;
    e->linked = 1;
    entry_t **b = &c->buckets[hash(key, klen) & c->mask];
    e->hnext = *b;
    *b = e;
    sl_lru_push(&c->lru, &e->lru);
    c->n++;
    f->m = &e->meta;
    f->data = e->file.data;
    f->_entry = e;
}

void sl_static_file_release(sl_static_file_t *f)
{
    entry_t *e = f->_entry;
    if (e) {
        SL_ASSERT(e->refs > 0);
        if (--e->refs == 0 && !e->linked)
            entry_destroy(e);
    } else if (f->fd >= 0) {
        close(f->fd);
    }
    f->fd = -1;
    f->data = NULL;
    f->_entry = NULL;
}

void sl_static_cache_free(sl_static_cache_t *c)
{
    if (!c)
        return;
    while (c->lru.head)
        unlink_entry(c, ENTRY(c->lru.head));
    sl_free(c->buckets);
    sl_free(c);
}
