/* sluice - SPDX-License-Identifier: MIT
 *
 * Fills: one upstream request per cache miss (or revalidation), owned by
 * the cache rather than by the client that caused it, so that the fill
 * goes on when that client leaves and every waiting client reads the same
 * bytes. A fill is a detached sl_req_t (no connection) given to the proxy
 * engine as if a client had sent it; its response sink (fill_ops) stores
 * the head and appends the body to the entry, then wakes the readers.
 *
 *   proxy engine --sl_resp_send--> fill_send --append--> entry chunks
 *                                       \--cc_wake--> readers (serve.c)
 *
 * A storable response is kept whole (up to max_entry_bytes) and the fill
 * reads as fast as the upstream sends. Anything else (not storable, too
 * large, the zone full) makes the entry transient: out of the table,
 * streamed to the readers it has, with what all of them have read freed
 * and the upstream paused (no on_proceed) while the slowest is CC_WINDOW
 * behind. The engine's callbacks (on_proceed, on_close) never run inside
 * its own sl_resp_* call: they go through a zero timer.
 */
#include "cache_int.h"
#include "../config.h"
#include "../log.h"
#include "../worker.h"
#include <ctype.h>
#include <stdio.h>

struct cc_fill {
    sl_req_t req; /* detached: req.conn is NULL, req.cfg is held */
    cc_entry_t *e;
    cc_entry_t *stale; /* being revalidated; the stale-if-error fallback */
    const sl_cache_route_t *cr;
    struct ev_loop *loop;
    ev_timer kick;
    double req_time;
    cc_cc_t qcc; /* the request's Cache-Control */
    int has_auth;
    int close_err;
    unsigned want_proceed : 1, want_close : 1, paused : 1, closed : 1, drop : 1;
    cc_fill_t *prev, *next; /* the worker's fills */
};

static _Thread_local cc_fill_t *fills;

static double wall_now(void)
{
    return (double)sl_wall_ms() / 1000.0;
}

/* ---- the engine's callbacks, from the loop ---- */

static void fill_free(cc_fill_t *f)
{
    ev_timer_stop(f->loop, &f->kick);
    if (f->prev)
        f->prev->next = f->next;
    else
        fills = f->next;
    if (f->next)
        f->next->prev = f->prev;
    f->e->fill = NULL;
    cc_entry_unref(f->e);
    if (f->stale) {
        atomic_store(&f->stale->refreshing, 0);
        cc_entry_unref(f->stale);
    }
    sl_config_release(f->req.cfg);
    sl_req_dispose(&f->req);
    sl_free(f);
}

static void on_kick(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    cc_fill_t *f = t->data;
    if (f->want_close) {
        f->closed = 1;
        if (f->req.cbs && f->req.cbs->on_close)
            f->req.cbs->on_close(&f->req, f->close_err);
        fill_free(f);
        return;
    }
    if (f->want_proceed && !f->paused) {
        f->want_proceed = 0;
        if (f->req.cbs && f->req.cbs->on_proceed)
            f->req.cbs->on_proceed(&f->req);
    }
}

static void schedule(cc_fill_t *f)
{
    if (!ev_is_active(&f->kick)) {
        ev_timer_set(&f->kick, 0., 0.);
        ev_timer_start(f->loop, &f->kick);
    }
}

static void close_soon(cc_fill_t *f, int err)
{
    if (!f->want_close)
        f->close_err = err;
    f->want_close = 1;
    schedule(f);
}

/* ---- the entry's head ---- */

/* Fields into one block: the array, then the strings, names lower-cased
 * (an HTTP/1.1 upstream's keep their case). Age is dropped: it is made
 * when serving. */
static sl_header_t *copy_fields(const sl_header_t *h, size_t n, size_t *nout, char **mem,
                                size_t *bytes)
{
    size_t need = n * sizeof(sl_header_t);
    for (size_t i = 0; i < n; i++)
        need += h[i].name.n + h[i].value.n + 2;
    char *m = sl_malloc(need ? need : 1);
    sl_header_t *v = (sl_header_t *)m;
    char *s = m + n * sizeof(sl_header_t);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (sl_str_caseeq(h[i].name, "age"))
            continue;
        for (size_t j = 0; j < h[i].name.n; j++)
            s[j] = (char)tolower((unsigned char)h[i].name.p[j]);
        s[h[i].name.n] = 0;
        v[k].name = (sl_str_t){s, h[i].name.n};
        s += h[i].name.n + 1;
        memcpy(s, h[i].value.p, h[i].value.n);
        s[h[i].value.n] = 0;
        v[k].value = (sl_str_t){s, h[i].value.n};
        s += h[i].value.n + 1;
        k++;
    }
    *nout = k;
    *mem = m;
    *bytes = need;
    return v;
}

static sl_str_t field(const cc_entry_t *e, const char *name)
{
    const sl_header_t *f = cc_find(e->h, e->nh, name);
    return f ? f->value : (sl_str_t){"", 0};
}

/* Status, fields and freshness of r into e. Returns why e may not be
 * stored, or NULL. */
static const char *set_head(cc_fill_t *f, const cc_resp_t *r)
{
    cc_entry_t *e = f->e;
    size_t bytes;
    e->status = r->status;
    e->h = copy_fields(r->h, r->n, &e->nh, &e->hmem, &bytes);
    cc_zone_charge(e, bytes);
    e->vary = field(e, "vary");
    e->etag = field(e, "etag");
    e->last_modified = field(e, "last-modified");
    e->resp_time = r->resp_time;
    e->init_age = cc_initial_age(r, f->req_time);
    e->lifetime = cc_lifetime(r);
    e->swr = r->cc.swr >= 0 ? r->cc.swr : (int64_t)f->cr->swr_s;
    e->sie = r->cc.sie >= 0 ? r->cc.sie : (int64_t)f->cr->sie_s;
    e->must_revalidate = r->cc.must_revalidate;
    e->no_cache = r->cc.no_cache;
    e->fwd_status = r->status;
    if (e->vary.n) {
        char buf[CC_VARY_MAX];
        ssize_t n = cc_vary_values(&f->req, e->vary, buf, sizeof(buf));
        if (n < 0)
            return "vary-too-large";
        e->vary_vals = sl_malloc((size_t)n + 1);
        memcpy(e->vary_vals, buf, (size_t)n);
        e->vary_vals[n] = 0;
        e->vary_len = (size_t)n;
        cc_zone_charge(e, (size_t)n + 1);
    }
    const char *why = cc_unstorable(r, &f->qcc, f->has_auth);
    if (!why && e->lifetime <= 0 && !e->etag.n && !e->last_modified.n)
        why = "no-lifetime";
    return why;
}

/* Leave the table; readers already following stay. No readers left: the
 * upstream request is cancelled. */
static void go_transient(cc_fill_t *f)
{
    cc_entry_t *e = f->e;
    if (e->transient)
        return;
    e->transient = 1;
    cc_zone_unlink(e);
    if (!cc_has_readers(e))
        close_soon(f, SL_ECANCELED);
}

/* Remember for pass_s that the key is not cacheable, so that requests go
 * straight upstream instead of queueing behind one another's fills. Not
 * for answers that say nothing of the resource (errors, the request's
 * own no-store or credentials). */
static void mark_pass(cc_fill_t *f, const char *why)
{
    cc_entry_t *e = f->e;
    if (f->cr->pass_s <= 0 || e->status >= 500 || strcmp(why, "request-no-store") == 0 ||
        strcmp(why, "authorization") == 0)
        return;
    cc_entry_t *m = cc_entry_new(e->z, e->key, e->klen, e->hash);
    atomic_store(&m->state, CE_PASS);
    m->pass_until = wall_now() + f->cr->pass_s;
    m->why_pass = why;
    if (cc_zone_link(m) == 0)
        cc_zone_settle(m, f->cr->max_variants);
    cc_entry_unref(m);
}

/* May the stale entry stand in for a failed fill (RFC 5861 4)? */
static int stale_on_error_ok(const cc_entry_t *s, double now)
{
    if (!s || s->must_revalidate || s->no_cache || s->sie < 0)
        return 0;
    return cc_age(s, now) - s->lifetime <= (double)s->sie;
}

static void fail_over(cc_fill_t *f)
{
    cc_entry_t *e = f->e;
    cc_entry_ref(f->stale);
    e->fallback = f->stale;
    f->drop = 1;
    atomic_store(&e->state, CE_FAILED);
    go_transient(f);
}

/* A 304 to a revalidation: the stale entry's body with its fields
 * updated by the 304's (RFC 9111 4.3.4), fresh from now. */
static void refresh(cc_fill_t *f, const cc_resp_t *r304)
{
    cc_entry_t *e = f->e, *s = f->stale;
    sl_header_t merged[256];
    size_t n = 0;
    for (size_t i = 0; i < s->nh && n < SL_ARRAY_LEN(merged); i++)
        if (!cc_find(r304->h, r304->n, s->h[i].name.p)) /* stored names are lower-case */
            merged[n++] = s->h[i];
    for (size_t i = 0; i < r304->n && n < SL_ARRAY_LEN(merged); i++)
        merged[n++] = r304->h[i];
    cc_resp_t r = {s->status, merged, n, {0}, r304->resp_time};
    cc_cc_parse(merged, n, &r.cc);
    set_head(f, &r);
    e->fwd_status = 304;
    e->clen = (int64_t)cc_body(s)->body_len;
    e->body_len = cc_body(s)->body_len;
    cc_entry_ref((cc_entry_t *)cc_body(s));
    e->body_of = (cc_entry_t *)cc_body(s);
    e->shareable = 1;
    e->has_head = 1;
    f->drop = 1;
    cc_zone_unlink(s);
    if (cc_zone_complete(e)) {
        cc_zone_settle(e, f->cr->max_variants);
        atomic_fetch_add_explicit(&e->z->stored, 1, memory_order_relaxed);
    }
}

static void on_head(cc_fill_t *f)
{
    sl_req_t *req = &f->req;
    cc_entry_t *e = f->e;
    cc_resp_t r = {req->res.status, req->res.headers.v, req->res.headers.n, {0}, wall_now()};
    cc_cc_parse(r.h, r.n, &r.cc);
    e->fwd_status = r.status;
    if (f->stale && r.status == 304 && f->stale->has_head) {
        refresh(f, &r);
        return;
    }
    if (r.status >= 500 && stale_on_error_ok(f->stale, r.resp_time)) {
        fail_over(f);
        return;
    }
    const char *why = set_head(f, &r);
    e->clen = (r.status == 204 || r.status == 304) ? 0 : req->res.content_length;
    e->shareable = why == NULL;
    e->has_head = 1;
    if (why) {
        e->why_pass = why;
        mark_pass(f, why);
        go_transient(f);
    } else if (e->clen > f->cr->max_entry_bytes) {
        e->why_pass = "too-large";
        go_transient(f);
    }
}

/* ---- the body ---- */

static void append(cc_fill_t *f, const uint8_t *p, size_t n)
{
    cc_entry_t *e = f->e;
    if (!e->transient && e->body_len + n > (uint64_t)f->cr->max_entry_bytes) {
        e->why_pass = "too-large";
        go_transient(f);
    }
    while (n) {
        cc_chunk_t *c = e->last;
        if (!c || c->len == c->cap) {
            size_t cap = CC_CHUNK;
            if (e->clen >= 0 && (uint64_t)e->clen > e->body_len)
                cap = (size_t)SL_MIN((uint64_t)CC_CHUNK, (uint64_t)e->clen - e->body_len);
            else if (e->clen < 0 && !e->first)
                cap = SL_MAX(n, (size_t)4096); /* small bodies of unknown length */
            cap = SL_MAX(cap, SL_MIN(n, (size_t)CC_CHUNK));
            c = sl_malloc(sizeof(*c) + cap);
            c->next = NULL;
            c->len = 0;
            c->cap = cap;
            if (e->last)
                e->last->next = c;
            else
                e->first = c;
            e->last = c;
            if (cc_zone_charge(e, sizeof(*c) + cap) != 0 && !e->transient) {
                e->why_pass = "zone-full";
                go_transient(f);
            }
        }
        size_t k = SL_MIN(n, c->cap - c->len);
        memcpy(c->data + c->len, p, k);
        c->len += k;
        e->body_len += k;
        p += k;
        n -= k;
    }
    if (e->transient && e->body_len - cc_slowest(e) > CC_WINDOW)
        f->paused = 1;
}

static void copy_trailers(cc_fill_t *f)
{
    cc_entry_t *e = f->e;
    const sl_headers_t *t = &f->req.res.trailers;
    if (!t->n || f->drop)
        return;
    size_t bytes;
    e->t = copy_fields(t->v, t->n, &e->nt, &e->tmem, &bytes);
    cc_zone_charge(e, bytes);
}

static void finish(cc_fill_t *f)
{
    cc_entry_t *e = f->e;
    if (f->drop)
        return;
    copy_trailers(f);
    if (cc_zone_complete(e)) {
        cc_zone_settle(e, f->cr->max_variants);
        atomic_fetch_add_explicit(&e->z->stored, 1, memory_order_relaxed);
        if (f->stale)
            cc_zone_unlink(f->stale); /* replaced */
    }
}

/* ---- the response sink (sl_req_ops_t) ---- */

/* Everything the fill changes in its entry happens under the entry's
 * mutex (readers on other workers look); the wake-up comes after. */
static int fill_send(sl_req_t *req, const uint8_t *p, size_t n, int final)
{
    cc_fill_t *f = req->pdata;
    pthread_mutex_lock(&f->e->mu);
    if (!req->head_sent) {
        req->head_sent = 1;
        on_head(f);
    }
    if (!f->drop && n)
        append(f, p, n);
    if (final)
        finish(f);
    pthread_mutex_unlock(&f->e->mu);
    if (final) {
        close_soon(f, 0);
    } else {
        f->want_proceed = 1;
        if (!f->paused)
            schedule(f);
    }
    cc_wake(f->e);
    return 0;
}

static int fill_informational(sl_req_t *req, int status, const sl_headers_t *h)
{
    SL_UNUSED(req);
    SL_UNUSED(status);
    SL_UNUSED(h);
    return 0; /* 103 goes to nobody: readers join at the final head */
}

static void fill_reset(sl_req_t *req, uint32_t code)
{
    SL_UNUSED(code);
    cc_fill_t *f = req->pdata;
    cc_entry_t *e = f->e;
    pthread_mutex_lock(&e->mu);
    if (!e->has_head && !f->drop && stale_on_error_ok(f->stale, wall_now())) {
        fail_over(f);
    } else if (!f->drop) {
        atomic_store(&e->state, CE_FAILED);
        go_transient(f);
    }
    pthread_mutex_unlock(&e->mu);
    f->drop = 1;
    close_soon(f, SL_ECANCELED);
    cc_wake(e);
}

static void fill_consume(sl_req_t *req, size_t n)
{
    SL_UNUSED(req);
    SL_UNUSED(n); /* a fill sends no body */
}

static const sl_req_ops_t fill_ops = {
    .send = fill_send,
    .informational = fill_informational,
    .reset = fill_reset,
    .consume = fill_consume,
};

/* A chunk some reader still reads from (its ck). */
static int chunk_held(const cc_entry_t *e, const cc_chunk_t *c)
{
    for (const cc_group_t *g = e->groups; g; g = g->next)
        for (const cc_reader_t *r = g->readers; r; r = r->next)
            if (r->ck == c)
                return 1;
    return 0;
}

void cc_fill_readers_moved(cc_entry_t *e)
{
    cc_fill_t *f = e->fill;
    pthread_mutex_lock(&e->mu);
    if (!e->transient) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    uint64_t low = cc_slowest(e);
    /* Chunks every reader has left behind; the last stays for the fill
     * to append to. */
    while (e->first && e->first != e->last && e->base + e->first->len <= low &&
           !chunk_held(e, e->first)) {
        cc_chunk_t *c = e->first;
        e->first = c->next;
        e->base += c->len;
        cc_zone_uncharge(e, sizeof(*c) + c->cap);
        sl_free(c);
    }
    int readers = cc_has_readers(e);
    uint64_t ahead = e->body_len - low;
    pthread_mutex_unlock(&e->mu);
    if (!f || f->want_close)
        return;
    if (!readers) {
        close_soon(f, SL_ECANCELED); /* nobody left to read it */
    } else if (f->paused && ahead <= CC_WINDOW / 2) {
        f->paused = 0;
        if (f->want_proceed)
            schedule(f);
    }
}

/* ---- starting ---- */

static int is_conditional(sl_str_t n)
{
    return sl_str_eq(n, "if-none-match") || sl_str_eq(n, "if-modified-since") ||
           sl_str_eq(n, "if-match") || sl_str_eq(n, "if-unmodified-since") ||
           sl_str_eq(n, "if-range") || sl_str_eq(n, "range");
}

static sl_str_t pool_dup(sl_pool_t *pool, sl_str_t s)
{
    char *p = sl_pool_alloc(pool, s.n + 1);
    memcpy(p, s.p, s.n);
    p[s.n] = 0;
    return (sl_str_t){p, s.n};
}

static const char *dup_c(sl_pool_t *pool, const char *s)
{
    return s ? pool_dup(pool, (sl_str_t){s, strlen(s)}).p : NULL;
}

/* The fill's request: origin's, as GET, without its conditionals and
 * Range (the cache wants the whole representation), with the stale
 * entry's validators when revalidating. */
static void copy_request(cc_fill_t *f, const sl_req_t *o)
{
    sl_req_t *q = &f->req;
    sl_pool_t *pool = &q->pool;
    q->version_minor = o->version_minor;
    q->worker_id = o->worker_id;
    q->method = SL_STR("GET");
    q->target = pool_dup(pool, o->target);
    q->path = pool_dup(pool, o->path);
    q->raw_path = pool_dup(pool, o->raw_path);
    q->query = pool_dup(pool, o->query);
    q->authority = pool_dup(pool, o->authority);
    q->scheme = pool_dup(pool, o->scheme);
    q->body_done = 1;
    q->tls.version = dup_c(pool, o->tls.version);
    q->tls.alpn = dup_c(pool, o->tls.alpn);
    q->tls.sni = dup_c(pool, o->tls.sni);
    q->tls.client_fp = dup_c(pool, o->tls.client_fp);
    q->tls.client_subject = dup_c(pool, o->tls.client_subject);
    q->peer = dup_c(pool, o->peer);
    q->route = o->route;
    for (size_t i = 0; i < o->headers.n; i++) {
        const sl_header_t *h = &o->headers.v[i];
        if (!is_conditional(h->name))
            sl_headers_add(pool, &q->headers, h->name.p, h->name.n, h->value.p, h->value.n);
    }
    const cc_entry_t *s = f->stale;
    if (s && s->etag.n)
        sl_headers_add(pool, &q->headers, "if-none-match", 13, s->etag.p, s->etag.n);
    if (s && s->last_modified.n)
        sl_headers_add(pool, &q->headers, "if-modified-since", 17, s->last_modified.p,
                       s->last_modified.n);
}

int cc_fill_start(cc_entry_t *e, const sl_req_t *origin, const sl_cache_route_t *cr,
                  cc_entry_t *stale)
{
    sl_worker_t *w = sl_worker_current();
    const sl_config_t *cfg = sl_req_config(origin);
    if (!w || !cfg)
        return SL_EINVAL;
    cc_fill_t *f = sl_calloc(1, sizeof(*f));
    sl_req_init(&f->req, origin->proto, NULL);
    sl_config_hold(cfg);
    f->req.cfg = cfg;
    f->req.ops = &fill_ops;
    f->req.pdata = f;
    f->req.stream_id = origin->stream_id;
    f->e = e;
    cc_entry_ref(e);
    e->fill = f; /* e->owner was set before e could be found */
    if (stale) {
        cc_entry_ref(stale);
        f->stale = stale;
    }
    f->cr = cr;
    f->loop = w->loop;
    f->req_time = wall_now();
    cc_cc_parse(origin->headers.v, origin->headers.n, &f->qcc);
    f->has_auth = sl_req_header(origin, "authorization") != NULL;
    ev_init(&f->kick, on_kick);
    f->kick.data = f;
    f->next = fills;
    if (fills)
        fills->prev = f;
    fills = f;
    copy_request(f, origin);
    cr->up->start(&f->req, cr->up->arg);
    return 0;
}

void sl_cache_worker_exit(void)
{
    while (fills) {
        cc_fill_t *f = fills;
        cc_entry_t *e = f->e;
        pthread_mutex_lock(&e->mu);
        int filling = atomic_load(&e->state) == CE_FILLING;
        if (filling)
            atomic_store(&e->state, CE_FAILED); /* followers elsewhere stop waiting */
        pthread_mutex_unlock(&e->mu);
        if (filling) {
            cc_zone_unlink(e);
            cc_wake(e);
        }
        if (!f->closed && f->req.cbs && f->req.cbs->on_close)
            f->req.cbs->on_close(&f->req, SL_ECANCELED);
        f->closed = 1;
        fill_free(f);
    }
}
