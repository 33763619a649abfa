/* sluice - SPDX-License-Identifier: MIT
 *
 * Job lifecycle and the jobs thread. Workers submit and cancel through a
 * mutex-guarded command list and an ev_async; the jobs thread owns its
 * libev loop, on which every executor runs (ticker timers, child process
 * pipes and pidfds), the FIFO queue per executor (concurrency limit) and
 * the TTL sweep. queued -> running -> succeeded | failed | cancelled |
 * timed_out, then expired.
 */
#include "jobs_int.h"
#include "../log.h"
#include "../proxy/proxy.h"
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

typedef enum cmd_kind { CMD_START, CMD_CANCEL, CMD_LOOKUP, CMD_BODY_FP } cmd_kind_t;

typedef struct cmd {
    cmd_kind_t kind;
    sl_jobs_job_t *job; /* referenced; NULL for a lookup */
    struct sl_jobs_lookup *lookup;
    struct cmd *next;
} cmd_t;

static struct lifecycle {
    int started;
    sl_jobs_cfg_t cfg;
    struct ev_loop *loop;
    pthread_t thread;
    ev_async wake;
    ev_timer sweep;
    pthread_mutex_t mu;
    cmd_t *head, *tail;
    atomic_int stopping;
} lc;

static const char *const state_names[] = {"queued",    "running",   "succeeded", "failed",
                                          "cancelled", "timed_out", "expired"};

const char *sl_jobs_ev_type_name(sl_jobs_ev_type_t t)
{
    switch (t) {
    case SL_JOBS_EV_STARTED: return "started";
    case SL_JOBS_EV_DATA: return "data";
    case SL_JOBS_EV_PROGRESS: return "progress";
    case SL_JOBS_EV_ERROR: return "error";
    case SL_JOBS_EV_END: return "end";
    }
    return "unknown";
}

sl_jobs_ev_type_t sl_jobs_ev_type_parse(const char *s, size_t n)
{
    for (int t = SL_JOBS_EV_STARTED; t <= SL_JOBS_EV_END; t++) {
        const char *name = sl_jobs_ev_type_name((sl_jobs_ev_type_t)t);
        if (strlen(name) == n && memcmp(name, s, n) == 0)
            return (sl_jobs_ev_type_t)t;
    }
    return 0;
}

const char *sl_jobs_state_name(sl_jobs_state_t s)
{
    return (unsigned)s < SL_ARRAY_LEN(state_names) ? state_names[s] : "unknown";
}

int sl_jobs_state_is_final(sl_jobs_state_t s)
{
    return s >= SL_JOBS_SUCCEEDED;
}

int sl_jobs_state_parse(sl_str_t s)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(state_names); i++)
        if (sl_str_eq(s, state_names[i]))
            return (int)i;
    return -1;
}

const sl_jobs_cfg_t *sl_jobs_config(void)
{
    return &lc.cfg;
}

int sl_jobs_is_stopping(void)
{
    return atomic_load(&lc.stopping);
}

struct ev_loop *sl_jobs_loop(void)
{
    return lc.loop;
}

static void post(cmd_kind_t kind, sl_jobs_job_t *job, struct sl_jobs_lookup *l)
{
    cmd_t *c = sl_malloc(sizeof(*c));
    c->kind = kind;
    c->job = job;
    c->lookup = l;
    c->next = NULL;
    if (job)
        sl_jobs_job_ref(job);
    pthread_mutex_lock(&lc.mu);
    if (lc.tail)
        lc.tail->next = c;
    else
        lc.head = c;
    lc.tail = c;
    pthread_mutex_unlock(&lc.mu);
    ev_async_send(lc.loop, &lc.wake);
}

/* timeout_s for executors that do not keep their own clock (exec does:
 * it needs SIGTERM then SIGKILL): the work is stopped like a cancel. */
static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    sl_jobs_job_t *job = w->data;
    if (job->finished || job->cancel_pending)
        return;
    job->cancel_pending = 1;
    job->exec->ops->cancel(job, SL_JOBS_TIMED_OUT);
}

static void arm_deadline(sl_jobs_job_t *job)
{
    const sl_jobs_exec_def_t *x = job->exec;
    if (x->timeout_s <= 0 || x->ops == &sl_jobs_exec_process)
        return;
    ev_timer_init(&job->deadline, on_deadline, x->timeout_s, 0.);
    job->deadline.data = job;
    ev_timer_start(lc.loop, &job->deadline);
}

static void start_job(sl_jobs_job_t *job)
{
    sl_jobs_exec_def_t *x = (sl_jobs_exec_def_t *)job->exec;
    job->started = 1;
    x->running++;
    atomic_store_explicit(&x->m_running, x->running, memory_order_relaxed);
    sl_jobs_set_running(job);
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"id\":\"%s\"}", job->id);
    sl_jobs_emit(job, SL_JOBS_EV_STARTED, body, (size_t)n);
    sl_jobs_job_ref(job); /* held while the executor works */
    if (x->ops->start(job) != 0)
        sl_jobs_finish(job, SL_JOBS_FAILED, -1, "executor could not start the job");
    else if (!job->finished)
        arm_deadline(job);
}

/* Start queued jobs while the executor has free slots. */
static void run_queue(sl_jobs_exec_def_t *x)
{
    while (x->qhead && x->running < x->concurrency) {
        sl_jobs_job_t *job = x->qhead;
        x->qhead = job->qnext;
        if (!x->qhead)
            x->qtail = NULL;
        job->qnext = NULL;
        job->queued_on_exec = 0;
        start_job(job);
        sl_jobs_job_unref(job); /* the queue's reference */
    }
}

void sl_jobs_emit_error(sl_jobs_job_t *job, const char *error)
{
    json_t *o = json_pack("{ss}", "error", error);
    char *s = json_dumps(o, JSON_COMPACT);
    sl_jobs_emit(job, SL_JOBS_EV_ERROR, s, strlen(s));
    free(s);
    json_decref(o);
}

/* An aborted job fails, whatever its work made of the truncated input. */
static sl_jobs_state_t outcome(sl_jobs_job_t *job, sl_jobs_state_t state, const char **error)
{
    if (!atomic_load(&job->aborted))
        return state;
    if (!*error)
        *error = atomic_load(&job->abort_reason);
    return SL_JOBS_FAILED;
}

/* The executor's slot and reference go; the next queued job may start. */
static void release_slot(sl_jobs_job_t *job)
{
    sl_jobs_exec_def_t *x = (sl_jobs_exec_def_t *)job->exec;
    x->running--;
    atomic_store_explicit(&x->m_running, x->running, memory_order_relaxed);
    atomic_fetch_sub(&x->admitted, 1);
    sl_jobs_job_unref(job); /* the executor's reference */
    if (!atomic_load(&lc.stopping))
        run_queue(x);
}

void sl_jobs_finish(sl_jobs_job_t *job, sl_jobs_state_t state, int exit_code, const char *error)
{
    SL_ASSERT(!job->finished);
    job->finished = 1;
    state = outcome(job, state, &error);
    ev_timer_stop(lc.loop, &job->deadline);
    if (error)
        sl_jobs_emit_error(job, error);
    sl_jobs_store_end(job, state, exit_code);
    if (!atomic_load(&lc.stopping))
        sl_jobs_ext_on_end(job);
    release_slot(job);
}

void sl_jobs_remote_ended(sl_jobs_job_t *job)
{
    sl_jobs_rstore_end(job);
    if (job->finished)
        return; /* never started here: end_unstarted did the rest */
    job->finished = 1;
    ev_timer_stop(lc.loop, &job->deadline);
    sl_jobs_stat_ended(job->state);
    if (!atomic_load(&lc.stopping))
        sl_jobs_ext_on_end(job);
    release_slot(job);
}

void sl_jobs_detach(sl_jobs_job_t *job)
{
    job->finished = 1;
    ev_timer_stop(lc.loop, &job->deadline);
    release_slot(job);
}

/* End a job that never started: cancelled (or failed, when aborted). */
static void end_unstarted(sl_jobs_exec_def_t *x, sl_jobs_job_t *job)
{
    const char *error = NULL;
    sl_jobs_state_t state = outcome(job, SL_JOBS_CANCELLED, &error);
    job->finished = 1;
    if (error)
        sl_jobs_emit_error(job, error);
    sl_jobs_store_end(job, state, -1);
    if (!atomic_load(&lc.stopping))
        sl_jobs_ext_on_end(job);
    atomic_fetch_sub(&x->admitted, 1);
}

static void cancel_queued(sl_jobs_exec_def_t *x, sl_jobs_job_t *job)
{
    for (sl_jobs_job_t **pp = &x->qhead, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->qnext) {
        if (*pp != job)
            continue;
        *pp = job->qnext;
        if (x->qtail == job)
            x->qtail = prev;
        break;
    }
    job->queued_on_exec = 0;
    end_unstarted(x, job);
    sl_jobs_job_unref(job); /* the queue's reference */
}

/* Into the executor's queue, unless cancelled while it was being made. */
static void admit(sl_jobs_exec_def_t *x, sl_jobs_job_t *job)
{
    if (job->cancel_early) {
        end_unstarted(x, job);
        return;
    }
    if (job->remote)
        sl_jobs_rstore_follow(job); /* every event comes back this way */
    sl_jobs_job_ref(job);
    job->queued_on_exec = 1;
    if (x->qtail)
        x->qtail->qnext = job;
    else
        x->qhead = job;
    x->qtail = job;
    run_queue(x);
}

void sl_jobs_lifecycle_stored(sl_jobs_job_t *job, const char *fail)
{
    sl_jobs_exec_def_t *x = (sl_jobs_exec_def_t *)job->exec;
    if (!fail) {
        admit(x, job);
    } else if (!*fail) { /* a duplicate: nobody was told its id */
        job->finished = 1;
        atomic_fetch_sub(&x->admitted, 1);
        sl_jobs_store_forget(job);
    } else {
        atomic_store(&job->abort_reason, fail);
        atomic_store(&job->aborted, 1);
        end_unstarted(x, job);
    }
}

static void do_cmd(cmd_t *c)
{
    if (c->kind == CMD_LOOKUP) {
        sl_jobs_rstore_lookup(c->lookup);
        sl_free(c);
        return;
    }
    sl_jobs_job_t *job = c->job;
    sl_jobs_exec_def_t *x = (sl_jobs_exec_def_t *)job->exec;
    if (c->kind == CMD_BODY_FP) {
        sl_jobs_rstore_body_fp(job);
    } else if (c->kind == CMD_START && lc.cfg.store.redis) {
        /* It runs once Redis has it (sl_jobs_lifecycle_stored): a job
         * refused there, or whose Idempotency-Key another job holds,
         * must not have started its work. */
        sl_jobs_rstore_create(job);
    } else if (job->mirror) {
        /* Another instance's job. Work at external workers is ended from
         * here, whether or not its maker is still there; a local
         * executor's is asked of its maker. */
        if (c->kind == CMD_CANCEL && !job->ended && job->remote)
            sl_jobs_rstore_end_remote(job, SL_JOBS_CANCELLED, NULL);
        else if (c->kind == CMD_CANCEL && !job->ended)
            sl_jobs_rstore_cancel(job);
    } else if (c->kind == CMD_START) {
        admit(x, job);
    } else if (!job->finished) {
        if (job->queued_on_exec)
            cancel_queued(x, job);
        else if (!job->started)
            job->cancel_early = 1; /* admit() ends it (CMD_START or Redis on the way) */
        else if (!job->cancel_pending) {
            /* Not cancel_pending for an unstarted job: timeout_s must
             * still work for one that started after all. */
            job->cancel_pending = 1;
            x->ops->cancel(job, atomic_load(&job->aborted) ? SL_JOBS_FAILED : SL_JOBS_CANCELLED);
        }
    }
    sl_jobs_job_unref(job);
    sl_free(c);
}

void sl_jobs_lifecycle_lookup(struct sl_jobs_lookup *l)
{
    post(CMD_LOOKUP, NULL, l);
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    SL_UNUSED(w);
    SL_UNUSED(revents);
    pthread_mutex_lock(&lc.mu);
    cmd_t *c = lc.head;
    lc.head = lc.tail = NULL;
    pthread_mutex_unlock(&lc.mu);
    while (c) {
        cmd_t *next = c->next;
        do_cmd(c);
        c = next;
    }
    if (atomic_load(&lc.stopping))
        ev_break(loop, EVBREAK_ALL);
}

static void on_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(w);
    SL_UNUSED(revents);
    sl_jobs_store_sweep(sl_wall_ms());
}

static void *thread_main(void *arg)
{
    SL_UNUSED(arg);
    sl_proxy_client_bind(lc.loop); /* the upstream executor's and observers' clients */
    ev_run(lc.loop, 0);
    return NULL;
}

int sl_jobs_start(const sl_jobs_cfg_t *cfg)
{
    SL_ASSERT(!lc.started);
    memset(&lc, 0, sizeof(lc));
    if (cfg) {
        lc.cfg = *cfg;
        /* the section is freed with its snapshot after a reload */
        lc.cfg.admin_token = cfg->admin_token ? sl_strdup(cfg->admin_token) : NULL;
    } else
        sl_jobs_config_defaults(&lc.cfg);
    if (sl_jobs_store_init(&lc.cfg) != 0)
        return SL_ERROR;
    pthread_mutex_init(&lc.mu, NULL);
    lc.loop = ev_loop_new(EVFLAG_AUTO);
    if (!lc.loop)
        return SL_ERROR;
    ev_async_init(&lc.wake, on_wake);
    ev_async_start(lc.loop, &lc.wake);
    double every = lc.cfg.ttl_s < 2 ? 0.2 : 1.0; /* expiry is at most this late */
    ev_timer_init(&lc.sweep, on_sweep, every, every);
    ev_timer_start(lc.loop, &lc.sweep);
    if (lc.cfg.store.redis && sl_jobs_rstore_start(lc.loop, &lc.cfg) != 0)
        return SL_ERROR;
    if (pthread_create(&lc.thread, NULL, thread_main, NULL) != 0) {
        ev_loop_destroy(lc.loop);
        return SL_ERROR;
    }
    lc.started = 1;
    return 0;
}

/* Cancel whatever still runs: executors stop their work synchronously
 * here (the loop has stopped), kill and reap children. */
static void stop_all(void)
{
    sl_jobs_job_t **all;
    size_t n = sl_jobs_store_all(&all);
    for (size_t i = 0; i < n; i++) {
        sl_jobs_job_t *job = all[i];
        sl_jobs_exec_def_t *x = (sl_jobs_exec_def_t *)job->exec;
        int ours = !job->mirror && !job->finished; /* a mirror runs elsewhere */
        if (ours && job->queued_on_exec)
            cancel_queued(x, job);
        else if (ours && job->state == SL_JOBS_RUNNING)
            x->ops->cancel(job, SL_JOBS_CANCELLED);
        sl_jobs_job_unref(job);
    }
    sl_free(all);
}

void sl_jobs_stop(void)
{
    if (!lc.started)
        return;
    atomic_store(&lc.stopping, 1);
    ev_async_send(lc.loop, &lc.wake);
    pthread_join(lc.thread, NULL);
    on_wake(lc.loop, &lc.wake, 0); /* commands posted late */
    sl_jobs_ext_on_stop();
    stop_all();
    sl_jobs_rstore_stop();
    ev_timer_stop(lc.loop, &lc.sweep);
    ev_async_stop(lc.loop, &lc.wake);
    ev_loop_destroy(lc.loop);
    sl_jobs_store_dispose();
    sl_jobs_inboxes_free();
    pthread_mutex_destroy(&lc.mu);
    sl_jobs_config_dispose(&lc.cfg);
    lc.started = 0;
}

int sl_jobs_submit(const sl_jobs_spec_t *spec, sl_jobs_job_t **out, int *existing, int *stdin_fd,
                   char *err, size_t errlen)
{
    sl_jobs_exec_def_t *x = (sl_jobs_exec_def_t *)spec->exec;
    void *params = NULL;
    *stdin_fd = -1;
    *existing = 0;
    if (x->ops->prepare && x->ops->prepare(x, spec->query, &params, err, errlen) != 0)
        return SL_EINVAL;
    if (!sl_jobs_rstore_available()) {
        sl_free(params);
        snprintf(err, errlen, "job store unavailable (Redis)");
        return SL_EAGAIN;
    }
    /* Admission first: a full queue answers 503 without creating a job. */
    if (atomic_fetch_add(&x->admitted, 1) >= x->concurrency + x->queue) {
        atomic_fetch_sub(&x->admitted, 1);
        sl_free(params);
        snprintf(err, errlen, "executor %s: queue full", x->name);
        return SL_EAGAIN;
    }
    sl_jobs_job_t *job;
    int rv = sl_jobs_store_create(spec, params, &job, existing);
    if (rv != 0 || *existing) {
        atomic_fetch_sub(&x->admitted, 1);
        sl_free(params);
        if (rv != 0)
            snprintf(err, errlen, "%s",
                     rv == SL_ELIMIT      ? "too many live jobs for this owner"
                     : rv == SL_ECONFLICT ? "Idempotency-Key already used for a different request"
                     : rv == SL_ENOMEM    ? "job event memory full (jobs.max_retained_bytes)"
                                          : "too many jobs");
        if (rv == 0)
            *out = job;
        return rv;
    }
    /* A child process or an upstream reads a body; the ticker ignores it. */
    if (spec->want_stdin && x->ops != &sl_jobs_exec_builtin) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) == 0) {
            fcntl(fds[1], F_SETFL, O_NONBLOCK);
            job->stdin_fd = fds[0];
            *stdin_fd = fds[1];
        }
    }
    *out = job;
    sl_jobs_lifecycle_enqueue(job);
    return 0;
}

void sl_jobs_lifecycle_enqueue(sl_jobs_job_t *job)
{
    post(CMD_START, job, NULL);
}

void sl_jobs_lifecycle_body_fp(sl_jobs_job_t *job)
{
    if (lc.started && !atomic_load(&lc.stopping))
        post(CMD_BODY_FP, job, NULL);
}

void sl_jobs_cancel(sl_jobs_job_t *job)
{
    if (lc.started && !atomic_load(&lc.stopping))
        post(CMD_CANCEL, job, NULL);
}

void sl_jobs_abort(sl_jobs_job_t *job, const char *reason)
{
    atomic_store(&job->abort_reason, reason);
    if (atomic_exchange(&job->aborted, 1))
        return;
    sl_jobs_cancel(job);
}

int sl_jobs_is_aborted(const sl_jobs_job_t *job)
{
    return atomic_load(&((sl_jobs_job_t *)job)->aborted);
}
