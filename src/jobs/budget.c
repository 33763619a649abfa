/* sluice - SPDX-License-Identifier: MIT
 *
 * The global budget for retained event bytes (jobs.max_retained_bytes):
 * every job's retain_bytes alone would let 10,000 jobs pin 10 GiB. The
 * total is one atomic counter that the store moves as events come and go.
 * Past the budget, finished jobs lose their events oldest-ended first
 * (down to their END event, so readers get an explicit "dropped" range and
 * still see the end), then the job that is producing sheds its own older
 * events; new jobs are refused (503) while the total is over. So memory
 * stays within the budget plus about one event per live job.
 *
 * Lock order: shard, then budget (this file's mutex). The eviction loop
 * takes the budget lock alone, picks a victim, and only then its shard.
 */
#include "jobs_int.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static sl_jobs_job_t *head, *tail; /* finished jobs that still hold events */
static atomic_llong total;
static long long limit = 256LL << 20;

void sl_jobs_budget_init(long long max_bytes)
{
    limit = max_bytes;
    atomic_store(&total, 0);
}

void sl_jobs_budget_add(long long delta)
{
    atomic_fetch_add(&total, delta);
}

long long sl_jobs_budget_total(void)
{
    return atomic_load(&total);
}

int sl_jobs_budget_full(void)
{
    return atomic_load(&total) >= limit;
}

static void unlink_locked(sl_jobs_job_t *job)
{
    if (!job->in_ended)
        return;
    if (job->eprev)
        job->eprev->enext = job->enext;
    else
        head = job->enext;
    if (job->enext)
        job->enext->eprev = job->eprev;
    else
        tail = job->eprev;
    job->eprev = job->enext = NULL;
    job->in_ended = 0;
}

void sl_jobs_budget_ended(sl_jobs_job_t *job)
{
    pthread_mutex_lock(&mu);
    if (!job->in_ended) {
        sl_jobs_job_ref(job); /* the line's own: a victim is never freed under us */
        job->eprev = tail;
        job->enext = NULL;
        if (tail)
            tail->enext = job;
        else
            head = job;
        tail = job;
        job->in_ended = 1;
    }
    pthread_mutex_unlock(&mu);
}

void sl_jobs_budget_forget(sl_jobs_job_t *job)
{
    pthread_mutex_lock(&mu);
    int was = job->in_ended;
    unlink_locked(job);
    pthread_mutex_unlock(&mu);
    if (was)
        sl_jobs_job_unref(job);
}

void sl_jobs_budget_clear(void)
{
    for (;;) {
        pthread_mutex_lock(&mu);
        sl_jobs_job_t *j = head;
        if (j)
            unlink_locked(j);
        pthread_mutex_unlock(&mu);
        if (!j)
            break;
        sl_jobs_job_unref(j);
    }
}

void sl_jobs_budget_enforce(sl_jobs_job_t *self)
{
    while (atomic_load(&total) > limit) {
        pthread_mutex_lock(&mu);
        sl_jobs_job_t *victim = head;
        if (victim)
            unlink_locked(victim); /* the line's reference is now ours */
        pthread_mutex_unlock(&mu);
        if (!victim)
            break;
        sl_jobs_store_shed(victim);
        sl_jobs_job_unref(victim);
    }
    if (self && atomic_load(&total) > limit)
        sl_jobs_store_shed(self);
}
