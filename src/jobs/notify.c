/* sluice - SPDX-License-Identifier: MIT
 *
 * Waking subscribers on their own worker: one inbox per worker loop (a
 * mutex-guarded queue of subscribers plus an ev_async). A producer, under
 * the job's shard lock, queues the subscriber once (coalesced) and sends
 * the async; the worker pops subscribers one at a time and runs their
 * callbacks. Lock order: shard, then inbox.
 */
#include "jobs_int.h"

typedef struct sl_jobs_inbox {
    pthread_mutex_t mu;
    ev_async async;
    struct ev_loop *loop;
    sl_jobs_sub_t *head, *tail;
} inbox_t;

static pthread_mutex_t inboxes_mu = PTHREAD_MUTEX_INITIALIZER;
static inbox_t *inboxes[SL_JOBS_MAX_SLOTS];

/* One pop per lock: a callback may unsubscribe any other subscriber, and
 * the bound stops a callback that re-queues itself from spinning. */
static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    inbox_t *ib = w->data;
    for (int budget = 4096; budget > 0; budget--) {
        pthread_mutex_lock(&ib->mu);
        sl_jobs_sub_t *sub = ib->head;
        if (!sub) {
            pthread_mutex_unlock(&ib->mu);
            return;
        }
        ib->head = sub->inext;
        if (ib->head)
            ib->head->iprev = NULL;
        else
            ib->tail = NULL;
        sub->inext = sub->iprev = NULL;
        sub->queued = 0;
        pthread_mutex_unlock(&ib->mu);
        sub->cb(sub->arg);
    }
    ev_async_send(ib->loop, &ib->async); /* the rest next iteration */
}

struct sl_jobs_inbox *sl_jobs_inbox_get(struct ev_loop *loop, int slot)
{
    SL_ASSERT(slot >= 0 && slot < SL_JOBS_MAX_SLOTS);
    pthread_mutex_lock(&inboxes_mu);
    inbox_t *ib = inboxes[slot];
    if (!ib || ib->loop != loop) {
        /* First subscriber on this loop (a slot's old loop, from a unit
         * test, is simply forgotten: its subscribers are gone). */
        ib = sl_calloc(1, sizeof(*ib));
        pthread_mutex_init(&ib->mu, NULL);
        ib->loop = loop;
        ev_async_init(&ib->async, on_async);
        ib->async.data = ib;
        ev_async_start(loop, &ib->async);
        ev_unref(loop); /* an idle inbox must not keep the loop running */
        if (inboxes[slot]) {
            pthread_mutex_destroy(&inboxes[slot]->mu);
            sl_free(inboxes[slot]);
        }
        inboxes[slot] = ib;
    }
    pthread_mutex_unlock(&inboxes_mu);
    return ib;
}

void sl_jobs_notify(sl_jobs_sub_t *sub)
{
    inbox_t *ib = sub->inbox;
    pthread_mutex_lock(&ib->mu);
    int send = !sub->queued;
    if (send) {
        sub->queued = 1;
        sub->iprev = ib->tail;
        sub->inext = NULL;
        if (ib->tail)
            ib->tail->inext = sub;
        else
            ib->head = sub;
        ib->tail = sub;
    }
    pthread_mutex_unlock(&ib->mu);
    if (send)
        ev_async_send(ib->loop, &ib->async);
}

void sl_jobs_inbox_unqueue(sl_jobs_sub_t *sub)
{
    inbox_t *ib = sub->inbox;
    pthread_mutex_lock(&ib->mu);
    if (sub->queued) {
        if (sub->iprev)
            sub->iprev->inext = sub->inext;
        else
            ib->head = sub->inext;
        if (sub->inext)
            sub->inext->iprev = sub->iprev;
        else
            ib->tail = sub->iprev;
        sub->queued = 0;
    }
    pthread_mutex_unlock(&ib->mu);
}

/* After the workers are gone: their loops are destroyed, so the watchers
 * are not stopped, only the memory is released. */
void sl_jobs_inboxes_free(void)
{
    pthread_mutex_lock(&inboxes_mu);
    for (int i = 0; i < SL_JOBS_MAX_SLOTS; i++) {
        if (inboxes[i]) {
            pthread_mutex_destroy(&inboxes[i]->mu);
            sl_free(inboxes[i]);
            inboxes[i] = NULL;
        }
    }
    pthread_mutex_unlock(&inboxes_mu);
}
