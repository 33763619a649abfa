/* sluice - SPDX-License-Identifier: MIT
 *
 * An Idempotency-Key that a job of another instance holds (the Redis
 * store, docs/redis.md). The new job was made here and sent to Redis,
 * which answered that the key is taken (SL_JOBS_PERSIST_DUP): that job
 * never runs, and the reply answers with the one holding the key, as a
 * replay, once it is found (a lookup, as for /jobs/{id}) and, for a
 * request with a body, once the body has been read and its digest
 * compared with the original's. Nothing of the new job has reached the
 * client: feed.c sends job-id and location only once a job is stored.
 */
#include "reply_int.h"
#include "../log.h"
#include "../worker.h"
#include <stdio.h>

static void fail(sl_reply_t *r, int code, const char *msg)
{
    sl_log_stream(SL_LOG_INFO, r->req->conn, r->req->stream_id, "job %s: %s",
                  sl_jobs_job_id(r->job), msg);
    if (code == 503)
        sl_resp_header_add(r->req, "retry-after", "1");
    sl_resp_error(r->req, code, msg); /* r->retarget stays set: answer() is done */
}

/* Answer once the job is known and the body's digest too. */
static void finish(sl_reply_t *r)
{
    if (r->lookup || r->body_md)
        return;
    sl_jobs_job_t *job = r->target;
    r->target = NULL;
    if (!job) {
        const char *msg;
        int code = sl_reply_lookup_error(r->target_status, &msg);
        fail(r, code, msg);
        return;
    }
    if (!r->dup_body_fp[0] || strcmp(r->dup_body_fp, r->body_fp) != 0) {
        sl_jobs_job_unref(job);
        /* draft-ietf-httpapi-idempotency-key-header: 409 while the
         * original is still being processed, 422 for another request. */
        if (r->dup_body_fp[0])
            fail(r, 422, "Idempotency-Key already used for a different request");
        else
            fail(r, 409, "the request that first used this Idempotency-Key is still in progress");
        return;
    }
    sl_reply_switch_job(r, job);
    sl_req_note(r->req, &r->req->log_job_id, sl_jobs_job_id(job), strlen(sl_jobs_job_id(job)));
    if (!r->replay)
        sl_resp_header_add(r->req, "idempotent-replay", "?1");
    r->replay = 1;
    sl_jobs_info_t info;
    sl_jobs_job_info(job, &info);
    if (r->mode == SL_REPLY_WAIT && sl_jobs_state_is_final(info.state))
        r->mode = SL_REPLY_RESULT;
    r->retarget = 0;
    sl_reply_go(r);
}

static void on_found(void *arg, sl_jobs_job_t *job, int status)
{
    sl_reply_t *r = arg;
    r->lookup = NULL;
    r->target = job;
    r->target_status = status;
    finish(r);
}

void sl_reply_retarget(sl_reply_t *r)
{
    sl_jobs_dup_t d;
    r->retarget = 1;
    r->answer_after_body = 0; /* finish() waits for the body itself */
    sl_reply_stdin_drop(r);   /* the new job will not run */
    if (sl_jobs_dup_of(r->job, &d) != 0 || !d.same) {
        fail(r, 422, "Idempotency-Key already used for a different request");
        return;
    }
    snprintf(r->dup_body_fp, sizeof(r->dup_body_fp), "%s", d.body_fp);
    /* The key is scoped to the owner: the job holding it is theirs. */
    sl_reply_caller_t c = {.admin = 0};
    snprintf(c.owner, sizeof(c.owner), "%s", sl_jobs_job_owner(r->job));
    sl_jobs_job_t *job;
    int status;
    r->lookup = sl_reply_find_job(&c, (sl_str_t){d.id, strlen(d.id)}, on_found, r, &job, &status);
    if (!r->lookup)
        on_found(r, job, status);
}

void sl_reply_retarget_body(sl_reply_t *r)
{
    finish(r);
}

void sl_reply_retarget_close(sl_reply_t *r)
{
    if (r->lookup)
        sl_jobs_lookup_cancel(r->lookup);
    r->lookup = NULL;
    sl_jobs_job_unref(r->target);
    r->target = NULL;
}
