/* sluice - SPDX-License-Identifier: MIT
 *
 * Readers: one client request answered from an entry. A complete entry is
 * sent from its chunks, one chunk per send (the bytes stay valid: the
 * reader holds a ref). An entry still filling is followed, from any
 * worker: the reader sends what is there, then waits among the entry's
 * readers until the fill wakes it (follow.c). What the fill changes is
 * read under the entry's mutex; bytes below the length read there are
 * sent without it. A reader that waited for a fill whose answer
 * may not be shared (not storable, a Vary mismatch, the fill failed) goes
 * upstream itself through the route's proxy (cc_pass), as does one that
 * waited longer than lock_s for the head.
 *
 * Stored responses answer the client's own conditionals (304) and single
 * ranges (206 / 416) once their length is known. Every answer says what
 * happened in Cache-Status (RFC 9211) and carries Age (RFC 9111 5.1).
 */
#include "cache_int.h"
#include "../http.h"
#include "../log.h"
#include "../worker.h"
#include <stdio.h>

static double wall_now(void)
{
    return (double)sl_wall_ms() / 1000.0;
}

/* ---- leaving ---- */

static void stop_lock(cc_reader_t *r)
{
    if (r->lock_on) {
        sl_worker_t *w = sl_worker_current();
        ev_timer_stop(w->loop, &r->lock);
        r->lock_on = 0;
    }
}

static void release(cc_reader_t *r)
{
    stop_lock(r);
    cc_entry_t *e = r->e;
    if (!e)
        return;
    cc_detach(r);
    r->e = NULL;
    cc_entry_unref(e);
}

static void give_up(cc_reader_t *r, const char *detail)
{
    sl_req_t *req = r->req;
    const sl_cache_route_t *cr = r->cr;
    release(r);
    r->done = 1;
    cc_pass(req, cr, CC_R_PASS, detail);
}

/* ---- the head ---- */

static void status_field(cc_reader_t *r, const cc_entry_t *e, const char *why, int kept, double ttl,
                         char *out, size_t cap)
{
    long long t = (long long)(ttl < 0 ? ttl - 0.999 : ttl);
    const char *stored = kept ? "; stored" : "";
    switch (r->kind) {
    case CC_R_HIT:
        if (t >= 0 && cap >= 40) { /* every hit: without snprintf */
            memcpy(out, "sluice; hit; ttl=", 17);
            sl_u64_format(out + 17, (uint64_t)t);
        } else {
            snprintf(out, cap, "sluice; hit; ttl=%lld", t);
        }
        break;
    case CC_R_STALE:
        if (r->fwd_status)
            snprintf(out, cap, "sluice; fwd=stale; fwd-status=%d; detail=stale-if-error",
                     r->fwd_status);
        else
            snprintf(out, cap, "sluice; hit; ttl=%lld; detail=stale", t);
        break;
    case CC_R_REVALIDATED: snprintf(out, cap, "sluice; fwd=stale; fwd-status=304%s", stored); break;
    case CC_R_COLLAPSED:
        snprintf(out, cap, "sluice; fwd=uri-miss; fwd-status=%d; collapsed%s", e->fwd_status,
                 stored);
        break;
    default:
        snprintf(out, cap, "sluice; fwd=%s; fwd-status=%d%s%s%s", r->fwd, e->fwd_status, stored,
                 why ? "; detail=" : "", why ? why : "");
    }
}

/* RFC 9110 13.1.2 / 13.1.3: does the client already have it? */
static int not_modified(const sl_req_t *req, const cc_entry_t *e)
{
    if (e->status != 200)
        return 0;
    const sl_header_t *inm = sl_req_header(req, "if-none-match");
    if (inm)
        return e->etag.n && sl_http_etag_match(inm->value, e->etag.p, 1);
    const sl_header_t *ims = sl_req_header(req, "if-modified-since");
    if (!ims || !e->last_modified.n)
        return 0;
    int64_t since = sl_http_date_parse(ims->value), lm = sl_http_date_parse(e->last_modified);
    return since >= 0 && lm >= 0 && lm <= since;
}

/* The fields a 304 carries (RFC 9110 15.4.5). */
static int in_304(sl_str_t n)
{
    return sl_str_eq(n, "cache-control") || sl_str_eq(n, "content-location") ||
           sl_str_eq(n, "date") || sl_str_eq(n, "etag") || sl_str_eq(n, "expires") ||
           sl_str_eq(n, "vary") || sl_str_eq(n, "last-modified");
}

/* A single Range on a representation of known size: 206 or 416, else
 * the whole (If-Range that does not match: the whole too). */
static int range_of(cc_reader_t *r, const cc_entry_t *e, uint64_t size)
{
    const sl_req_t *req = r->req;
    const sl_header_t *rg = sl_req_header(req, "range");
    if (!rg || e->status != 200 || !sl_str_eq(req->method, "GET"))
        return 200;
    const sl_header_t *ir = sl_req_header(req, "if-range");
    if (ir) {
        int ok = ir->value.n && ir->value.p[0] == '"'
                     ? e->etag.n && sl_http_etag_match(ir->value, e->etag.p, 0)
                     : e->last_modified.n &&
                           sl_http_date_parse(ir->value) == sl_http_date_parse(e->last_modified);
        if (!ok)
            return 200;
    }
    uint64_t first, last;
    sl_http_range_t k = sl_http_range_parse(rg->value, size, &first, &last);
    char cr[80];
    if (k == SL_HTTP_RANGE_UNSAT) {
        snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)size);
        sl_resp_header_add(r->req, "content-range", cr);
        return 416;
    }
    if (k != SL_HTTP_RANGE_ONE)
        return 200;
    snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)first,
             (unsigned long long)last, (unsigned long long)size);
    sl_resp_header_add(r->req, "content-range", cr);
    r->off = first;
    r->end = last + 1;
    return 206;
}

/* What a reader needs of the fill's progress, read at once (under the
 * entry's mutex while following a fill; a complete entry needs none). */
typedef struct snap {
    int state, has_head, shareable, kept, fwd_status;
    const char *why_pass;
    cc_entry_t *fallback; /* ref taken */
    uint64_t avail;       /* body bytes there are */
} snap_t;

static void lock(const cc_reader_t *r)
{
    if (r->attached)
        pthread_mutex_lock(&r->e->mu);
}

static void unlock(const cc_reader_t *r)
{
    if (r->attached)
        pthread_mutex_unlock(&r->e->mu);
}

static void take_snap(const cc_reader_t *r, snap_t *s)
{
    const cc_entry_t *e = r->e;
    lock(r);
    s->state = atomic_load(&e->state);
    s->has_head = e->has_head;
    s->shareable = e->shareable;
    s->kept = e->shareable && !e->transient;
    s->why_pass = e->why_pass;
    s->fwd_status = e->fwd_status;
    s->fallback = e->fallback;
    if (s->fallback)
        cc_entry_ref(s->fallback);
    s->avail = cc_body(e)->body_len;
    unlock(r);
}

static void send_head(cc_reader_t *r, const snap_t *sn)
{
    cc_entry_t *e = r->e;
    sl_req_t *req = r->req;
    double now = wall_now(), age = cc_age(e, now);
    int complete = sn->state == CE_COMPLETE;
    int64_t size = e->clen >= 0 ? e->clen : complete ? (int64_t)sn->avail : -1;
    int status = e->status;
    stop_lock(r);
    if (r->kind == CC_R_MISS && e->fwd_status == 304 && e->body_of)
        r->kind = CC_R_REVALIDATED;
    if (not_modified(req, e))
        status = 304;
    else if (size >= 0)
        status = range_of(r, e, (uint64_t)size);
    for (size_t i = 0; i < e->nh; i++)
        if (status != 304 || in_304(e->h[i].name))
            sl_resp_header_add_ref(req, e->h[i].name.p, e->h[i].name.n, e->h[i].value.p,
                                   e->h[i].value.n);
    char buf[256];
    if (r->kind != CC_R_MISS || age >= 1) {
        sl_u64_format(buf, age > 0 ? (uint64_t)age : 0);
        sl_resp_header_add(req, "age", buf);
    }
    status_field(r, e, sn->why_pass, sn->kept, e->lifetime - age, buf, sizeof(buf));
    sl_resp_header_add(req, "cache-status", buf);
    req->res.status = status == 200 ? e->status : status;
    r->no_body = req->is_head || status == 304 || status == 416 || e->status == 204;
    if (status == 206)
        req->res.content_length = (int64_t)(r->end - r->off);
    else if (status == 304)
        req->res.content_length = -1;
    else if (status == 416)
        req->res.content_length = 0;
    else
        req->res.content_length = e->status == 204 ? -1 : size;
    r->head_sent = 1;
    cc_count(e->z, req, r->kind);
}

/* A Vary mismatch found once the fill's head is in: look again (another
 * variant, or a fill of its own), or go upstream the second time. */
static int vary_differs(cc_reader_t *r)
{
    const cc_entry_t *e = r->e;
    if (!e->vary.n || r->origin || r->kind != CC_R_COLLAPSED)
        return 0;
    char buf[CC_VARY_MAX];
    ssize_t n = cc_vary_values(r->req, e->vary, buf, sizeof(buf));
    if (n >= 0 && (size_t)n == e->vary_len && memcmp(buf, e->vary_vals, (size_t)n) == 0)
        return 0;
    sl_req_t *req = r->req;
    const sl_cache_route_t *cr = r->cr;
    int again = r->restarted;
    release(r);
    r->done = 1;
    if (again)
        cc_pass(req, cr, CC_R_PASS, "vary");
    else
        cc_lookup(req, cr, 1);
    return 1;
}

/* 1 when the head is out; 0 while waiting, or after handing req on. */
static int head(cc_reader_t *r)
{
    snap_t sn;
    take_snap(r, &sn);
    if (sn.state == CE_FAILED) {
        if (!sn.fallback) {
            give_up(r, "fill-failed");
            return 0;
        }
        r->fwd_status = sn.fwd_status;
        release(r);
        r->e = sn.fallback; /* the snapshot's ref */
        r->kind = CC_R_STALE;
        take_snap(r, &sn); /* complete: no lock */
        send_head(r, &sn);
        return 1;
    }
    if (sn.fallback)
        cc_entry_unref(sn.fallback);
    if (!sn.has_head)
        return 0;
    if (!sn.shareable && !r->origin) {
        give_up(r, sn.why_pass);
        return 0;
    }
    if (vary_differs(r))
        return 0;
    send_head(r, &sn);
    return 1;
}

/* ---- the body ---- */

static void add_trailers(cc_reader_t *r)
{
    const cc_entry_t *e = r->e;
    for (size_t i = 0; i < e->nt; i++)
        sl_resp_trailer_add(r->req, e->t[i].name.p, e->t[i].value.p);
}

static void final_send(cc_reader_t *r, const uint8_t *p, size_t n)
{
    r->done = 1;
    if (!r->no_body)
        add_trailers(r);
    sl_resp_send(r->req, p, n, 1);
}

/* The next run to send, found under the lock; its bytes are below the
 * published length, so they stay as they are after it. */
static int next_run(cc_reader_t *r, const uint8_t **p, size_t *n, int *failed)
{
    const cc_entry_t *e = r->e, *b = cc_body(e);
    int final = 0;
    *p = NULL;
    *n = 0;
    lock(r);
    int st = atomic_load(&e->state);
    uint64_t avail = b->body_len;
    uint64_t end = r->end != UINT64_MAX ? r->end : st == CE_COMPLETE ? avail : UINT64_MAX;
    if (r->off >= end) {
        final = 1;
    } else if (r->off < avail) {
        if (!r->ck) {
            r->ck = b->first;
            r->ck_base = b->base;
        }
        while (r->off >= r->ck_base + r->ck->len && r->ck->next) {
            r->ck_base += r->ck->len;
            r->ck = r->ck->next;
        }
        *n = (size_t)SL_MIN(r->ck_base + r->ck->len - r->off, end - r->off);
        *p = r->ck->data + (r->off - r->ck_base);
        r->off += *n;
        final = r->off == end;
    }
    *failed = st == CE_FAILED;
    unlock(r);
    return final;
}

static void body(cc_reader_t *r)
{
    if (r->no_body) {
        final_send(r, NULL, 0);
        return;
    }
    const uint8_t *p;
    size_t n;
    int failed;
    if (next_run(r, &p, &n, &failed)) {
        final_send(r, p, n);
    } else if (n) {
        r->sending = 1;
        sl_resp_send(r->req, p, n, 0);
    } else if (failed) {
        r->done = 1;
        sl_log_stream(SL_LOG_WARN, r->req->conn, r->req->stream_id,
                      "cache: the fill of \"%s\" failed mid-body; response reset", r->e->key);
        sl_resp_reset(r->req, SL_RESET_INTERNAL_ERROR);
    }
    /* else: wait for the fill (attached) */
}

void cc_reader_pump(cc_reader_t *r)
{
    if (r->done || r->sending)
        return;
    if (!r->head_sent && !head(r))
        return;
    body(r);
}

/* ---- callbacks ---- */

static void on_proceed(sl_req_t *req)
{
    cc_reader_t *r = req->hdata;
    r->sending = 0;
    if (r->attached)
        cc_readers_moved(r->e);
    cc_reader_pump(r);
}

static void on_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    cc_reader_t *r = req->hdata;
    r->done = 1;
    release(r);
}

static const sl_handler_cbs_t reader_cbs = {
    .on_body = sl_req_discard_body,
    .on_proceed = on_proceed,
    .on_close = on_close,
};

static void on_lock_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    cc_reader_t *r = t->data;
    r->lock_on = 0;
    give_up(r, "lock-timeout");
}

/* Follow e while it fills; 1 when the head is still to come. */
static int follow(cc_reader_t *r)
{
    cc_entry_t *e = r->e;
    if (atomic_load(&e->state) != CE_FILLING)
        return 0; /* complete (immutable) or failed: nothing to follow */
    pthread_mutex_lock(&e->mu);
    int waiting = 0;
    if (atomic_load(&e->state) == CE_FILLING) {
        cc_attach_locked(r);
        waiting = !e->has_head;
    }
    pthread_mutex_unlock(&e->mu);
    return waiting;
}

void cc_serve(sl_req_t *req, const sl_cache_route_t *cr, cc_entry_t *e, cc_result_t kind,
              const char *fwd, int restarted)
{
    cc_reader_t *r = sl_pool_alloc(&req->pool, sizeof(*r));
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->e = e;
    r->cr = cr;
    r->kind = kind;
    r->origin = fwd != NULL;
    r->restarted = restarted;
    r->end = UINT64_MAX;
    r->fwd = fwd ? fwd : "uri-miss";
    req->hdata = r;
    req->cbs = &reader_cbs;
    if (follow(r) && !r->origin && cr->lock_s > 0) {
        sl_worker_t *w = sl_worker_current();
        ev_timer_init(&r->lock, on_lock_timeout, cr->lock_s, 0.);
        r->lock.data = r;
        ev_timer_start(w->loop, &r->lock);
        r->lock_on = 1;
    }
    cc_reader_pump(r);
}

void cc_pass(sl_req_t *req, const sl_cache_route_t *cr, cc_result_t kind, const char *detail)
{
    char buf[160];
    cc_count(cr->z, req, kind);
    snprintf(buf, sizeof(buf), "sluice; fwd=%s; detail=%s",
             kind == CC_R_BYPASS ? "bypass" : "uri-miss", detail);
    sl_resp_header_add(req, "cache-status", buf);
    cr->up->start(req, cr->up->arg);
}
