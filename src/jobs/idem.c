/* sluice - SPDX-License-Identifier: MIT
 *
 * The Idempotency-Key table (draft-ietf-httpapi-idempotency-key-header):
 * key = owner "\n" route "\n" Idempotency-Key, so a key is scoped to one
 * owner on one route; each entry keeps the fingerprint of the request that
 * made the job, so the same key with another request is told apart (422).
 * A hash table sized at start from max_jobs: O(1) lookups, never a scan
 * under the lock. The store holds the lock across lookup and insert, so
 * concurrent first uses of one key create exactly one job.
 */
#include "jobs_int.h"
#include <stdio.h>

typedef struct idem {
    struct idem *next;
    sl_jobs_job_t *job; /* not referenced: removed before the job goes */
    char fp[SL_JOBS_FP_LEN + 1];
    char key[];
} idem_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static idem_t **buckets;
static size_t nbuckets; /* power of two */

static size_t bucket_of(const char *key)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 29)) & (nbuckets - 1);
}

void sl_jobs_idem_init(size_t expected)
{
    nbuckets = 64;
    while (nbuckets < expected && nbuckets < ((size_t)1 << 24))
        nbuckets <<= 1;
    buckets = sl_calloc(nbuckets, sizeof(*buckets));
}

void sl_jobs_idem_dispose(void)
{
    for (size_t i = 0; i < nbuckets; i++) {
        while (buckets[i]) {
            idem_t *e = buckets[i];
            buckets[i] = e->next;
            sl_free(e);
        }
    }
    sl_free(buckets);
    buckets = NULL;
    nbuckets = 0;
}

void sl_jobs_idem_lock(void)
{
    pthread_mutex_lock(&mu);
}

void sl_jobs_idem_unlock(void)
{
    pthread_mutex_unlock(&mu);
}

sl_jobs_job_t *sl_jobs_idem_find(const char *key, const char *fp, int *same)
{
    for (idem_t *e = buckets[bucket_of(key)]; e; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            *same = strcmp(e->fp, fp ? fp : "") == 0;
            return e->job;
        }
    }
    return NULL;
}

void sl_jobs_idem_insert(const char *key, const char *fp, sl_jobs_job_t *job)
{
    size_t n = strlen(key);
    idem_t *e = sl_malloc(sizeof(*e) + n + 1);
    memcpy(e->key, key, n + 1);
    snprintf(e->fp, sizeof(e->fp), "%s", fp ? fp : "");
    e->job = job;
    size_t b = bucket_of(key);
    e->next = buckets[b];
    buckets[b] = e;
}

void sl_jobs_idem_remove(const char *key, sl_jobs_job_t *job)
{
    pthread_mutex_lock(&mu);
    if (buckets) {
        for (idem_t **pp = &buckets[bucket_of(key)]; *pp; pp = &(*pp)->next) {
            if ((*pp)->job == job && strcmp((*pp)->key, key) == 0) {
                idem_t *e = *pp;
                *pp = e->next;
                sl_free(e);
                break;
            }
        }
    }
    pthread_mutex_unlock(&mu);
}
