/* sluice - SPDX-License-Identifier: MIT
 *
 * Private to src/jobs/: the job object, the executor vtable every
 * exec_<name>.c fills in, and the calls executors and the jobs thread use
 * to publish events. Unit tests reach the store through this header.
 */
#ifndef SL_JOBS_INT_H
#define SL_JOBS_INT_H

#include "jobs.h"
#include <pthread.h>

#define SL_JOBS_EVENT_OVERHEAD 64 /* counted per event against retain_bytes */
#define SL_JOBS_MAX_SLOTS 256     /* worker inboxes */

/* An executor type. parse/free_opts run at config load; prepare on the
 * submitting thread (validate request parameters); start and cancel on the
 * jobs thread. start returns 0 once the work is under way (events follow)
 * or an error, after which the job is failed. cancel must lead to
 * sl_jobs_finish, at once or later. */
typedef struct sl_jobs_executor {
    const char *type;
    int (*parse)(json_t *obj, const char *path, void **opts, char *err, size_t errlen);
    void (*free_opts)(void *opts);
    int (*prepare)(const sl_jobs_exec_def_t *x, sl_str_t query, void **params, char *err,
                   size_t errlen);
    int (*start)(sl_jobs_job_t *job);
    void (*cancel)(sl_jobs_job_t *job, sl_jobs_state_t why);
    int keeps_headers; /* the job keeps the request's header fields */
    /* The work runs elsewhere (redis): the job's events are written to
     * Redis and come back through the follower, like a mirror's. */
    int remote;
} sl_jobs_executor_t;

extern const sl_jobs_executor_t sl_jobs_exec_redis;

extern const sl_jobs_executor_t sl_jobs_exec_builtin, sl_jobs_exec_process, sl_jobs_exec_upstream;

struct sl_jobs_exec_def {
    char *name;
    const sl_jobs_executor_t *ops;
    void *opts;
    char *content_type;
    int64_t concurrency, queue;       /* running at once; waiting beyond that */
    double timeout_s;                 /* 0 = none */
    double grace_s;                   /* SIGTERM -> SIGKILL */
    void *ext[SL_JOBS_MAX_EXEC_KEYS]; /* other modules' keys (ext.c) */
    atomic_long admitted;             /* queued + running, checked on submit */
    atomic_long m_running;            /* `running`, published for a scrape */
    /* jobs thread only */
    long running;
    sl_jobs_job_t *qhead, *qtail;
};

/* Executor parse helper: every key of obj must be a common executor key
 * or one of names; else "path.key: unknown key" and SL_EINVAL. */
int sl_jobs_check_keys(json_t *obj, const char *path, const char *const *names, size_t n, char *err,
                       size_t errlen);

typedef struct sl_jobs_execs {
    sl_jobs_exec_def_t *v;
    size_t n;
} sl_jobs_execs_t;

struct sl_jobs_sub {
    sl_jobs_job_t *job;
    struct sl_jobs_inbox *inbox;
    void (*cb)(void *arg);
    void *arg;
    sl_jobs_sub_t *prev, *next;   /* job's list (shard lock) */
    sl_jobs_sub_t *iprev, *inext; /* inbox queue (inbox lock) */
    int queued;
};

struct sl_jobs_job {
    atomic_int refs;
    char id[SL_JOBS_ID_LEN + 1];
    char owner[SL_JOBS_OWNER_LEN + 1]; /* "" when none */
    atomic_int aborted;                /* sl_jobs_abort: the input was cut */
    char body_fp[SL_JOBS_FP_LEN + 1];  /* shard lock: the body's SHA-256, "" until whole */
    const char *_Atomic abort_reason;
    unsigned shard;
    sl_jobs_job_t *hnext; /* shard hash chain */
    /* immutable after submit */
    const sl_jobs_exec_def_t *exec;
    const struct sl_config *cfg; /* a reference: exec lives there (NULL in unit tests) */
    char *route, *method, *path, *traceparent;
    char *idem, *idem_fp;       /* Idempotency-Key: owner \n route \n key, and the request's fp */
    char *headers;              /* "name: value\r\n"... (keeps_headers executors), else NULL */
    struct sl_header *recorded; /* one block: the array, then the strings */
    size_t nrecorded;
    void *params; /* executor's parsed request parameters */
    int stdin_fd; /* read end for the child, -1 when none (jobs thread) */
    /* under the shard lock */
    sl_jobs_state_t state;
    uint64_t created_ms, started_ms, ended_ms;
    int exit_code;
    sl_jobs_event_t **ring;
    size_t ring_cap, ring_head, ring_n;
    size_t retained;
    uint64_t next_seq, dropped_upto, data_bytes;
    int ended; /* END appended */
    sl_jobs_sub_t *subs;
    /* jobs thread only */
    sl_jobs_job_t *qnext;
    void *xdata; /* executor's running state */
    int cancel_pending;
    int started;      /* the executor took it (start_job) */
    int cancel_early; /* cancelled before it started: end at CMD_START */
    int finished;
    int queued_on_exec;
    ev_timer deadline; /* timeout_s for executors without their own (not exec) */
    /* finished jobs holding events, oldest-ended first (budget.c's lock) */
    sl_jobs_job_t *eprev, *enext;
    int in_ended;
    /* The Redis store (rstore.c): a mirror is another instance's job,
     * its events read from Redis; it has no executor here. persist: 1
     * stored (or memory store), 0 being written, -1 the write failed. */
    int mirror, adopted; /* adopted: the mirror is in the table */
    int remote;          /* events authored in Redis (a remote executor's) */
    atomic_int persist;
    char *dup; /* SL_JOBS_PERSIST_DUP: Redis's "id fp [body_fp]" for the key (set before persist) */
    char *xname, *ctype; /* a mirror's executor name and content type */
    /* result delivery outcome (shard lock): attempts 0 = none yet */
    int delivery_status, delivery_attempts;
    char delivery_error[SL_JOBS_DELIVERY_ERROR_MAX]; /* "" when none */
};

/* ---- request header fields an executor sends on (fields.c) ---- */
typedef struct sl_jobs_fields {
    char **v; /* lower-case names */
    size_t n;
} sl_jobs_fields_t;
/* An executor's "headers" array (absent: content-type, accept,
 * user-agent); hop-by-hop names and host are refused. */
int sl_jobs_fields_parse(json_t *a, const char *p, sl_jobs_fields_t *f, char *err, size_t errlen);
void sl_jobs_fields_free(sl_jobs_fields_t *f);
/* fn(arg, line, name_len, line_len) for each "name: value" line of a
 * job's headers whose name is in f (line_len without the CRLF). */
typedef void (*sl_jobs_field_fn)(void *arg, const char *line, size_t name_len, size_t line_len);
void sl_jobs_fields_each(const sl_jobs_fields_t *f, const char *headers, sl_jobs_field_fn fn,
                         void *arg);
/* An executor's prepare that keeps the query as the job's params. */
int sl_jobs_prepare_query(const sl_jobs_exec_def_t *x, sl_str_t query, void **params, char *err,
                          size_t errlen);

/* ---- store (store.c) ---- */
int sl_jobs_store_init(const sl_jobs_cfg_t *cfg);
void sl_jobs_store_dispose(void);
/* Create and insert a job (state queued); see sl_jobs_submit. */
int sl_jobs_store_create(const sl_jobs_spec_t *spec, void *params, sl_jobs_job_t **out,
                         int *existing);
/* Append an event (copied) and wake subscribers. type END also sets the
 * final state. Returns the new seq, or 0 after END. */
uint64_t sl_jobs_emit(sl_jobs_job_t *job, sl_jobs_ev_type_t type, const void *data, size_t len);
void sl_jobs_set_running(sl_jobs_job_t *job);
/* Set the final state and exit code, then append END (jobs thread). */
void sl_jobs_store_end(sl_jobs_job_t *job, sl_jobs_state_t state, int exit_code);
/* The END event's data, {"state":...,"exit_code":...}; returns its length. */
#define SL_JOBS_END_BODY_MAX 64
size_t sl_jobs_end_body(char *out, size_t cap, sl_jobs_state_t state, int exit_code);
/* Move finished jobs past their TTL to the tombstone set (jobs thread). */
void sl_jobs_store_sweep(uint64_t now_ms);
/* Every live job, referenced, for shutdown (caller frees the array). */
size_t sl_jobs_store_all(sl_jobs_job_t ***out);
void sl_jobs_job_free(sl_jobs_job_t *job);

/* ---- mirrors of jobs held in Redis (store.c, for rstore.c) ---- */
typedef struct sl_jobs_mirror_meta {
    const char *id, *owner, *route, *executor, *content_type, *method, *path, *traceparent;
    json_t *recorded; /* object name -> value, or NULL */
    sl_jobs_state_t state;
    uint64_t created_ms, started_ms, ended_ms;
    int exit_code;
    int remote; /* its work runs at external workers (the redis executor) */
} sl_jobs_mirror_meta_t;
/* A new mirror (one reference, not in the table yet). */
sl_jobs_job_t *sl_jobs_store_mirror_new(const sl_jobs_mirror_meta_t *m);
/* Put the mirror into the table. Returns the job the table holds for its
 * id (a reference: this one, or one that got there first), or NULL when
 * max_jobs is reached. */
sl_jobs_job_t *sl_jobs_store_adopt(sl_jobs_job_t *job);
/* Add an event read from Redis at its own seq (a gap is recorded as
 * dropped); STARTED and END move the mirror's state. Returns 1 once END
 * is in. */
int sl_jobs_store_put(sl_jobs_job_t *job, uint64_t seq, sl_jobs_ev_type_t type, const void *data,
                      size_t len);
/* The write of a new job to Redis finished: 1, or SL_JOBS_PERSIST_*
 * (sl_jobs_persisted); wakes readers. */
void sl_jobs_store_persisted(sl_jobs_job_t *job, int result);
/* Take a job whose key another job holds (SL_JOBS_PERSIST_DUP) out of
 * the table, its share and its Idempotency-Key entry (jobs thread). */
void sl_jobs_store_forget(sl_jobs_job_t *job);
/* Jobs thread: Redis answered a new job's write. fail NULL: it is stored
 * and goes to its executor; else it never runs and ends failed with that
 * reason ("" for a duplicate: it is forgotten without an end). */
void sl_jobs_lifecycle_stored(sl_jobs_job_t *job, const char *fail);
/* Any thread: the body's digest is known; Redis gets it (jobs thread). */
void sl_jobs_lifecycle_body_fp(sl_jobs_job_t *job);
/* Parse "started".."end"; 0 when unknown. */
sl_jobs_ev_type_t sl_jobs_ev_type_parse(const char *s, size_t n);

/* ---- the Redis store (rstore.c, jobs thread unless said) ---- */
int sl_jobs_rstore_start(struct ev_loop *loop, const sl_jobs_cfg_t *cfg);
void sl_jobs_rstore_stop(void);
/* Any thread: whether new jobs can be stored now. */
int sl_jobs_rstore_available(void);
void sl_jobs_rstore_create(sl_jobs_job_t *job);
/* The body's digest joins the job's Idempotency-Key entry. */
void sl_jobs_rstore_body_fp(sl_jobs_job_t *job);
void sl_jobs_rstore_event(sl_jobs_job_t *job, const sl_jobs_event_t *ev);
void sl_jobs_rstore_end(sl_jobs_job_t *job);
/* A remote job's event: appended to its stream (entry id 0-*); it
 * reaches the local table through the follower. */
void sl_jobs_rstore_append(sl_jobs_job_t *job, sl_jobs_ev_type_t type, const void *data,
                           size_t len);
/* End a remote job from here (cancel, timeout, a failure before a
 * worker got it): the end goes into its stream, and the hash's cancel
 * flag stops a worker that holds it. */
void sl_jobs_rstore_end_remote(sl_jobs_job_t *job, sl_jobs_state_t state, const char *error);
/* Start following a remote job's stream (at its CMD_START). */
void sl_jobs_rstore_follow(sl_jobs_job_t *job);
/* Ask the instance running a mirrored job to cancel it. */
void sl_jobs_rstore_cancel(sl_jobs_job_t *job);
/* Look id up in Redis (sl_jobs_lookup's far half). */
void sl_jobs_rstore_lookup(struct sl_jobs_lookup *l);
/* What a listing asks (sl_jobs_list_async), copied into its lookup. */
typedef struct sl_jobs_list_q {
    int state;
    const char *route; /* NULL: any */
    char owner[SL_JOBS_OWNER_LEN + 1];
    char after[SL_JOBS_ID_LEN + 1];
    size_t max;
} sl_jobs_list_q_t;
/* The listing's query, or NULL for a lookup of one id. */
const sl_jobs_list_q_t *sl_jobs_lookup_query(const struct sl_jobs_lookup *l);
/* A listing's outcome (jobs: references, an array the lookup frees). */
void sl_jobs_lookup_listed(struct sl_jobs_lookup *l, sl_jobs_job_t **jobs, size_t n, int status);
/* A lookup's outcome goes back to its worker (lookup.c). */
void sl_jobs_lookup_done(struct sl_jobs_lookup *l, sl_jobs_job_t *job, int status);
const char *sl_jobs_lookup_id(const struct sl_jobs_lookup *l);
/* Hand a lookup to the jobs thread (lifecycle.c). */
void sl_jobs_lifecycle_lookup(struct sl_jobs_lookup *l);

/* ---- counters for the metrics source (stats.c) ---- */
void sl_jobs_stat_submitted(void);
void sl_jobs_stat_event(void);
void sl_jobs_stat_subscribers(int delta);
void sl_jobs_stat_ended(sl_jobs_state_t s);
void sl_jobs_stat_dropped(void);
void sl_jobs_stat_store_error(void); /* a Redis command failed */
/* Add the jobs families to every scrape (at configuration load). */
void sl_jobs_stats_register(void);

/* ---- the global retained-bytes budget (budget.c) ---- */
void sl_jobs_budget_init(long long max_bytes);
/* The store's retained bytes moved by delta (any lock). */
void sl_jobs_budget_add(long long delta);
long long sl_jobs_budget_total(void);
/* At or over the budget: new jobs are refused. */
int sl_jobs_budget_full(void);
/* job finished holding events: in line to lose them, oldest first; the
 * line holds a reference. */
void sl_jobs_budget_ended(sl_jobs_job_t *job);
/* Out of the line (the job expired: nothing left worth shedding). Call
 * with no lock held: it drops the line's reference. */
void sl_jobs_budget_forget(sl_jobs_job_t *job);
/* Shutdown: empty the line. */
void sl_jobs_budget_clear(void);
/* Over the budget: shed finished jobs' events, then self's (NULL: none).
 * Call with no lock held. */
void sl_jobs_budget_enforce(sl_jobs_job_t *self);
/* Drop every event of job but the newest, recording the dropped range
 * (store.c; takes the shard lock). */
void sl_jobs_store_shed(sl_jobs_job_t *job);

/* ---- Idempotency-Key table (idem.c) ---- */
void sl_jobs_idem_init(size_t expected);
void sl_jobs_idem_dispose(void);
/* The lock the store holds across find and insert. */
void sl_jobs_idem_lock(void);
void sl_jobs_idem_unlock(void);
/* Under the lock: the job made under key, or NULL; *same says whether it
 * was made by a request with fingerprint fp. */
sl_jobs_job_t *sl_jobs_idem_find(const char *key, const char *fp, int *same);
void sl_jobs_idem_insert(const char *key, const char *fp, sl_jobs_job_t *job);
/* Takes the lock itself. */
void sl_jobs_idem_remove(const char *key, sl_jobs_job_t *job);

/* ---- live jobs per owner (owners.c) ---- */
/* Count a new live job of owner ("" / NULL: not counted). Returns 0, or
 * SL_ETOOBIG when the owner already has max. */
int sl_jobs_owners_take(const char *owner, long max);
void sl_jobs_owners_release(const char *owner);
void sl_jobs_owners_clear(void);

/* ---- notification (notify.c) ---- */
void sl_jobs_notify(sl_jobs_sub_t *sub); /* shard lock held */
void sl_jobs_inbox_unqueue(sl_jobs_sub_t *sub);
struct sl_jobs_inbox *sl_jobs_inbox_get(struct ev_loop *loop, int slot);
void sl_jobs_inboxes_free(void);

/* ---- extensions (ext.c) ---- */
/* The registered executor keys' names into out; returns the count. */
size_t sl_jobs_ext_key_names(const char **out, size_t cap);
/* Parse the registered keys present in an executor object into x->ext. */
int sl_jobs_ext_parse(json_t *obj, const char *path, sl_jobs_exec_def_t *x, char *err,
                      size_t errlen);
void sl_jobs_ext_free(sl_jobs_exec_def_t *x);
/* Jobs thread: a job reached its final state / the thread stops. */
void sl_jobs_ext_on_end(sl_jobs_job_t *job);
void sl_jobs_ext_on_stop(void);

/* ---- lifecycle (lifecycle.c, jobs thread) ---- */
/* Hand a new job to the jobs thread. */
void sl_jobs_lifecycle_enqueue(sl_jobs_job_t *job);
/* Executors report the end of the work: emits END with state/exit code,
 * frees the executor slot and starts the next queued job. */
void sl_jobs_finish(sl_jobs_job_t *job, sl_jobs_state_t state, int exit_code, const char *error);
/* An ERROR event {"error": error}. */
void sl_jobs_emit_error(sl_jobs_job_t *job, const char *error);
/* A remote job's END came back (jobs thread): its slot is freed and
 * observers run, as sl_jobs_finish does for local work. */
void sl_jobs_remote_ended(sl_jobs_job_t *job);
/* Stopping: let go of a remote job without ending it (it goes on
 * elsewhere); frees its slot and the executor's reference. */
void sl_jobs_detach(sl_jobs_job_t *job);
/* True during sl_jobs_stop: cancel must then end the work synchronously. */
int sl_jobs_is_stopping(void);
/* Wipe and free what a jobs section owns (the struct itself stays). */
void sl_jobs_config_dispose(sl_jobs_cfg_t *c);

#endif
