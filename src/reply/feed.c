/* sluice - SPDX-License-Identifier: MIT
 *
 * The reply object: a subscriber that turns a job's retained events into
 * a response body at the client's pace. One piece is outstanding at a
 * time (raw: one data event's bytes, sent from the shared event without a
 * copy; SSE: a batch formatted into one buffer); the next read happens on
 * on_proceed or when jobs/ wakes us. SSE gets comment heartbeats while
 * idle. As in harness/pump.c, nothing is touched after a final send or a
 * reset: on_close may run inside either.
 */
#include "reply_int.h"
#include "../log.h"
#include "../worker.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SSE_BATCH 16
#define HEARTBEAT ": hb\n\n"

static void pump(sl_reply_t *r);
static void answer(sl_reply_t *r);

static void release_piece(sl_reply_t *r)
{
    sl_jobs_event_unref(r->held);
    r->held = NULL;
    sl_free(r->out);
    r->out = NULL;
}

static void on_proceed(sl_req_t *req)
{
    sl_reply_t *r = req->hdata;
    r->waiting = 0;
    release_piece(r);
    if (!r->in_send && r->started)
        pump(r);
}

static void stop_stdin(sl_reply_t *r)
{
    if (r->in_io_on) {
        ev_io_stop(r->loop, &r->in_io);
        r->in_io_on = 0;
    }
    if (r->in_fd >= 0) {
        close(r->in_fd);
        r->in_fd = -1;
    }
    if (r->in_buf_on) {
        sl_buf_dispose(&r->in_buf);
        r->in_buf_on = 0;
    }
}

void sl_reply_stdin_drop(sl_reply_t *r)
{
    if (r->in_buf_on && sl_buf_len(&r->in_buf))
        sl_req_consume(r->req, sl_buf_len(&r->in_buf));
    stop_stdin(r);
}

static void on_close(sl_req_t *req, int err)
{
    sl_reply_t *r = req->hdata;
    sl_reply_retarget_close(r);
    sl_jobs_unsubscribe(r->sub);
    r->sub = NULL;
    sl_reply_body_hash_free(r->body_md); /* the body never completed */
    r->body_md = NULL;
    if (err && r->in_fd >= 0) {
        /* Gone before the whole body reached the job: its input is cut,
         * so it must not end "succeeded" on a partial body. Before the
         * pipe closes, so the job never takes the EOF for the end. */
        sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id,
                      "job %s: client went away mid-upload; the job fails (client_aborted)",
                      sl_jobs_job_id(r->job));
        sl_jobs_abort(r->job, "client_aborted");
    }
    if (r->hb_on)
        ev_timer_stop(r->loop, &r->hb);
    if (r->deadline_on)
        ev_timer_stop(r->loop, &r->deadline);
    stop_stdin(r);
    release_piece(r);
    if (err && r->cancel_on_disconnect) {
        sl_jobs_info_t info;
        sl_jobs_job_info(r->job, &info);
        if (!sl_jobs_state_is_final(info.state)) {
            sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id,
                          "job %s: client went away; cancelling (cancel_on_disconnect)", info.id);
            sl_jobs_cancel(r->job);
        }
    }
    sl_jobs_job_unref(r->job);
    r->job = NULL;
}

/* ---- request body -> stdin ---- */

static void stdin_done(sl_reply_t *r)
{
    stop_stdin(r);
    if (r->answer_after_body) {
        r->answer_after_body = 0;
        answer(r);
    }
}

/* Write what is buffered; credit goes back only for bytes the pipe took.
 * Returns 1 when the body is all delivered (or the child stopped reading). */
static int flush_stdin(sl_reply_t *r)
{
    const uint8_t *p;
    size_t n;
    while (sl_buf_peek(&r->in_buf, &p, &n) == 0) {
        ssize_t w = write(r->in_fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return 0;
        if (w < 0) { /* EPIPE: the child closed stdin; the rest is dropped */
            sl_req_consume(r->req, sl_buf_len(&r->in_buf));
            sl_buf_skip(&r->in_buf, sl_buf_len(&r->in_buf));
            return 1;
        }
        sl_buf_skip(&r->in_buf, (size_t)w);
        sl_req_consume(r->req, (size_t)w);
    }
    return r->in_fin;
}

static void on_stdin_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    sl_reply_t *r = w->data;
    if (flush_stdin(r))
        stdin_done(r);
    else if (sl_buf_is_empty(&r->in_buf) && r->in_io_on) {
        ev_io_stop(r->loop, &r->in_io);
        r->in_io_on = 0;
    }
}

/* Idempotency-Key: the whole body's digest goes on the job, for replays. */
static void hash_body(sl_reply_t *r, const uint8_t *data, size_t len, int fin)
{
    char fp[SL_JOBS_FP_LEN + 1];
    if (!r->body_md)
        return;
    sl_reply_body_hash_feed(r->body_md, data, len);
    if (!fin)
        return;
    sl_reply_body_hash_end(r->body_md, fp);
    r->body_md = NULL;
    memcpy(r->body_fp, fp, sizeof(fp));
    if (r->retarget) {
        sl_reply_retarget_body(r);
        return;
    }
    sl_jobs_set_body_fp(r->job, fp);
    if (r->answer_after_body && r->in_fd < 0) { /* no stdin to wait for: answer now */
        r->answer_after_body = 0;
        answer(r);
    }
}

static void on_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    sl_reply_t *r = req->hdata;
    hash_body(r, data, len, fin);
    if (r->in_fd < 0) {
        if (len)
            sl_req_consume(req, len);
        return;
    }
    /* Within the protocol's own window, so this cannot overflow. */
    if (len && sl_buf_write_all(&r->in_buf, data, len) != 0) {
        sl_log_stream(SL_LOG_ERROR, req->conn, req->stream_id,
                      "job: %zu body bytes past the buffer bound", len);
        sl_req_consume(req, len);
    }
    if (fin)
        r->in_fin = 1;
    if (flush_stdin(r)) {
        stdin_done(r);
        return;
    }
    if (!sl_buf_is_empty(&r->in_buf) && !r->in_io_on) {
        ev_io_start(r->loop, &r->in_io);
        r->in_io_on = 1;
    }
}

static void on_revoke(sl_req_t *req, const char *why)
{
    sl_reply_t *r = req->hdata;
    SL_UNUSED(why);
    if (r->mode != SL_REPLY_SSE || !r->started) {
        sl_resp_reset(req, SL_RESET_CANCEL);
        return;
    }
    r->revoked = 1;
    pump(r); /* now, or when the piece in flight has gone */
}

static const sl_handler_cbs_t reply_cbs = {
    .on_revoke = on_revoke,
    .on_body = on_body,
    .on_proceed = on_proceed,
    .on_close = on_close,
};

void sl_reply_stdin(sl_reply_t *r, int fd)
{
    sl_worker_t *w = sl_worker_current();
    r->in_fd = fd;
    ev_io_init(&r->in_io, on_stdin_writable, fd, EV_WRITE);
    r->in_io.data = r;
    sl_buf_init(&r->in_buf, &w->bufpool, sl_req_body_chunks(r->req));
    r->in_buf_on = 1;
    if (r->req->body_done)
        stdin_done(r);
}

/* ---- events -> body ---- */

static int send_piece(sl_reply_t *r, const void *p, size_t n, int final)
{
    r->waiting = 1;
    r->in_send = 1;
    int rv = sl_resp_send(r->req, p, n, final);
    if (rv != 0 || final)
        return SL_ECLOSED;
    r->in_send = 0;
    return 0;
}

/* Loss is never silent: SSE says which range is gone, a byte stream
 * cannot, so it is aborted. */
static int send_dropped(sl_reply_t *r, const sl_jobs_read_t *rd)
{
    if (r->mode != SL_REPLY_SSE) {
        sl_log_stream(SL_LOG_INFO, r->req->conn, r->req->stream_id,
                      "job stream: events %llu-%llu dropped before the client read them; reset",
                      (unsigned long long)rd->dropped_from, (unsigned long long)rd->dropped_to);
        sl_resp_reset(r->req, SL_RESET_INTERNAL_ERROR);
        return SL_ECLOSED;
    }
    r->out = sl_malloc(128);
    int n = snprintf(r->out, 128, "id: %llu\nevent: dropped\ndata: {\"from\":%llu,\"to\":%llu}\n\n",
                     (unsigned long long)rd->dropped_to, (unsigned long long)rd->dropped_from,
                     (unsigned long long)rd->dropped_to);
    r->next = rd->dropped_to;
    return send_piece(r, r->out, (size_t)n, 0);
}

static int pump_sse(sl_reply_t *r, sl_jobs_event_t **evs, size_t n)
{
    size_t cap = 0;
    int final = 0;
    for (size_t i = 0; i < n; i++)
        cap += sl_reply_sse_size(evs[i]->data, evs[i]->len);
    r->out = sl_malloc(cap);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        len += sl_reply_sse_format(r->out + len, evs[i]->seq, sl_jobs_ev_type_name(evs[i]->type),
                                   evs[i]->data, evs[i]->len);
        final |= evs[i]->type == SL_JOBS_EV_END;
        r->next = evs[i]->seq;
        sl_jobs_event_unref(evs[i]);
    }
    return send_piece(r, r->out, len, final);
}

/* Raw: only data bytes go out; END closes the body. */
static int pump_raw(sl_reply_t *r, sl_jobs_event_t *ev)
{
    r->next = ev->seq;
    if (ev->type == SL_JOBS_EV_END) {
        sl_jobs_event_unref(ev);
        return send_piece(r, NULL, 0, 1);
    }
    if (ev->type != SL_JOBS_EV_DATA || ev->len == 0) {
        sl_jobs_event_unref(ev);
        return 0;
    }
    r->held = ev;
    return send_piece(r, ev->data, ev->len, 0);
}

/* Route auth withdrew access: SSE says so in a last event. */
static int send_revoked(sl_reply_t *r)
{
    static const char msg[] = "event: error\ndata: {\"error\":\"access revoked\"}\n\n";
    return send_piece(r, msg, sizeof(msg) - 1, 1);
}

static void pump(sl_reply_t *r)
{
    if (r->revoked) {
        if (!r->waiting)
            send_revoked(r);
        return;
    }
    while (!r->waiting) {
        sl_jobs_event_t *evs[SSE_BATCH];
        sl_jobs_read_t rd;
        size_t max = r->mode == SL_REPLY_SSE ? SSE_BATCH : 1;
        size_t n = sl_jobs_read(r->job, r->next, evs, max, &rd);
        int rv;
        if (rd.dropped_from)
            rv = send_dropped(r, &rd);
        else if (n == 0 && rd.ended)
            rv = send_piece(r, NULL, 0, 1); /* resumed after the end: nothing more comes */
        else if (n == 0)
            return; /* woken when there is more */
        else if (r->mode == SL_REPLY_SSE)
            rv = pump_sse(r, evs, n);
        else
            rv = pump_raw(r, evs[0]);
        if (rv != 0)
            return;
    }
}

static void on_wake(void *arg)
{
    sl_reply_t *r = arg;
    if (r->persist_wait) {
        if (sl_jobs_persisted(r->job) != 0)
            answer(r);
        return;
    }
    if (r->mode == SL_REPLY_WAIT) {
        sl_jobs_info_t info;
        sl_jobs_job_info(r->job, &info);
        if (sl_jobs_state_is_final(info.state)) {
            r->mode = SL_REPLY_RESULT;
            answer(r);
        }
        return;
    }
    if (!r->waiting && r->started)
        pump(r);
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    sl_reply_t *r = w->data;
    if (r->waiting || !r->started)
        return; /* bytes are moving anyway */
    send_piece(r, HEARTBEAT, sizeof(HEARTBEAT) - 1, 0);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    sl_reply_t *r = w->data;
    r->deadline_on = 0;
    if (r->mode != SL_REPLY_WAIT)
        return;
    r->mode = SL_REPLY_ACCEPTED;
    r->async_pref = 0;
    answer(r);
}

sl_reply_t *sl_reply_new(sl_req_t *req, sl_jobs_job_t *job, sl_reply_mode_t mode)
{
    sl_worker_t *w = sl_worker_current();
    SL_ASSERT(w != NULL);
    sl_reply_t *r = sl_pool_alloc(&req->pool, sizeof(*r));
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->job = job;
    sl_jobs_job_ref(job);
    r->mode = mode;
    r->loop = w->loop;
    r->in_fd = -1;
    r->jobs_path = "/jobs/";
    ev_init(&r->hb, on_heartbeat);
    r->hb.data = r;
    ev_init(&r->deadline, on_deadline);
    r->deadline.data = r;
    req->cbs = &reply_cbs;
    req->hdata = r;
    r->sub = sl_jobs_subscribe(job, w->loop, w->id, on_wake, r);
    return r;
}

void sl_reply_switch_job(sl_reply_t *r, sl_jobs_job_t *job)
{
    sl_jobs_unsubscribe(r->sub);
    sl_jobs_job_unref(r->job);
    r->job = job;
    r->sub = sl_jobs_subscribe(job, r->loop, sl_worker_current()->id, on_wake, r);
}

/* The finished job's data as the body, with its outcome as the status. */
static void answer_result(sl_reply_t *r)
{
    sl_jobs_info_t info;
    sl_jobs_job_info(r->job, &info);
    sl_req_t *req = r->req;
    if (info.dropped_upto > 1) {
        sl_resp_error(req, 409,
                      "the result is no longer complete: events were dropped past "
                      "jobs.retain_bytes (read /events for what is retained)");
        return;
    }
    char code[16];
    snprintf(code, sizeof(code), "%d", info.exit_code);
    req->res.status = sl_reply_result_status(info.state);
    req->res.content_length = (int64_t)info.data_bytes;
    sl_resp_header_add(req, "content-type", info.content_type);
    sl_resp_header_add(req, "job-state", sl_jobs_state_name(info.state));
    sl_resp_header_add(req, "job-exit-code", code);
    sl_reply_job_headers(req, r->job, r->jobs_path);
    r->started = 1;
    r->mode = SL_REPLY_RESULT;
    if (req->is_head) {
        sl_resp_send(req, NULL, 0, 1);
        return;
    }
    pump(r);
}

static void answer(sl_reply_t *r)
{
    if (r->answer_after_body)
        return; /* stdin_done calls again */
    /* With the Redis store, a job id goes out only once every instance
     * can find it; on_wake calls again. */
    int stored = sl_jobs_persisted(r->job);
    r->persist_wait = stored == 0;
    if (stored == 0 || r->retarget)
        return;
    if (stored == SL_JOBS_PERSIST_DUP) {
        sl_reply_retarget(r);
        return;
    }
    if (stored == SL_JOBS_PERSIST_SHARE) {
        sl_resp_header_add(r->req, "retry-after", "10");
        sl_resp_error(r->req, 429, "too many live jobs for this owner");
        return;
    }
    if (stored < 0) {
        sl_resp_header_add(r->req, "retry-after", "1");
        sl_resp_error(r->req, 503, "job store unavailable");
        return;
    }
    switch (r->mode) {
    case SL_REPLY_WAIT: return; /* on_wake or on_deadline */
    case SL_REPLY_RESULT: answer_result(r); return;
    case SL_REPLY_ACCEPTED: sl_reply_accepted(r->req, r->job, r->jobs_path, r->async_pref); return;
    case SL_REPLY_SSE:
        ev_timer_set(&r->hb, (double)sl_jobs_config()->heartbeat_s,
                     (double)sl_jobs_config()->heartbeat_s);
        ev_timer_start(r->loop, &r->hb);
        r->hb_on = 1;
        /* fall through */
    case SL_REPLY_RAW:
        r->started = 1;
        /* Only now: until the job is stored, it could still turn out to
         * be another one (retarget.c). */
        sl_reply_job_headers(r->req, r->job, r->jobs_path);
        /* Head first, so the client has job-id and location at once. */
        if (send_piece(r, NULL, 0, 0) != 0)
            return;
        if (!r->waiting)
            pump(r);
        return;
    }
}

void sl_reply_go(sl_reply_t *r)
{
    answer(r);
}

void sl_reply_wait(sl_reply_t *r, double secs)
{
    sl_jobs_info_t info;
    sl_jobs_job_info(r->job, &info);
    if (sl_jobs_state_is_final(info.state)) {
        r->mode = SL_REPLY_RESULT;
        answer(r);
        return;
    }
    r->mode = SL_REPLY_WAIT;
    ev_timer_set(&r->deadline, secs, 0.);
    ev_timer_start(r->loop, &r->deadline);
    r->deadline_on = 1;
}
