/* sluice - SPDX-License-Identifier: MIT
 *
 * Job counters for a scrape (a metrics source, metrics.h). The store is
 * written from every worker and the jobs thread under shard locks, so the
 * counters are process-wide atomics (one fetch-add per submit, event,
 * subscription or end: off the per-request hot path of other handlers).
 * Names and meanings: docs/ops.md.
 */
#include "jobs_int.h"
#include "../config.h"
#include "../metrics.h"
#include <stdatomic.h>
#include <stdio.h>

#define NSTATES (SL_JOBS_EXPIRED + 1)

static atomic_ullong submitted, events, subscribers, ended[NSTATES], dropped, resumes, store_errors;

void sl_jobs_stat_store_error(void)
{
    atomic_fetch_add_explicit(&store_errors, 1, memory_order_relaxed);
}

void sl_jobs_stat_dropped(void)
{
    atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
}

void sl_jobs_note_resume(void)
{
    atomic_fetch_add_explicit(&resumes, 1, memory_order_relaxed);
}

void sl_jobs_stat_submitted(void)
{
    atomic_fetch_add_explicit(&submitted, 1, memory_order_relaxed);
}

void sl_jobs_stat_event(void)
{
    atomic_fetch_add_explicit(&events, 1, memory_order_relaxed);
}

void sl_jobs_stat_subscribers(int delta)
{
    atomic_fetch_add_explicit(&subscribers, (unsigned long long)(long long)delta,
                              memory_order_relaxed);
}

void sl_jobs_stat_ended(sl_jobs_state_t s)
{
    if ((int)s >= 0 && s < NSTATES)
        atomic_fetch_add_explicit(&ended[s], 1, memory_order_relaxed);
}

static unsigned long long get(atomic_ullong *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void source(sl_metrics_text_t *t, const struct sl_config *cfg)
{
    char l[256];
    const sl_jobs_execs_t *xs = sl_config_section(cfg, "executors");
    sl_metrics_head(t, "sluice_jobs_submitted_total", "counter", "Jobs created.");
    sl_metrics_printf(t, "sluice_jobs_submitted_total %llu\n", get(&submitted));
    sl_metrics_head(t, "sluice_jobs_finished_total", "counter", "Jobs that ended, by final state.");
    for (int s = SL_JOBS_SUCCEEDED; s < NSTATES; s++)
        if (s != SL_JOBS_EXPIRED)
            sl_metrics_printf(t, "sluice_jobs_finished_total{state=\"%s\"} %llu\n",
                              sl_jobs_state_name((sl_jobs_state_t)s), get(&ended[s]));
    sl_metrics_head(t, "sluice_jobs_admitted", "gauge",
                    "Jobs queued or running, by executor (bounded by concurrency + queue).");
    for (size_t i = 0; xs && i < xs->n; i++)
        sl_metrics_printf(t, "sluice_jobs_admitted{executor=\"%s\"} %ld\n",
                          sl_metrics_label(l, sizeof(l), xs->v[i].name),
                          atomic_load_explicit(&xs->v[i].admitted, memory_order_relaxed));
    sl_metrics_head(t, "sluice_jobs_running", "gauge", "Jobs running, by executor.");
    for (size_t i = 0; xs && i < xs->n; i++)
        sl_metrics_printf(t, "sluice_jobs_running{executor=\"%s\"} %ld\n",
                          sl_metrics_label(l, sizeof(l), xs->v[i].name),
                          atomic_load_explicit(&xs->v[i].m_running, memory_order_relaxed));
    sl_metrics_head(t, "sluice_jobs_queued", "gauge",
                    "Jobs waiting for a free slot of their executor (queue depth).");
    for (size_t i = 0; xs && i < xs->n; i++) {
        long a = atomic_load_explicit(&xs->v[i].admitted, memory_order_relaxed);
        long r = atomic_load_explicit(&xs->v[i].m_running, memory_order_relaxed);
        sl_metrics_printf(t, "sluice_jobs_queued{executor=\"%s\"} %ld\n",
                          sl_metrics_label(l, sizeof(l), xs->v[i].name), a > r ? a - r : 0);
    }
    sl_metrics_head(t, "sluice_jobs_events_total", "counter", "Job events recorded.");
    sl_metrics_printf(t, "sluice_jobs_events_total %llu\n", get(&events));
    sl_metrics_head(t, "sluice_jobs_events_dropped_total", "counter",
                    "Events dropped from a job's retention (retain_bytes, max_retained_bytes).");
    sl_metrics_printf(t, "sluice_jobs_events_dropped_total %llu\n", get(&dropped));
    sl_metrics_head(t, "sluice_jobs_resumes_total", "counter",
                    "Event streams started after an event (Last-Event-ID, from=).");
    sl_metrics_printf(t, "sluice_jobs_resumes_total %llu\n", get(&resumes));
    sl_metrics_head(t, "sluice_jobs_subscribers", "gauge", "Streams following a job now.");
    sl_metrics_printf(t, "sluice_jobs_subscribers %llu\n", get(&subscribers));
    sl_metrics_head(t, "sluice_jobs_retained_bytes", "gauge",
                    "Event bytes the job store holds (bounded by jobs.max_retained_bytes).");
    sl_metrics_printf(t, "sluice_jobs_retained_bytes %lld\n", sl_jobs_budget_total());
    if (!sl_jobs_config()->store.redis)
        return;
    sl_metrics_head(t, "sluice_jobs_store_up", "gauge",
                    "1 while the Redis store's command connection is up (jobs.store).");
    sl_metrics_printf(t, "sluice_jobs_store_up %d\n", sl_jobs_rstore_available());
    sl_metrics_head(t, "sluice_jobs_store_errors_total", "counter",
                    "Redis commands that failed or got no answer (the connection went away).");
    sl_metrics_printf(t, "sluice_jobs_store_errors_total %llu\n", get(&store_errors));
}

void sl_jobs_stats_register(void)
{
    sl_metrics_add_source(source);
}
