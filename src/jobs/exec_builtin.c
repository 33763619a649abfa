/* sluice - SPDX-License-Identifier: MIT
 *
 * The "builtin" executor, kind "ticker": n data events of size bytes,
 * interval_ms apart (query parameters, bounded by the executor's
 * max_events, max_size and max_interval_ms). Event i's payload is
 * "tick <i>" padded with '.' to size-1 bytes and a newline, so a client
 * can check what it got. Runs on the jobs thread with one ev_timer.
 */
#include "jobs_int.h"
#include "../config.h"
#include "../query.h"
#include <stdio.h>

#define TICKS_PER_RUN 64 /* with interval 0: yield to the loop between batches */

typedef struct ticker_opts {
    int64_t max_events, max_size, max_interval_ms;
} ticker_opts_t;

typedef struct ticker_params {
    uint64_t n, size, interval_ms;
} ticker_params_t;

typedef struct ticker {
    ev_timer timer;
    sl_jobs_job_t *job;
    uint64_t i;
    uint8_t *buf;
} ticker_t;

static int parse(json_t *o, const char *p, void **opts, char *err, size_t errlen)
{
    static const char *const keys[] = {"kind", "max_events", "max_size", "max_interval_ms"};
    const char *kind;
    ticker_opts_t *t = sl_calloc(1, sizeof(*t));
    *opts = t;
    if (sl_jobs_check_keys(o, p, keys, SL_ARRAY_LEN(keys), err, errlen) ||
        sl_conf_get_str(o, p, "kind", "ticker", &kind, err, errlen) ||
        sl_conf_get_int(o, p, "max_events", 10000, 1, 10000000, &t->max_events, err, errlen) ||
        sl_conf_get_int(o, p, "max_size", 65536, 1, 1 << 20, &t->max_size, err, errlen) ||
        sl_conf_get_int(o, p, "max_interval_ms", 60000, 0, 3600000, &t->max_interval_ms, err,
                        errlen))
        return SL_EINVAL;
    if (strcmp(kind, "ticker") != 0) {
        snprintf(err, errlen, "%s.kind: must be \"ticker\"", p);
        return SL_EINVAL;
    }
    return 0;
}

static void free_opts(void *opts)
{
    sl_free(opts);
}

static int prepare(const sl_jobs_exec_def_t *x, sl_str_t query, void **params, char *err,
                   size_t errlen)
{
    const ticker_opts_t *o = x->opts;
    ticker_params_t *p = sl_calloc(1, sizeof(*p));
    const char *bad = NULL;
    if (sl_query_get_u64(query, "n", SL_MIN(10, (uint64_t)o->max_events), 1,
                         (uint64_t)o->max_events, &p->n))
        bad = "n";
    else if (sl_query_get_u64(query, "size", SL_MIN(16, (uint64_t)o->max_size), 1,
                              (uint64_t)o->max_size, &p->size))
        bad = "size";
    else if (sl_query_get_u64(query, "interval_ms", SL_MIN(100, (uint64_t)o->max_interval_ms), 0,
                              (uint64_t)o->max_interval_ms, &p->interval_ms))
        bad = "interval_ms";
    if (bad) {
        snprintf(err, errlen,
                 "query parameter %s: must be a number in range (n <= %lld, size <= "
                 "%lld, interval_ms <= %lld)",
                 bad, (long long)o->max_events, (long long)o->max_size,
                 (long long)o->max_interval_ms);
        sl_free(p);
        return SL_EINVAL;
    }
    *params = p;
    return 0;
}

static void fill(uint8_t *buf, size_t size, uint64_t i)
{
    char head[32];
    int n = snprintf(head, sizeof(head), "tick %llu", (unsigned long long)i);
    memset(buf, '.', size);
    memcpy(buf, head, SL_MIN((size_t)n, size));
    buf[size - 1] = '\n';
}

static void ticker_free(ticker_t *t)
{
    ev_timer_stop(sl_jobs_loop(), &t->timer);
    t->job->xdata = NULL;
    sl_free(t->buf);
    sl_free(t);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    ticker_t *t = w->data;
    const ticker_params_t *p = t->job->params;
    int batch = p->interval_ms ? 1 : TICKS_PER_RUN;
    while (batch-- > 0 && t->i < p->n) {
        fill(t->buf, p->size, ++t->i);
        sl_jobs_emit(t->job, SL_JOBS_EV_DATA, t->buf, p->size);
    }
    if (t->i < p->n)
        return; /* repeating timer */
    sl_jobs_job_t *job = t->job;
    ticker_free(t);
    sl_jobs_finish(job, SL_JOBS_SUCCEEDED, 0, NULL);
}

static int start(sl_jobs_job_t *job)
{
    const ticker_params_t *p = job->params;
    ticker_t *t = sl_calloc(1, sizeof(*t));
    t->job = job;
    t->buf = sl_malloc(p->size);
    double every = p->interval_ms ? (double)p->interval_ms / 1000.0 : 1e-6;
    /* The first tick comes one interval after start, like a clock. */
    ev_timer_init(&t->timer, on_tick, every, every);
    t->timer.data = t;
    ev_timer_start(sl_jobs_loop(), &t->timer);
    job->xdata = t;
    return 0;
}

static void cancel(sl_jobs_job_t *job, sl_jobs_state_t why)
{
    ticker_t *t = job->xdata;
    if (!t)
        return;
    ticker_free(t);
    sl_jobs_finish(job, why, -1, NULL);
}

const sl_jobs_executor_t sl_jobs_exec_builtin = {
    .type = "builtin",
    .parse = parse,
    .free_opts = free_opts,
    .prepare = prepare,
    .start = start,
    .cancel = cancel,
};
