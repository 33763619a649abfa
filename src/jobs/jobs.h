/* sluice - SPDX-License-Identifier: MIT
 *
 * Jobs: long requests become job IDs whose events any stream can read. This
 * is the public face of src/jobs/: the "jobs" and "executors" config
 * sections, submitting and cancelling jobs, reading a job's events from a
 * sequence number, subscribing to be woken when there are new ones, and
 * listing. It knows nothing of how events travel (reply/ does that) and
 * includes no protocol header. Design: docs/jobs.md.
 *
 * Ownership and threads:
 *
 *   store (process-wide, sharded; each shard under its own mutex)
 *     shard[i] -> hash of sl_jobs_job_t (the table holds one reference)
 *   job -> retained events  [seq first .. last]   each an immutable,
 *          refcounted sl_jobs_event_t; the oldest are dropped past
 *          retain_bytes (a reader asking for them is told the range)
 *   job -> subscribers: a callback run on the subscriber's own worker
 *          loop (a per-worker mutex-guarded inbox + ev_async)
 *   jobs thread: its own libev loop runs every executor (timers, child
 *          processes), the queue per executor and the TTL sweep.
 *
 * Streams reference jobs (sl_jobs_job_ref/unref), never own them.
 */
#ifndef SL_JOBS_H
#define SL_JOBS_H

#include "../sl.h"
#include <ev.h>
#include <jansson.h>
#include <stdatomic.h>

typedef struct sl_jobs_job sl_jobs_job_t;
typedef struct sl_jobs_sub sl_jobs_sub_t;
typedef struct sl_jobs_exec_def sl_jobs_exec_def_t;

typedef enum sl_jobs_state {
    SL_JOBS_QUEUED = 0,
    SL_JOBS_RUNNING,
    SL_JOBS_SUCCEEDED,
    SL_JOBS_FAILED,
    SL_JOBS_CANCELLED,
    SL_JOBS_TIMED_OUT,
    SL_JOBS_EXPIRED,
} sl_jobs_state_t;

typedef enum sl_jobs_ev_type {
    SL_JOBS_EV_STARTED = 1, /* data: {"id":...} */
    SL_JOBS_EV_DATA,        /* data: output bytes */
    SL_JOBS_EV_PROGRESS,    /* data: one line from the executor (JSON) */
    SL_JOBS_EV_ERROR,       /* data: {"error":...} */
    SL_JOBS_EV_END,         /* data: {"state":...,"exit_code":...}; always last */
} sl_jobs_ev_type_t;

/* One event. Immutable once published; shared by every reader through refs. */
typedef struct sl_jobs_event {
    atomic_int refs;
    sl_jobs_ev_type_t type;
    uint64_t seq; /* 1, 2, ... per job */
    size_t len;
    uint8_t data[];
} sl_jobs_event_t;

#define SL_JOBS_ID_LEN 26 /* 128 bits: 48-bit ms time + 80 random, base32 */

/* A job owner: a keyed hash, lower-case hex (reply/owner.c); "" = none. */
#define SL_JOBS_OWNER_LEN 32
/* A request fingerprint for Idempotency-Key: SHA-256, lower-case hex. */
#define SL_JOBS_FP_LEN 64

/* Bounds on the request headers a job records (route "record_headers"). */
#define SL_JOBS_REC_MAX 16
#define SL_JOBS_REC_VALUE_MAX 1024

#define SL_JOBS_DELIVERY_ERROR_MAX 128 /* a delivery's last error, cut there */

/* "jobs.store": where jobs live besides this process's memory. */
typedef struct sl_jobs_store_cfg {
    int redis;           /* 0: memory only; 1: shared through Redis (docs/redis.md) */
    char host[256];      /* redis://[:password@]host[:port][/db] */
    int port;            /* 6379 */
    char unix_path[108]; /* unix:/path.sock[?db=N]; "" for TCP */
    int db;
    char password[128];  /* "" when none */
    char prefix[64];     /* of every key ("sluice:") */
    int64_t max_events;  /* per job stream, XADD MAXLEN ~ (10000) */
    int64_t max_age_s;   /* keys of a job that has not ended (86400) */
    int64_t timeout_ms;  /* connect and reply timeout (2000) */
    int64_t max_pending; /* commands awaiting replies, per connection (10000) */
} sl_jobs_store_cfg_t;

/* "jobs" config section. */
typedef struct sl_jobs_cfg {
    int64_t max_jobs;           /* live (not expired) jobs; 503 past it (10000) */
    int64_t retain_bytes;       /* per job, events kept for readers (1 MiB) */
    int64_t ttl_s;              /* a finished job stays readable (300) */
    int64_t heartbeat_s;        /* SSE comment interval (15) */
    int64_t shards;             /* table shards (16) */
    int64_t max_tombstones;     /* expired ids remembered for 410 (10000) */
    int64_t max_wait_s;         /* bound on Prefer: wait=N (300) */
    int64_t max_jobs_per_owner; /* live jobs of one owner; 429 past it (100) */
    int64_t max_retained_bytes; /* events kept across all jobs (256 MiB) */
    /* owner_key_file: the HMAC key owners are hashed with, so that
     * instances sharing it agree; absent: random per process. */
    uint8_t owner_key[64];
    size_t owner_key_len; /* 0: none configured */
    char *admin_token;    /* admin_token_file's token, NULL when none */
    sl_jobs_store_cfg_t store;
} sl_jobs_cfg_t;

/* What a job route asks for. Strings are copied. */
struct sl_header;
struct sl_config;
typedef struct sl_jobs_spec {
    const sl_jobs_exec_def_t *exec;
    /* The snapshot exec belongs to: the job holds a reference for its
     * life, so that a reload does not free its executor under it. */
    const struct sl_config *cfg;
    const char *route; /* route path, for listing and idempotency */
    const char *owner; /* SL_JOBS_OWNER_LEN hex chars, or "" / NULL: no owner */
    sl_str_t method, path, query, traceparent, idem_key;
    const char *idem_fp; /* the request's fingerprint (SL_JOBS_FP_LEN hex) */
    /* The body's digest when it is whole at submission (no body), so that
     * the key's first write in Redis carries it; NULL: it comes later. */
    const char *body_fp;
    int want_stdin;      /* create a pipe for the request body */
    /* The request's header fields; copied only for executors that send
     * them on (upstream), which pick the configured ones. */
    const struct sl_header *headers;
    size_t nheaders;
    /* The route's selected request headers, one per name (repeats already
     * joined), kept for the status JSON; at most SL_JOBS_REC_MAX, each value
     * cut at SL_JOBS_REC_VALUE_MAX bytes here. */
    const struct sl_header *recorded;
    size_t nrecorded;
} sl_jobs_spec_t;

/* A consistent snapshot of a job (strings valid while the job is ref'd). */
typedef struct sl_jobs_info {
    const char *id, *route, *executor, *method, *path, *traceparent, *content_type;
    sl_jobs_state_t state;
    uint64_t created_ms, started_ms, ended_ms; /* wall clock; 0 when not yet */
    int exit_code;                             /* -1 when none */
    uint64_t first_seq, last_seq;              /* retained range; last 0 when none */
    uint64_t dropped_upto;                     /* highest dropped seq, 0 if none */
    uint64_t data_bytes;                       /* data bytes produced */
    /* result delivery (sl_jobs_set_delivery): attempts 0 = none yet */
    int delivery_status, delivery_attempts;
    char delivery_error[SL_JOBS_DELIVERY_ERROR_MAX]; /* "" when none (a copy) */
    const struct sl_header *recorded;                /* NUL-terminated name and value */
    size_t nrecorded;
} sl_jobs_info_t;

/* What sl_jobs_read found besides events. */
typedef struct sl_jobs_read {
    uint64_t dropped_from, dropped_to; /* non-zero: these were dropped */
    int ended;                         /* the END event exists */
} sl_jobs_read_t;

/* ---- config sections (main.c registers them) ---- */
extern const struct sl_config_section_def sl_jobs_section, sl_jobs_executors_section;
/* An executor by name from the loading config (for a route's configure),
 * or NULL. */
const sl_jobs_exec_def_t *sl_jobs_exec_find(const char *name);
const char *sl_jobs_exec_name(const sl_jobs_exec_def_t *x);
const char *sl_jobs_exec_content_type(const sl_jobs_exec_def_t *x);

/* ---- process lifetime (main thread) ---- */
/* The "jobs" section's defaults (what an absent section gives). */
void sl_jobs_config_defaults(sl_jobs_cfg_t *c);
/* Create the store and start the jobs thread with cfg (NULL: defaults).
 * Returns 0 or SL_ERROR. */
int sl_jobs_start(const sl_jobs_cfg_t *cfg);
/* Stop the jobs thread, kill and reap every child, free every job. */
void sl_jobs_stop(void);
const sl_jobs_cfg_t *sl_jobs_config(void);
/* A reader resumed after an event (metrics: sluice_jobs_resumes_total). */
void sl_jobs_note_resume(void);

/* ---- extensions: what other modules hang on executors and job ends ----
 * Registered on the main thread before the config is loaded and the jobs
 * thread starts (reply/ delivers results this way: jobs/ does not know
 * how results travel). */
#define SL_JOBS_MAX_EXEC_KEYS 4
#define SL_JOBS_MAX_OBSERVERS 4
/* A key other modules accept in every executor object: parse stores the
 * value the executor keeps (called only when the key is present), free
 * releases it. Returns the slot for sl_jobs_exec_key_value. */
typedef struct sl_jobs_exec_key {
    const char *name;
    int (*parse)(json_t *v, const char *path, void **out, char *err, size_t errlen);
    void (*free)(void *v);
} sl_jobs_exec_key_t;
int sl_jobs_exec_key_register(const sl_jobs_exec_key_t *k);
/* The parsed value of key slot on executor x, or NULL when absent. */
void *sl_jobs_exec_key_value(const sl_jobs_exec_def_t *x, int slot);
/* on_end runs on the jobs thread once a job has reached its final state
 * (its END event published), not while the jobs thread stops; on_stop
 * runs as it stops (drop what is under way). */
typedef struct sl_jobs_observer {
    void (*on_end)(sl_jobs_job_t *job);
    void (*on_stop)(void);
} sl_jobs_observer_t;
void sl_jobs_observe(const sl_jobs_observer_t *o);
/* The jobs thread's loop (observers run timers and clients on it). */
struct ev_loop *sl_jobs_loop(void);

/* ---- jobs ---- */
/* Create a job and queue it on its executor. On success *out holds a
 * reference; *existing is 1 when the Idempotency-Key matched an earlier
 * job (nothing new started). With want_stdin, *stdin_fd is the write end
 * (non-blocking, close-on-exec; the caller closes it), else -1.
 * Returns 0, SL_ETOOBIG (max_jobs reached), SL_ELIMIT (the owner has
 * max_jobs_per_owner live jobs), SL_ENOMEM (retained events at
 * max_retained_bytes), SL_ECONFLICT (the Idempotency-Key was used by this
 * owner on this route for a different request), SL_EAGAIN (executor queue
 * full) or SL_EINVAL (bad parameters; err says which). */
int sl_jobs_submit(const sl_jobs_spec_t *spec, sl_jobs_job_t **out, int *existing, int *stdin_fd,
                   char *err, size_t errlen);
/* Look a job up. Returns a reference, or NULL with *expired 1 when the id
 * is a remembered expired one (410) and 0 when unknown (404). */
sl_jobs_job_t *sl_jobs_find(sl_str_t id, int *expired);
/* Find id wherever it is (sl_jobs_find, then with the Redis store the
 * shared store). Answered at once when possible: returns NULL with *job
 * (a reference, or NULL) and *status set. Otherwise returns a handle and
 * later calls cb(arg, job, status) on loop (slot = the worker's id), the
 * job referenced for the callee, unless sl_jobs_lookup_cancel came
 * first. status: SL_JOBS_FOUND, SL_JOBS_UNKNOWN (404), SL_JOBS_GONE
 * (expired, 410) or SL_JOBS_UNAVAILABLE (the store cannot answer, 503). */
enum { SL_JOBS_FOUND = 0, SL_JOBS_UNKNOWN, SL_JOBS_GONE, SL_JOBS_UNAVAILABLE };
typedef struct sl_jobs_lookup sl_jobs_lookup_t;
typedef void (*sl_jobs_found_fn)(void *arg, sl_jobs_job_t *job, int status);
sl_jobs_lookup_t *sl_jobs_lookup(sl_str_t id, struct ev_loop *loop, int slot, sl_jobs_found_fn cb,
                                 void *arg, sl_jobs_job_t **job, int *status);
/* From the loop that started it: cb will not run. */
void sl_jobs_lookup_cancel(sl_jobs_lookup_t *l);
/* sl_jobs_list for one owner, across instances (the Redis store): the
 * owner's live jobs in Redis and the ones held here. Returns NULL when
 * sl_jobs_list answers (memory store, or no owner: *status FOUND) or the
 * store cannot (*status SL_JOBS_UNAVAILABLE); else a handle, and later
 * cb(arg, jobs, n, status) on loop: n references the callee releases
 * (the array is freed after cb returns). */
typedef void (*sl_jobs_listed_fn)(void *arg, sl_jobs_job_t **jobs, size_t n, int status);
sl_jobs_lookup_t *sl_jobs_list_async(int state, const char *route, const char *owner,
                                     sl_str_t after, size_t max, struct ev_loop *loop, int slot,
                                     sl_jobs_listed_fn cb, void *arg, int *status);
/* Whether a new job is stored where every instance sees it: 1 yes (or
 * the memory store), 0 not yet (answer after the next wake-up), else the
 * job is being failed: SL_JOBS_PERSIST_FAILED (the store failed: 503) or
 * SL_JOBS_PERSIST_SHARE (its owner has max_jobs_per_owner live jobs
 * across instances: 429). */
enum { SL_JOBS_PERSIST_FAILED = -1, SL_JOBS_PERSIST_SHARE = -2, SL_JOBS_PERSIST_DUP = -3 };
int sl_jobs_persisted(const sl_jobs_job_t *job);
/* SL_JOBS_PERSIST_DUP: the Idempotency-Key already names a job made on
 * another instance (or by a request that got to Redis first). This job
 * never runs and is out of the table; the reply answers with that one. */
typedef struct sl_jobs_dup {
    char id[SL_JOBS_ID_LEN + 1];
    int same;                         /* the request's fingerprint matched */
    char body_fp[SL_JOBS_FP_LEN + 1]; /* its body's SHA-256; "" until whole */
} sl_jobs_dup_t;
/* Returns 0 and fills out when the job is SL_JOBS_PERSIST_DUP. */
int sl_jobs_dup_of(const sl_jobs_job_t *job, sl_jobs_dup_t *out);
void sl_jobs_job_ref(sl_jobs_job_t *job);
void sl_jobs_job_unref(sl_jobs_job_t *job);
void sl_jobs_job_info(sl_jobs_job_t *job, sl_jobs_info_t *out);
const char *sl_jobs_job_id(const sl_jobs_job_t *job);
const sl_jobs_exec_def_t *sl_jobs_job_exec(const sl_jobs_job_t *job);
/* What delivering the job's result achieved (kept for its status): the
 * last HTTP status (0: none), tries so far, the last error (NULL: none). */
void sl_jobs_set_delivery(sl_jobs_job_t *job, int status, int attempts, const char *error);
/* The SHA-256 (hex) of the body of the request that made the job, once it
 * has all arrived (for Idempotency-Key replays). get returns 1 and copies
 * it into out (SL_JOBS_FP_LEN + 1 bytes) when known, else 0. */
void sl_jobs_set_body_fp(sl_jobs_job_t *job, const char *fp);
int sl_jobs_get_body_fp(sl_jobs_job_t *job, char *out);
/* The job's owner ("" when it has none); immutable. */
const char *sl_jobs_job_owner(const sl_jobs_job_t *job);
/* Stop the job's work (from any thread); its END event follows. No-op
 * when finished. A cancel that arrives before the job started (it is
 * being created) still cancels it. */
void sl_jobs_cancel(sl_jobs_job_t *job);
/* The job's input was cut (the client went away mid-upload): it ends
 * "failed" with an error event saying reason (static text, e.g.
 * "client_aborted"), whatever the work makes of the truncated input, and
 * the work is stopped (exec: the process group is killed; upstream: the
 * connection is closed without ending the body). Call before closing the
 * stdin pipe, from any thread. */
void sl_jobs_abort(sl_jobs_job_t *job, const char *reason);
/* True once sl_jobs_abort was called (executors: a stdin EOF is then no
 * clean end of the body). */
int sl_jobs_is_aborted(const sl_jobs_job_t *job);
const char *sl_jobs_state_name(sl_jobs_state_t s);
/* "started", "data", "progress", "error", "end". */
const char *sl_jobs_ev_type_name(sl_jobs_ev_type_t t);
int sl_jobs_state_is_final(sl_jobs_state_t s);
/* Parse "queued".."expired"; -1 when unknown. */
int sl_jobs_state_parse(sl_str_t s);

/* Copy references to up to max events with seq > after into out; returns
 * the count. Each must be released with sl_jobs_event_unref. When seq
 * after+1 was dropped, returns 0 and fills r->dropped_from/to (resume with
 * after = dropped_to). */
size_t sl_jobs_read(sl_jobs_job_t *job, uint64_t after, sl_jobs_event_t **out, size_t max,
                    sl_jobs_read_t *r);
void sl_jobs_event_unref(sl_jobs_event_t *ev);

/* Call cb(arg) on loop (the calling worker's, slot = its id) whenever the
 * job gets an event, coalesced. Call only from that loop's thread, and
 * unsubscribe from it too; cb never runs after sl_jobs_unsubscribe. */
sl_jobs_sub_t *sl_jobs_subscribe(sl_jobs_job_t *job, struct ev_loop *loop, int slot,
                                 void (*cb)(void *arg), void *arg);
void sl_jobs_unsubscribe(sl_jobs_sub_t *sub);

/* Jobs with id > after (or all when after is empty), matching state (-1:
 * any), route (NULL: any) and owner (NULL: any), in id (= creation)
 * order, at most max. Fills out with references; returns the count. */
size_t sl_jobs_list(int state, const char *route, const char *owner, sl_str_t after,
                    sl_jobs_job_t **out, size_t max);

#endif
