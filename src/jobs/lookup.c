/* sluice - SPDX-License-Identifier: MIT
 *
 * Finding a job that may live in another instance (the Redis store). A
 * lookup starts on a worker, is answered on the jobs thread (rstore.c:
 * the job's hash, its retained events, then a mirror in the table) and
 * comes back through the worker's inbox like a subscriber's wake-up. Two
 * references: the worker's (dropped when the callback ran or on cancel)
 * and the jobs thread's (dropped once it has answered). The mutex orders
 * an answer against a cancel: after sl_jobs_lookup_cancel returns, the
 * lookup is never queued again, and it has left the inbox.
 */
#include "jobs_int.h"
#include <stdio.h>

struct sl_jobs_lookup {
    atomic_int refs;
    pthread_mutex_t mu;
    int cancelled, answered;
    sl_jobs_sub_t sub; /* the inbox entry (sub.job stays NULL) */
    char id[SL_JOBS_ID_LEN + 1];
    sl_jobs_job_t *job;
    int status;
    sl_jobs_found_fn cb;
    void *arg;
    /* a listing: its query and result */
    int is_list;
    sl_jobs_list_q_t q;
    char *route;
    sl_jobs_listed_fn lcb;
    sl_jobs_job_t **jobs;
    size_t n;
};

static void release(sl_jobs_lookup_t *l)
{
    if (atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    sl_jobs_job_unref(l->job);
    for (size_t i = 0; i < l->n; i++) /* a listing nobody took */
        sl_jobs_job_unref(l->jobs[i]);
    sl_free(l->jobs);
    sl_free(l->route);
    pthread_mutex_destroy(&l->mu);
    sl_free(l);
}

/* Worker loop, from the inbox. */
static void deliver(void *arg)
{
    sl_jobs_lookup_t *l = arg;
    if (l->is_list) {
        size_t n = l->n;
        l->n = 0; /* the callee's references now */
        l->lcb(l->arg, l->jobs, n, l->status);
        release(l);
        return;
    }
    sl_jobs_job_t *job = l->job;
    l->job = NULL; /* the callee's reference now */
    l->cb(l->arg, job, l->status);
    release(l);
}

static sl_jobs_lookup_t *lookup_new(struct ev_loop *loop, int slot, void *arg)
{
    sl_jobs_lookup_t *l = sl_calloc(1, sizeof(*l));
    atomic_init(&l->refs, 2);
    pthread_mutex_init(&l->mu, NULL);
    l->arg = arg;
    l->sub.cb = deliver;
    l->sub.arg = l;
    l->sub.inbox = sl_jobs_inbox_get(loop, slot);
    return l;
}

sl_jobs_lookup_t *sl_jobs_lookup(sl_str_t id, struct ev_loop *loop, int slot, sl_jobs_found_fn cb,
                                 void *arg, sl_jobs_job_t **job, int *status)
{
    int expired = 0;
    *job = sl_jobs_find(id, &expired);
    *status = *job ? SL_JOBS_FOUND : expired ? SL_JOBS_GONE : SL_JOBS_UNKNOWN;
    /* Not here, and it could be elsewhere: ids that are not ours in form
     * are not worth a round trip. */
    if (*job || expired || !sl_jobs_config()->store.redis || id.n != SL_JOBS_ID_LEN)
        return NULL;
    if (!sl_jobs_rstore_available()) {
        sl_jobs_stat_store_error();
        *status = SL_JOBS_UNAVAILABLE;
        return NULL;
    }
    sl_jobs_lookup_t *l = lookup_new(loop, slot, arg);
    memcpy(l->id, id.p, SL_JOBS_ID_LEN);
    l->cb = cb;
    sl_jobs_lifecycle_lookup(l);
    return l;
}

sl_jobs_lookup_t *sl_jobs_list_async(int state, const char *route, const char *owner,
                                     sl_str_t after, size_t max, struct ev_loop *loop, int slot,
                                     sl_jobs_listed_fn cb, void *arg, int *status)
{
    *status = SL_JOBS_FOUND;
    if (!owner || !owner[0] || !sl_jobs_config()->store.redis)
        return NULL;
    if (!sl_jobs_rstore_available()) {
        sl_jobs_stat_store_error();
        *status = SL_JOBS_UNAVAILABLE;
        return NULL;
    }
    sl_jobs_lookup_t *l = lookup_new(loop, slot, arg);
    l->is_list = 1;
    l->lcb = cb;
    l->q.state = state;
    l->route = route ? sl_strdup(route) : NULL;
    l->q.route = l->route;
    snprintf(l->q.owner, sizeof(l->q.owner), "%s", owner);
    snprintf(l->q.after, sizeof(l->q.after), "%.*s", (int)SL_MIN(after.n, (size_t)SL_JOBS_ID_LEN),
             after.p ? after.p : "");
    l->q.max = max;
    sl_jobs_lifecycle_lookup(l);
    return l;
}

const sl_jobs_list_q_t *sl_jobs_lookup_query(const sl_jobs_lookup_t *l)
{
    return l->is_list ? &l->q : NULL;
}

const char *sl_jobs_lookup_id(const sl_jobs_lookup_t *l)
{
    return l->id;
}

/* Jobs thread: job is a reference handed over (or NULL). */
void sl_jobs_lookup_done(sl_jobs_lookup_t *l, sl_jobs_job_t *job, int status)
{
    pthread_mutex_lock(&l->mu);
    SL_ASSERT(!l->answered);
    l->answered = 1;
    /* Stopping: the workers and their loops are gone. */
    if (l->cancelled || sl_jobs_is_stopping()) {
        pthread_mutex_unlock(&l->mu);
        sl_jobs_job_unref(job);
    } else {
        l->job = job;
        l->status = status;
        sl_jobs_notify(&l->sub);
        pthread_mutex_unlock(&l->mu);
    }
    release(l);
}

void sl_jobs_lookup_listed(sl_jobs_lookup_t *l, sl_jobs_job_t **jobs, size_t n, int status)
{
    l->jobs = jobs;
    l->n = n; /* released with l if nobody takes them */
    sl_jobs_lookup_done(l, NULL, status);
}

void sl_jobs_lookup_cancel(sl_jobs_lookup_t *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->cancelled = 1;
    pthread_mutex_unlock(&l->mu);
    sl_jobs_inbox_unqueue(&l->sub);
    release(l);
}
