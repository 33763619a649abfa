/* sluice - SPDX-License-Identifier: MIT
 *
 * A snapshot's lifetime across reloads (see config.h): two counts, and a
 * queue the main thread empties. `live` covers what runs on the workers'
 * loops (their per-worker state must be dropped there, loop running);
 * `refs` covers what only needs the snapshot's memory. The queue is
 * touched at most twice per snapshot, so one mutex is enough.
 */
#include "config.h"
#include <pthread.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static sl_config_t *head, *tail;

static void enqueue(const sl_config_t *c, int stage)
{
    sl_config_t *cfg = (sl_config_t *)c;
    pthread_mutex_lock(&mu);
    cfg->stage = stage;
    cfg->next_retired = NULL;
    if (tail)
        tail->next_retired = cfg;
    else
        head = cfg;
    tail = cfg;
    pthread_mutex_unlock(&mu);
}

void sl_config_hold(const sl_config_t *cfg)
{
    atomic_fetch_add_explicit(&((sl_config_t *)cfg)->live, 1, memory_order_relaxed);
}

void sl_config_release(const sl_config_t *cfg)
{
    if (atomic_fetch_sub_explicit(&((sl_config_t *)cfg)->live, 1, memory_order_acq_rel) == 1)
        enqueue(cfg, SL_CONFIG_RETIRE);
}

void sl_config_ref(const sl_config_t *cfg)
{
    atomic_fetch_add_explicit(&((sl_config_t *)cfg)->refs, 1, memory_order_relaxed);
}

void sl_config_unref(const sl_config_t *cfg)
{
    if (atomic_fetch_sub_explicit(&((sl_config_t *)cfg)->refs, 1, memory_order_acq_rel) == 1)
        enqueue(cfg, SL_CONFIG_FREE);
}

sl_config_t *sl_config_next_retired(void)
{
    pthread_mutex_lock(&mu);
    sl_config_t *cfg = head;
    if (cfg) {
        head = cfg->next_retired;
        if (!head)
            tail = NULL;
        cfg->next_retired = NULL;
    }
    pthread_mutex_unlock(&mu);
    return cfg;
}

void sl_config_expect_acks(sl_config_t *cfg, int n)
{
    atomic_store(&cfg->acks, n + 1);
}

void sl_config_ack(sl_config_t *cfg)
{
    if (atomic_fetch_sub_explicit(&cfg->acks, 1, memory_order_acq_rel) == 1)
        sl_config_unref(cfg); /* the one `live` stood for */
}
