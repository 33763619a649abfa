/* sluice - SPDX-License-Identifier: MIT
 *
 * The lookup: what a request on a cached route gets.
 *
 *   not GET/HEAD ------------------------------> proxied (unsafe methods
 *                                                invalidate the key first)
 *   a stored variant, fresh for this request ---> hit
 *   stale, within stale-while-revalidate ------> stale hit + one refresh
 *   stale otherwise ---------------------------> revalidation fill (with
 *                                                the validators), reader
 *   a fill under way on this worker -----------> collapsed onto it
 *   "not cacheable" remembered (pass_s) -------> proxied
 *   nothing -----------------------------------> fill, reader
 *
 * A fill runs on the worker of the request that started it; requests on
 * any worker follow it (follow.c). Stored entries are shared by every
 * worker.
 */
#include "cache_int.h"
#include "../worker.h"
#include <ctype.h>

static double wall_now(void)
{
    return (double)sl_wall_ms() / 1000.0;
}

ssize_t cc_key(const sl_req_t *req, const sl_cache_route_t *cr, char *out, size_t cap)
{
    sl_str_t path = cr->up->raw_path && req->raw_path.n ? req->raw_path : req->path;
    size_t need = req->authority.n + path.n + (req->query.n ? req->query.n + 1 : 0);
    if (need > cap)
        return SL_ETOOBIG;
    for (size_t i = 0; i < req->authority.n; i++)
        out[i] = (char)tolower((unsigned char)req->authority.p[i]);
    size_t n = req->authority.n;
    memcpy(out + n, path.p, path.n);
    n += path.n;
    if (req->query.n) {
        out[n++] = '?';
        memcpy(out + n, req->query.p, req->query.n);
        n += req->query.n;
    }
    return (ssize_t)n;
}

static int vary_ok(const cc_entry_t *e, const sl_req_t *req)
{
    if (!e->vary.n)
        return 1;
    char buf[CC_VARY_MAX];
    ssize_t n = cc_vary_values(req, e->vary, buf, sizeof(buf));
    return n >= 0 && (size_t)n == e->vary_len && memcmp(buf, e->vary_vals, (size_t)n) == 0;
}

typedef struct found {
    cc_entry_t *best; /* the newest stored variant that matches (ref) */
    cc_entry_t *fill; /* a fill to follow on this worker (ref) */
    int pass;         /* a live "not cacheable" marker */
    int vary_miss;    /* stored variants exist, none matches */
} found_t;

static void find(cc_zone_t *z, const char *key, size_t klen, const sl_req_t *req, found_t *f)
{
    uint64_t h = cc_key_hash(z, key, klen);
    double now = wall_now();
    memset(f, 0, sizeof(*f));
    cc_zone_lock(z);
    for (cc_entry_t *e = cc_zone_chain(z, h); e; e = e->hnext) {
        if (e->klen != klen || memcmp(e->key, key, klen) != 0)
            continue;
        int st = atomic_load(&e->state);
        if (st == CE_PASS) {
            f->pass |= now < e->pass_until;
        } else if (st == CE_COMPLETE) {
            if (!vary_ok(e, req))
                f->vary_miss = 1;
            else if (!f->best || e->resp_time > f->best->resp_time)
                f->best = e;
        } else if (st == CE_FILLING && !f->fill) {
            f->fill = e; /* its head is looked at under its own lock (followable) */
        }
    }
    if (f->best) {
        cc_entry_ref(f->best);
        cc_zone_touch(f->best);
    }
    if (f->fill)
        cc_entry_ref(f->fill);
    cc_zone_unlock(z);
}

/* A fill another request may follow: the head is still to come, or it
 * came, may be shared and matches the request's Vary values. */
static int followable(cc_entry_t *e, const sl_req_t *req)
{
    pthread_mutex_lock(&e->mu);
    int ok = atomic_load(&e->state) == CE_FILLING && !e->transient &&
             (!e->has_head || (e->shareable && vary_ok(e, req)));
    pthread_mutex_unlock(&e->mu);
    return ok;
}

/* A new entry for key, in the table when there is room. With other: NULL
 * and *other set (ref) when a fill of the key began since the lookup. */
static cc_entry_t *new_entry(const sl_cache_route_t *cr, const char *key, size_t klen,
                             cc_entry_t **other)
{
    cc_entry_t *e = cc_entry_new(cr->z, key, klen, cc_key_hash(cr->z, key, klen));
    sl_worker_t *w = sl_worker_current();
    e->owner = w ? w->id : -1; /* before anyone can find it */
    e->owner_w = w;
    if (cc_zone_link_or_join(e, other) != 0)
        e->transient = 1;
    if (other && *other) {
        cc_entry_unref(e);
        return NULL;
    }
    return e;
}

/* A fill for key with req's fields; one that began since the lookup is
 * followed instead. read: req reads it as the fill's origin (attached
 * before the fill starts, so an answer that comes at once finds it);
 * else the fill runs in the background (stale-while-revalidate). */
static void start_fill(sl_req_t *req, int read, const sl_cache_route_t *cr, const char *key,
                       size_t klen, cc_entry_t *stale, cc_result_t kind, int restarted)
{
    cc_entry_t *other = NULL, *e = new_entry(cr, key, klen, &other);
    if (other) {
        if (read && followable(other, req)) {
            cc_serve(req, cr, other, CC_R_COLLAPSED, NULL, restarted);
            return;
        }
        cc_entry_unref(other);
        if (!read) { /* a background refresh: that fill renews the key */
            atomic_store(&stale->refreshing, 0);
            return;
        }
        e = new_entry(cr, key, klen, NULL);
    }
    if (read) {
        cc_entry_ref(e);
        cc_serve(req, cr, e, kind,
                 stale       ? "stale"
                 : restarted ? "vary-miss"
                             : "uri-miss",
                 restarted);
    }
    if (cc_fill_start(e, req, cr, stale) != 0) {
        atomic_store(&e->state, CE_FAILED);
        cc_zone_unlink(e);
        cc_wake(e);
    }
    cc_entry_unref(e);
}

/* How a stored entry may answer this request. */
enum { USE_FRESH, USE_STALE, USE_SWR, USE_REVALIDATE };

static int usable(const cc_entry_t *e, const cc_cc_t *q, double now)
{
    double age = cc_age(e, now), left = e->lifetime - age;
    int may_stale = !e->must_revalidate && !e->no_cache && !q->no_cache;
    if (left > 0 && !e->no_cache && !q->no_cache && (q->max_age < 0 || age <= (double)q->max_age) &&
        (q->min_fresh < 0 || left >= (double)q->min_fresh))
        return USE_FRESH;
    if (q->no_cache || (q->max_age >= 0 && age > (double)q->max_age && left > 0))
        return USE_REVALIDATE;
    if (may_stale && q->max_stale >= 0 && -left <= (double)q->max_stale)
        return USE_STALE;
    if (may_stale && e->swr >= 0 && -left <= (double)e->swr)
        return USE_SWR;
    return USE_REVALIDATE;
}

static void answer_504(sl_req_t *req, const sl_cache_route_t *cr)
{
    cc_count(cr->z, req, CC_R_MISS);
    req->cbs = &sl_req_discard_cbs;
    sl_resp_header_add(req, "cache-status", "sluice; fwd=miss; detail=only-if-cached");
    sl_resp_error(req, 504, "not in the cache (only-if-cached)");
}

void cc_lookup(sl_req_t *req, const sl_cache_route_t *cr, int restarted)
{
    char key[CC_KEY_MAX];
    ssize_t klen = cc_key(req, cr, key, sizeof(key));
    if (klen < 0) {
        cc_pass(req, cr, CC_R_BYPASS, "key-too-long");
        return;
    }
    cc_cc_t q;
    cc_cc_parse(req->headers.v, req->headers.n, &q);
    found_t f;
    find(cr->z, key, (size_t)klen, req, &f);
    if (f.fill && !followable(f.fill, req)) {
        cc_entry_unref(f.fill);
        f.fill = NULL;
    }
    if (f.best) {
        int use = usable(f.best, &q, wall_now());
        if (use == USE_FRESH || use == USE_STALE || use == USE_SWR) {
            if (use == USE_SWR && atomic_exchange(&f.best->refreshing, 1) == 0)
                start_fill(req, 0, cr, key, (size_t)klen, f.best, CC_R_MISS, 0);
            if (f.fill)
                cc_entry_unref(f.fill);
            cc_serve(req, cr, f.best, use == USE_FRESH ? CC_R_HIT : CC_R_STALE, NULL, restarted);
            return;
        }
    }
    if (f.fill) {
        if (f.best)
            cc_entry_unref(f.best);
        cc_serve(req, cr, f.fill, CC_R_COLLAPSED, NULL, restarted);
        return;
    }
    if (q.only_if_cached) {
        if (f.best)
            cc_entry_unref(f.best);
        answer_504(req, cr);
        return;
    }
    if (f.pass && !f.best) {
        cc_pass(req, cr, CC_R_PASS, "uncacheable");
        return;
    }
    if (q.no_store && !f.best) {
        cc_pass(req, cr, CC_R_BYPASS, "request-no-store");
        return;
    }
    start_fill(req, 1, cr, key, (size_t)klen, f.best, CC_R_MISS, restarted || f.vary_miss);
    if (f.best)
        cc_entry_unref(f.best);
}

static int is_unsafe(sl_str_t m)
{
    return !sl_str_eq(m, "GET") && !sl_str_eq(m, "HEAD") && !sl_str_eq(m, "OPTIONS") &&
           !sl_str_eq(m, "TRACE");
}

int sl_cache_handle(sl_req_t *req, const sl_cache_route_t *cr)
{
    if (!cr)
        return 0;
    if (!sl_str_eq(req->method, "GET") && !sl_str_eq(req->method, "HEAD")) {
        if (is_unsafe(req->method)) {
            /* RFC 9111 4.4: what an unsafe method may change is stale now. */
            char key[CC_KEY_MAX];
            ssize_t klen = cc_key(req, cr, key, sizeof(key));
            if (klen > 0)
                cc_zone_purge(cr->z, key, (size_t)klen, 0);
        }
        cc_count(cr->z, req, CC_R_BYPASS);
        return 0;
    }
    if (!req->body_done || req->content_length > 0 || req->protocol.n) {
        cc_count(cr->z, req, CC_R_BYPASS);
        return 0;
    }
    cc_lookup(req, cr, 0);
    return 1;
}
