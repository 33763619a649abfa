/* sluice - SPDX-License-Identifier: MIT
 *
 * One table for the process: a hash of client addresses to their open
 * connections, striped locks. An entry exists only while its address has
 * a connection open, so the table is bounded by the connections the
 * workers may hold (max_conns_per_worker x workers).
 */
#include "climit.h"
#include <netinet/in.h>
#include <pthread.h>

#define NBUCKETS 16384 /* power of two */
#define NLOCKS 64

typedef struct entry {
    struct entry *next;
    sl_climit_key_t key;
    uint32_t n;
} entry_t;

static entry_t *buckets[NBUCKETS];
static pthread_mutex_t locks[NLOCKS];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_locks(void)
{
    for (size_t i = 0; i < NLOCKS; i++)
        pthread_mutex_init(&locks[i], NULL);
}

static pthread_mutex_t *lock_of(size_t b)
{
    pthread_once(&once, init_locks);
    return &locks[b % NLOCKS];
}

int sl_climit_key_of(const struct sockaddr *sa, unsigned v6_prefix, sl_climit_key_t *k)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(k, 0, sizeof(*k));
    if (sa->sa_family == AF_INET) {
        k->a[0] = 4;
        memcpy(k->a + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family != AF_INET6)
        return SL_EINVAL;
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    if (memcmp(b, mapped, sizeof(mapped)) == 0) { /* a dual-stack listener's IPv4 client */
        k->a[0] = 4;
        memcpy(k->a + 1, b + 12, 4);
        return 0;
    }
    k->a[0] = 6;
    unsigned bits = SL_MIN(v6_prefix, 128u);
    memcpy(k->a + 1, b, bits / 8);
    if (bits % 8)
        k->a[1 + bits / 8] = (uint8_t)(b[bits / 8] & (0xff << (8 - bits % 8)));
    return 0;
}

static size_t bucket_of(const sl_climit_key_t *k)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < sizeof(k->a); i++)
        h = (h ^ k->a[i]) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 32)) & (NBUCKETS - 1);
}

static entry_t **find(size_t b, const sl_climit_key_t *k)
{
    entry_t **pp = &buckets[b];
    while (*pp && memcmp(&(*pp)->key, k, sizeof(*k)) != 0)
        pp = &(*pp)->next;
    return pp;
}

int sl_climit_take(const sl_climit_key_t *k, uint32_t max)
{
    size_t b = bucket_of(k);
    int rv = 0;
    SL_ASSERT(max > 0);
    pthread_mutex_t *mu = lock_of(b);
    pthread_mutex_lock(mu);
    entry_t **pp = find(b, k);
    if (!*pp) {
        entry_t *e = sl_calloc(1, sizeof(*e));
        e->key = *k;
        *pp = e;
    }
    if ((*pp)->n >= max)
        rv = SL_ELIMIT;
    else
        (*pp)->n++;
    pthread_mutex_unlock(mu);
    return rv;
}

void sl_climit_release(const sl_climit_key_t *k)
{
    size_t b = bucket_of(k);
    pthread_mutex_t *mu = lock_of(b);
    pthread_mutex_lock(mu);
    entry_t **pp = find(b, k);
    if (*pp && --(*pp)->n == 0) {
        entry_t *e = *pp;
        *pp = e->next;
        sl_free(e);
    }
    pthread_mutex_unlock(mu);
}

uint32_t sl_climit_count(const sl_climit_key_t *k)
{
    size_t b = bucket_of(k);
    pthread_mutex_t *mu = lock_of(b);
    pthread_mutex_lock(mu);
    entry_t **pp = find(b, k);
    uint32_t n = *pp ? (*pp)->n : 0;
    pthread_mutex_unlock(mu);
    return n;
}
