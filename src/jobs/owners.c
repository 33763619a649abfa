/* sluice - SPDX-License-Identifier: MIT
 *
 * Live jobs per owner, for jobs.max_jobs_per_owner: a hash of owner ->
 * count under its own mutex (taken alone, never with a shard lock held).
 * An entry lives while its owner has live jobs, so there are at most
 * max_jobs of them. Jobs without an owner are bounded by max_jobs alone.
 */
#include "jobs_int.h"
#include <stdio.h>

#define NBUCKETS 1024

typedef struct owner_count {
    struct owner_count *next;
    long n;
    char owner[SL_JOBS_OWNER_LEN + 1];
} owner_count_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static owner_count_t *buckets[NBUCKETS];

static owner_count_t **slot(const char *owner)
{
    uint32_t h = 2166136261u; /* FNV-1a; owners are already keyed hashes */
    for (const char *p = owner; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    owner_count_t **pp = &buckets[h % NBUCKETS];
    while (*pp && strcmp((*pp)->owner, owner) != 0)
        pp = &(*pp)->next;
    return pp;
}

int sl_jobs_owners_take(const char *owner, long max)
{
    int rv = 0;
    if (!owner || !owner[0])
        return 0;
    pthread_mutex_lock(&mu);
    owner_count_t **pp = slot(owner);
    if (!*pp) {
        *pp = sl_calloc(1, sizeof(**pp));
        snprintf((*pp)->owner, sizeof((*pp)->owner), "%s", owner);
    }
    if ((*pp)->n >= max)
        rv = SL_ETOOBIG;
    else
        (*pp)->n++;
    if ((*pp)->n == 0) { /* refused its very first job: no entry to keep */
        owner_count_t *e = *pp;
        *pp = e->next;
        sl_free(e);
    }
    pthread_mutex_unlock(&mu);
    return rv;
}

void sl_jobs_owners_release(const char *owner)
{
    if (!owner || !owner[0])
        return;
    pthread_mutex_lock(&mu);
    owner_count_t **pp = slot(owner);
    if (*pp && --(*pp)->n == 0) {
        owner_count_t *e = *pp;
        *pp = e->next;
        sl_free(e);
    }
    pthread_mutex_unlock(&mu);
}

void sl_jobs_owners_clear(void)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < NBUCKETS; i++) {
        while (buckets[i]) {
            owner_count_t *e = buckets[i];
            buckets[i] = e->next;
            sl_free(e);
        }
    }
    pthread_mutex_unlock(&mu);
}
