/* sluice - SPDX-License-Identifier: MIT
 *
 * The job-subscription WebSocket app at /jobs/ws (jobs_api accepts the
 * handshake). One socket follows many jobs (bounded by ws_max_jobs):
 *
 *   client -> {"op":"subscribe","id":J,"from":N}   events with seq > N
 *             {"op":"unsubscribe","id":J}
 *             {"op":"cancel","id":J}
 *   sluice -> {"op":"subscribed","id":J,"from":N,"state":...} then
 *             {"id":J,"seq":S,"type":"data","data":"text"}  (UTF-8 output)
 *             {"id":J,"seq":S,"type":"data","data":"b64","encoding":"base64"}
 *             {"id":J,"seq":S,"type":"progress"|"started"|"error"|"end","data":JSON}
 *             {"id":J,"seq":B,"type":"dropped","from":A,"to":B}
 *             {"op":"unsubscribed"|"cancelled","id":J}
 *             {"op":"error","id":J?,"status":N,"error":"..."}
 *
 * Backpressure is a pull: each subscription keeps its own cursor into the
 * job's retained events and reads more only while the socket's send queue
 * is under a low-water mark; the session's on_drain (the protocol took a
 * piece) and the job's wake-up both pump again. So a slow socket never
 * slows a job, and its memory is bounded by send_queue_bytes. Jobs on one
 * socket are served round-robin so one busy job cannot starve the others.
 * After a job's end event the subscription is removed by itself.
 */
#include "reply_int.h"
#include "../log.h"
#include "../worker.h"
#include "../ws/ws.h"
#include <stdio.h>
#include <stdlib.h>

#define BATCH 32 /* events read per subscription per turn */

typedef struct ws_state ws_state_t;

typedef struct wsub {
    ws_state_t *s;
    sl_jobs_job_t *job;
    sl_jobs_sub_t *sub;
    uint64_t next; /* last seq sent */
    int done;      /* end sent: remove */
} wsub_t;

/* A subscribe or cancel waiting for its job from the shared store. */
typedef struct wpend {
    ws_state_t *s;
    sl_jobs_lookup_t *l;
    sl_reply_ws_msg_t m;
    struct wpend *next;
} wpend_t;

struct ws_state {
    sl_ws_t *ws;
    sl_reply_caller_t caller; /* who opened the socket: owner rules as HTTP */
    wsub_t **v;
    wpend_t *pend; /* count against max with v */
    size_t n, npend, max, rr;
    size_t low_water;
    int pumping, again;
};

/* Data is sent as a JSON string when it is UTF-8 (jansson checks), else
 * base64; other events carry the executor's JSON as JSON. */
static void set_payload(json_t *o, const sl_jobs_event_t *ev)
{
    json_t *v = NULL;
    if (ev->type != SL_JOBS_EV_DATA)
        v = json_loadb((const char *)ev->data, ev->len, JSON_DECODE_ANY, NULL);
    if (!v)
        v = json_stringn((const char *)ev->data, ev->len);
    if (!v) {
        char *b = sl_base64_encode(ev->data, ev->len);
        v = json_string(b);
        sl_free(b);
        json_object_set_new(o, "encoding", json_string("base64"));
    }
    json_object_set_new(o, "data", v);
}

/* Send o (consumed). Returns 0, SL_EAGAIN (queue full: nothing sent) or
 * SL_ECLOSED. */
static int send_json(ws_state_t *s, json_t *o)
{
    char *txt = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!txt)
        return SL_ENOMEM;
    int r = sl_ws_send(s->ws, 0, txt, strlen(txt));
    free(txt);
    return r;
}

/* Answers to ops are small; failing to queue one means the client sends
 * ops without reading: close rather than grow. */
static void send_reply(ws_state_t *s, json_t *o)
{
    int r = send_json(s, o);
    if (r != 0 && r != SL_ECLOSED)
        sl_ws_close(s->ws, SL_WS_CLOSE_TRY_AGAIN, "send queue full");
}

static void send_error(ws_state_t *s, const char *id, int status, const char *msg)
{
    sl_req_t *req = sl_ws_req(s->ws);
    if (status == 400)
        sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id, "client sent %s on /jobs/ws", msg);
    json_t *o = json_pack("{s:s,s:i,s:s}", "op", "error", "status", status, "error", msg);
    if (id)
        json_object_set_new(o, "id", json_string(id));
    send_reply(s, o);
}

static int has_room(const ws_state_t *s)
{
    return sl_ws_queued(s->ws) < s->low_water;
}

static int send_event(wsub_t *w, const sl_jobs_event_t *ev)
{
    json_t *o = json_pack("{s:s,s:I,s:s}", "id", sl_jobs_job_id(w->job), "seq", (json_int_t)ev->seq,
                          "type", sl_jobs_ev_type_name(ev->type));
    set_payload(o, ev);
    return send_json(w->s, o);
}

static int send_dropped(wsub_t *w, const sl_jobs_read_t *rd)
{
    json_t *o = json_pack("{s:s,s:I,s:s,s:I,s:I}", "id", sl_jobs_job_id(w->job), "seq",
                          (json_int_t)rd->dropped_to, "type", "dropped", "from",
                          (json_int_t)rd->dropped_from, "to", (json_int_t)rd->dropped_to);
    return send_json(w->s, o);
}

/* One turn for one subscription: up to BATCH events while there is room.
 * Returns 1 when it may have more, 0 when caught up or stopped. */
static int pump_one(wsub_t *w)
{
    sl_jobs_event_t *evs[BATCH];
    sl_jobs_read_t rd;
    memset(&rd, 0, sizeof(rd));
    size_t n = sl_jobs_read(w->job, w->next, evs, BATCH, &rd);
    if (n == 0 && rd.dropped_to) {
        if (send_dropped(w, &rd) != 0)
            return 0;
        w->next = rd.dropped_to;
        return 1;
    }
    size_t i = 0;
    for (; i < n && !w->done && has_room(w->s); i++) {
        if (send_event(w, evs[i]) != 0)
            break;
        w->next = evs[i]->seq;
        w->done = evs[i]->type == SL_JOBS_EV_END;
    }
    for (size_t k = 0; k < n; k++)
        sl_jobs_event_unref(evs[k]);
    return i == BATCH && !w->done;
}

static void wsub_free(wsub_t *w)
{
    sl_jobs_unsubscribe(w->sub);
    sl_jobs_job_unref(w->job);
    sl_free(w);
}

static void remove_at(ws_state_t *s, size_t i)
{
    wsub_free(s->v[i]);
    s->v[i] = s->v[--s->n];
}

static void remove_done(ws_state_t *s)
{
    for (size_t i = 0; i < s->n;) {
        if (s->v[i]->done)
            remove_at(s, i);
        else
            i++;
    }
}

/* Round-robin over the subscriptions until all are caught up or the send
 * queue reaches low water. Re-entry (a send that completes at once) only
 * flags another round. */
static void pump(ws_state_t *s)
{
    if (s->pumping) {
        s->again = 1;
        return;
    }
    s->pumping = 1;
    do {
        s->again = 0;
        int more = 1;
        while (more && has_room(s)) {
            more = 0;
            for (size_t k = 0; k < s->n && has_room(s); k++)
                more |= pump_one(s->v[(s->rr + k) % s->n]);
            s->rr++;
        }
        remove_done(s);
    } while (s->again && has_room(s));
    s->pumping = 0;
}

static void on_wake(void *arg)
{
    wsub_t *w = arg;
    pump(w->s);
}

static wsub_t *find_sub(ws_state_t *s, const char *id, size_t *at)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(sl_jobs_job_id(s->v[i]->job), id) == 0) {
            *at = i;
            return s->v[i];
        }
    }
    return NULL;
}

static wpend_t *find_pend(ws_state_t *s, const char *id)
{
    for (wpend_t *p = s->pend; p; p = p->next)
        if (strcmp(p->m.id, id) == 0)
            return p;
    return NULL;
}

static void subscribe_job(ws_state_t *s, const char *id, sl_jobs_job_t *job,
                          const sl_reply_ws_msg_t *m)
{
    sl_jobs_info_t now;
    sl_jobs_job_info(job, &now);
    if (m->has_from && m->from > now.last_seq) {
        char msg[96];
        snprintf(msg, sizeof(msg), "\"from\" past the job's last event (%llu)",
                 (unsigned long long)now.last_seq);
        sl_jobs_job_unref(job);
        send_error(s, id, 400, msg);
        return;
    }
    sl_worker_t *wk = sl_worker_current();
    wsub_t *w = sl_calloc(1, sizeof(*w));
    w->s = s;
    w->job = job;
    w->next = m->has_from ? m->from : 0;
    if (w->next > 0)
        sl_jobs_note_resume();
    w->sub = sl_jobs_subscribe(job, wk->loop, wk->id, on_wake, w);
    s->v[s->n++] = w;
    send_reply(s, json_pack("{s:s,s:s,s:I,s:s}", "op", "subscribed", "id", now.id, "from",
                            (json_int_t)w->next, "state", sl_jobs_state_name(now.state)));
}

/* The op with its job found (a reference) or not (status). */
static void run_op(ws_state_t *s, const sl_reply_ws_msg_t *m, sl_jobs_job_t *job, int status)
{
    const char *msg;
    if (!job) {
        int code = sl_reply_lookup_error(status, &msg);
        send_error(s, m->id, code, msg);
    } else if (m->op == SL_REPLY_WS_SUBSCRIBE) {
        subscribe_job(s, m->id, job, m);
    } else {
        sl_jobs_cancel(job);
        sl_jobs_job_unref(job);
        send_reply(s, json_pack("{s:s,s:s}", "op", "cancelled", "id", m->id));
    }
}

static void unlink_pend(ws_state_t *s, wpend_t *p)
{
    for (wpend_t **pp = &s->pend; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            s->npend--;
            return;
        }
    }
}

static void on_found(void *arg, sl_jobs_job_t *job, int status)
{
    wpend_t *p = arg;
    ws_state_t *s = p->s;
    unlink_pend(s, p);
    sl_reply_may_see(&s->caller, &job, &status);
    run_op(s, &p->m, job, status);
    sl_free(p);
    pump(s);
}

static void with_job(ws_state_t *s, const sl_reply_ws_msg_t *m)
{
    int status;
    sl_jobs_job_t *job;
    wpend_t *p = sl_calloc(1, sizeof(*p));
    p->s = s;
    p->m = *m;
    p->l = sl_reply_find_job(&s->caller, (sl_str_t){m->id, strlen(m->id)}, on_found, p, &job,
                             &status);
    if (p->l) {
        p->next = s->pend;
        s->pend = p;
        s->npend++;
        return;
    }
    sl_free(p);
    run_op(s, m, job, status);
}

static void op_subscribe(ws_state_t *s, const char *id, const sl_reply_ws_msg_t *m)
{
    size_t at;
    if (find_sub(s, id, &at) || find_pend(s, id)) {
        send_error(s, id, 409, "already subscribed to this job");
        return;
    }
    if (s->n + s->npend >= s->max) {
        send_error(s, id, 429, "too many jobs on this socket (ws_max_jobs)");
        return;
    }
    with_job(s, m);
}

static void op_unsubscribe(ws_state_t *s, const char *id)
{
    size_t at;
    if (!find_sub(s, id, &at)) {
        send_error(s, id, 404, "not subscribed to this job");
        return;
    }
    remove_at(s, at);
    send_reply(s, json_pack("{s:s,s:s}", "op", "unsubscribed", "id", id));
}

static void on_message(sl_ws_t *ws, int binary, const uint8_t *data, size_t len)
{
    ws_state_t *s = sl_ws_data(ws);
    sl_reply_ws_msg_t m;
    const char *why;
    if (sl_reply_ws_parse(data, len, binary, &m, &why) != 0)
        send_error(s, m.id[0] ? m.id : NULL, 400, why);
    else if (m.op == SL_REPLY_WS_SUBSCRIBE)
        op_subscribe(s, m.id, &m);
    else if (m.op == SL_REPLY_WS_UNSUBSCRIBE)
        op_unsubscribe(s, m.id);
    else if (s->npend >= s->max)
        send_error(s, m.id, 429, "too many jobs on this socket (ws_max_jobs)");
    else
        with_job(s, &m);
    pump(s);
}

static void on_drain(sl_ws_t *ws)
{
    pump(sl_ws_data(ws));
}

static void state_free(ws_state_t *s)
{
    while (s->pend) {
        wpend_t *p = s->pend;
        s->pend = p->next;
        sl_jobs_lookup_cancel(p->l);
        sl_free(p);
    }
    while (s->n)
        remove_at(s, s->n - 1);
    sl_free(s->v);
    sl_free(s);
}

static void on_close(sl_ws_t *ws)
{
    state_free(sl_ws_data(ws));
    sl_ws_set_data(ws, NULL);
}

static int on_open(sl_ws_t *ws)
{
    ws_state_t *s = sl_ws_data(ws);
    s->ws = ws;
    return 0;
}

static const sl_ws_app_t jobs_ws_app = {
    .name = "jobs",
    .on_open = on_open,
    .on_message = on_message,
    .on_close = on_close,
    .on_drain = on_drain,
};

void sl_reply_ws_start(sl_req_t *req, const sl_ws_opts_t *opts, size_t max_jobs,
                       const sl_reply_caller_t *caller)
{
    ws_state_t *s = sl_calloc(1, sizeof(*s));
    s->caller = *caller;
    s->max = max_jobs;
    s->v = sl_calloc(max_jobs, sizeof(*s->v));
    s->low_water = SL_MAX(opts->send_queue_bytes / 4, (size_t)1024);
    if (sl_ws_accept(req, opts, &jobs_ws_app, s) != 0)
        state_free(s);
}
