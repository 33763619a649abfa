/* sluice - SPDX-License-Identifier: MIT
 *
 * Private to src/reply/: the per-request reply object shared by the "job"
 * route and the jobs API. A reply subscribes to one job and turns its
 * events into a response body at the client's pace (sl_resp pull
 * contract): it reads retained events from its own cursor when woken or
 * when the protocol has taken the last piece, so a slow client never slows
 * the job. It can also feed the request body to the job's stdin pipe.
 */
#ifndef SL_REPLY_INT_H
#define SL_REPLY_INT_H

#include "../sl.h"
#include "../buf.h"
#include "../req.h"
#include "../config.h"
#include "../query.h"
#include "../jobs/jobs.h"
#include <ev.h>

typedef enum reply_mode {
    SL_REPLY_RAW = 1,  /* data bytes as the body; ends with the job */
    SL_REPLY_SSE,      /* every event as SSE, id = seq */
    SL_REPLY_RESULT,   /* the finished job: status from its outcome, data as body */
    SL_REPLY_WAIT,     /* wait for the end (then RESULT) or the deadline (then 202) */
    SL_REPLY_ACCEPTED, /* 202 + Location + status JSON */
} sl_reply_mode_t;

typedef struct sl_reply {
    sl_req_t *req;
    sl_jobs_job_t *job;
    sl_jobs_sub_t *sub;
    struct ev_loop *loop;
    sl_reply_mode_t mode;
    uint64_t next;         /* last seq delivered */
    sl_jobs_event_t *held; /* raw: the event whose bytes are being sent */
    char *out;             /* sse: the piece being sent (malloc) */
    ev_timer hb, deadline;
    const char *jobs_path; /* "/jobs/" for Location */
    int async_pref;        /* the client asked for respond-async */
    unsigned waiting : 1, in_send : 1, done : 1, cancel_on_disconnect : 1;
    unsigned hb_on : 1, deadline_on : 1, answer_after_body : 1, started : 1;
    unsigned persist_wait : 1; /* the answer waits until the job is in the shared store */
    /* Idempotency-Key held by another instance's job (retarget.c) */
    unsigned retarget : 1; /* finding that job, or waiting for the body */
    unsigned replay : 1;   /* idempotent-replay is on the response */
    unsigned revoked : 1;  /* route auth withdrew access: a last error event */
    sl_jobs_lookup_t *lookup;
    sl_jobs_job_t *target; /* found; becomes job */
    int target_status;
    char dup_body_fp[SL_JOBS_FP_LEN + 1];
    char body_fp[SL_JOBS_FP_LEN + 1]; /* this request's body, "" until whole */
    /* Idempotency-Key: the body is hashed on its way to the job */
    struct evp_md_ctx_st *body_md;
    /* request body -> the job's stdin */
    int in_fd;
    ev_io in_io;
    sl_buf_t in_buf;
    unsigned in_fin : 1, in_io_on : 1, in_buf_on : 1;
} sl_reply_t;

/* New reply in req's pool, attached as req->hdata with the reply
 * callbacks; takes a reference to job. */
sl_reply_t *sl_reply_new(sl_req_t *req, sl_jobs_job_t *job, sl_reply_mode_t mode);
/* Start answering (after the caller added its headers). With
 * answer_after_body set, the answer waits until the body is in the pipe. */
void sl_reply_go(sl_reply_t *r);
/* Feed the request body into fd (owned by r from now on). */
void sl_reply_stdin(sl_reply_t *r, int fd);
/* Wait for the job's end up to secs, then answer (result or 202). */
void sl_reply_wait(sl_reply_t *r, double secs);

/* Hand the rest of the request body back (its bytes are consumed, not
 * piped): the job it was for will not run. */
void sl_reply_stdin_drop(sl_reply_t *r);

/* Reply with job (the reference is taken) instead of r->job. */
void sl_reply_switch_job(sl_reply_t *r, sl_jobs_job_t *job);

/* The Redis store said another job holds this request's Idempotency-Key
 * (SL_JOBS_PERSIST_DUP): find it, check the body, answer with it as a
 * replay (retarget.c). Calls sl_reply_go again once it is the job. */
void sl_reply_retarget(sl_reply_t *r);
/* The body's digest is known (r->body_fp): the retarget may finish. */
void sl_reply_retarget_body(sl_reply_t *r);
/* on_close: drop what a retarget holds. */
void sl_reply_retarget_close(sl_reply_t *r);

/* 202 Accepted + Location + JSON status (final). */
int sl_reply_accepted(sl_req_t *req, sl_jobs_job_t *job, const char *jobs_path, int pref_applied);
/* Status JSON of a job (malloc'd, free with free()). */
char *sl_reply_status_json(sl_jobs_job_t *job, const char *jobs_path);
/* HTTP status for a finished job's result. */
int sl_reply_result_status(sl_jobs_state_t s);
/* Add job-id and location. */
void sl_reply_job_headers(sl_req_t *req, sl_jobs_job_t *job, const char *jobs_path);

/* The request's Idempotency-Key fingerprint (idem.c): SHA-256 (hex, into
 * SL_JOBS_FP_LEN + 1 bytes) of the method, path and query, and the body's
 * type, length and Content-Digest / Repr-Digest. */
void sl_reply_idem_fingerprint(const sl_req_t *req, char *out);
/* SHA-256 as hex for Idempotency-Key bodies: begin (NULL on failure),
 * feed, end (writes SL_JOBS_FP_LEN + 1 bytes, frees the context). */
struct evp_md_ctx_st *sl_reply_body_hash_begin(void);
void sl_reply_body_hash_feed(struct evp_md_ctx_st *md, const uint8_t *p, size_t n);
void sl_reply_body_hash_end(struct evp_md_ctx_st *md, char *out);
/* Drop a hash whose body never completed (NULL is fine). */
void sl_reply_body_hash_free(struct evp_md_ctx_st *md);

/* One event as SSE (sse.c): "id: seq", "event: type", the payload as
 * data: lines (CR, LF and CRLF each start a new one, so a payload cannot
 * forge a field) and the blank line. o needs sl_reply_sse_size(data, len)
 * bytes (type at most 24 bytes). Returns the bytes written. */
size_t sl_reply_sse_size(const uint8_t *data, size_t len);
size_t sl_reply_sse_format(char *o, uint64_t seq, const char *type, const uint8_t *data,
                           size_t len);

/* ---- job owners (owner.c) ---- */

typedef enum sl_reply_owner_kind {
    SL_REPLY_OWNER_NONE = 0, /* the job id is the capability */
    SL_REPLY_OWNER_HEADER,
    SL_REPLY_OWNER_COOKIE,
    SL_REPLY_OWNER_TLS_CLIENT, /* a verified client certificate */
} sl_reply_owner_kind_t;

/* A route's "owner" option. */
typedef struct sl_reply_owner_rule {
    sl_reply_owner_kind_t kind;
    char *name; /* header (lower-case) or cookie name; "tls_client" */
} sl_reply_owner_rule_t;

/* Who is asking: the owner their request names under the route's rule
 * ("" when none) and whether they hold the admin token. */
typedef struct sl_reply_caller {
    char owner[SL_JOBS_OWNER_LEN + 1];
    int admin;
} sl_reply_caller_t;

/* Parse route.owner ("none" default, "header:NAME", "cookie:NAME"). */
int sl_reply_owner_parse(json_t *route, const char *path, sl_reply_owner_rule_t *r, char *err,
                         size_t errlen);
void sl_reply_owner_dispose(sl_reply_owner_rule_t *r);
/* The request's owner under r into out (SL_JOBS_OWNER_LEN + 1 bytes): ""
 * for the "none" rule. Returns 0, or SL_EINVAL when the request lacks the
 * credential the rule names. */
int sl_reply_owner_of(const sl_req_t *req, const sl_reply_owner_rule_t *r, char *out);
/* The owner as a rate_limit key (route "rate_limit": {"key": "owner"}):
 * 0 and out, or SL_EINVAL when the request names none. */
int sl_reply_owner_key(const sl_req_t *req, const sl_reply_owner_rule_t *r, char *out, size_t cap);
/* Authorization: Bearer <jobs.admin_token_file's token> (constant time). */
int sl_reply_is_admin(const sl_req_t *req);
void sl_reply_caller_of(const sl_req_t *req, const sl_reply_owner_rule_t *r, sl_reply_caller_t *c);
/* sl_jobs_lookup on the calling worker, for caller c: a job c may not
 * see (not its owner, not the admin, and the job has an owner) is
 * SL_JOBS_UNKNOWN, exactly as an unknown id, so everyone else gets 404.
 * When it returns a handle, cb must apply sl_reply_may_see itself. */
sl_jobs_lookup_t *sl_reply_find_job(const sl_reply_caller_t *c, sl_str_t id, sl_jobs_found_fn cb,
                                    void *arg, sl_jobs_job_t **job, int *status);
void sl_reply_may_see(const sl_reply_caller_t *c, sl_jobs_job_t **job, int *status);
/* The HTTP status and message for a lookup that found nothing. */
int sl_reply_lookup_error(int status, const char **msg);

/* A client message on /jobs/ws (ws_msg.c). */
typedef enum sl_reply_ws_op {
    SL_REPLY_WS_SUBSCRIBE = 1,
    SL_REPLY_WS_UNSUBSCRIBE,
    SL_REPLY_WS_CANCEL,
} sl_reply_ws_op_t;

typedef struct sl_reply_ws_msg {
    sl_reply_ws_op_t op;
    char id[64]; /* NUL-terminated, 1..63 bytes */
    int has_from;
    uint64_t from;
} sl_reply_ws_msg_t;

/* Parse one message (binary ones are never valid). Returns 0, or 400 with
 * *why for the error reply; m->id is then set when the message had a
 * usable id. */
int sl_reply_ws_parse(const uint8_t *data, size_t len, int binary, sl_reply_ws_msg_t *m,
                      const char **why);

/* Prefer header: respond-async and wait=N (-1 when absent). */
void sl_reply_prefer(const sl_req_t *req, int *async, int64_t *wait);
/* Accept a WebSocket handshake on req as a /jobs/ws subscription socket
 * following up to max_jobs jobs (ws_sub.c). */
struct sl_ws_opts;
struct sl_reply_caller;
void sl_reply_ws_start(sl_req_t *req, const struct sl_ws_opts *opts, size_t max_jobs,
                       const struct sl_reply_caller *caller);

#endif
