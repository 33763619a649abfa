/* sluice - SPDX-License-Identifier: MIT
 *
 * Asking the auth service, with a cache per worker and per route. The key
 * is the SHA-256 of the forwarded fields (the credentials), so a cached
 * decision never holds a credential. A decision is kept for cache_s, or
 * less when the service says Cache-Control: max-age (no-store: not
 * kept); failures are never kept. Requests with the same credentials
 * that arrive while a check is under way wait for that one (waiters), so
 * a hundred streams opened at once with one token cost one request, and
 * their re-checks share one per cache_s. The cache is bounded in entries
 * and bytes (the least recently used decision goes first); a check with
 * no one left waiting is cancelled.
 *
 * Everything here runs on one worker: a cache is its worker's alone.
 */
#include "auth_int.h"
#include "../log.h"
#include "../lru.h"
#include "../metrics.h"
#include "../proxy/proxy.h"
#include "../worker.h"
#include <openssl/evp.h>
#include <stdio.h>
#include <strings.h>

#define KEY_LEN 32

typedef struct centry {
    struct centry *hnext; /* hash chain */
    sl_lru_node_t lru;    /* head: the most recent */
    uint8_t key[KEY_LEN];
    sl_auth_decision_t *d; /* kept decision, or NULL */
    double expires;
    struct sl_auth_check *check; /* under way, or NULL */
} centry_t;

struct sl_auth_cache {
    struct ev_loop *loop;
    centry_t **buckets;
    size_t nbuckets, n, bytes;
    sl_lru_t lru;
};

typedef struct sl_auth_check {
    sl_auth_t *a;
    sl_auth_cache_t *c;
    centry_t *e;
    sl_proxy_client_t *client;
    ev_timer timer;
    sl_auth_waiter_t *waiters;
    char *fields; /* the head's fields after Host: what the service is told */
    int status;
    char *values[SL_AUTH_MAX_NAMES], *www, *ctype;
    uint8_t *body;
    size_t body_len;
    int too_big, no_store;
    int delivering; /* waiters are being told: unwait only unlinks */
    double max_age; /* -1: none given */
} check_t;

/* ---- decisions ---- */

void sl_auth_decision_unref(sl_auth_decision_t *d)
{
    if (!d || --d->refs > 0)
        return;
    for (size_t i = 0; i < SL_AUTH_MAX_NAMES; i++)
        sl_free(d->values[i]);
    sl_free(d->www_authenticate);
    sl_free(d->content_type);
    sl_free(d->body);
    sl_free(d);
}

static sl_auth_decision_t *decision_error(const char *why)
{
    sl_auth_decision_t *d = sl_calloc(1, sizeof(*d));
    d->refs = 1;
    d->kind = SL_AUTH_ERROR;
    d->error = why;
    return d;
}

/* ---- the cache ---- */

static sl_auth_cache_t *cache_of(sl_auth_t *a)
{
    sl_worker_t *w = sl_worker_current();
    SL_ASSERT(w && w->id >= 0 && w->id < SL_AUTH_MAX_WORKERS);
    sl_auth_cache_t *c = a->caches[w->id];
    if (!c) {
        c = sl_calloc(1, sizeof(*c));
        c->loop = w->loop;
        c->nbuckets = 64;
        while (c->nbuckets < (size_t)a->cache_entries && c->nbuckets < ((size_t)1 << 20))
            c->nbuckets <<= 1;
        c->buckets = sl_calloc(c->nbuckets, sizeof(*c->buckets));
        a->caches[w->id] = c;
    }
    return c;
}

static size_t bucket_of(const sl_auth_cache_t *c, const uint8_t *k)
{
    uint64_t h;
    memcpy(&h, k, sizeof(h)); /* a SHA-256: its bytes are already spread */
    return (size_t)h & (c->nbuckets - 1);
}

#define ENTRY(n) sl_container_of(n, centry_t, lru)

static void drop_decision(sl_auth_cache_t *c, centry_t *e)
{
    if (!e->d)
        return;
    c->bytes -= e->d->bytes;
    sl_auth_decision_unref(e->d);
    e->d = NULL;
}

static void entry_free(sl_auth_cache_t *c, centry_t *e)
{
    for (centry_t **pp = &c->buckets[bucket_of(c, e->key)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == e) {
            *pp = e->hnext;
            break;
        }
    }
    sl_lru_remove(&c->lru, &e->lru);
    drop_decision(c, e);
    c->n--;
    sl_free(e);
}

/* Past a bound: the oldest decisions go (an entry with a check under way
 * stays; it holds no bytes yet). */
static void trim(const sl_auth_t *a, sl_auth_cache_t *c)
{
    sl_lru_node_t *n = c->lru.tail;
    while (n && (c->n > (size_t)a->cache_entries || c->bytes > (size_t)a->cache_bytes)) {
        sl_lru_node_t *prev = n->prev;
        if (!ENTRY(n)->check)
            entry_free(c, ENTRY(n));
        n = prev;
    }
}

static centry_t *entry_get(sl_auth_cache_t *c, const uint8_t *k)
{
    size_t b = bucket_of(c, k);
    for (centry_t *e = c->buckets[b]; e; e = e->hnext)
        if (memcmp(e->key, k, KEY_LEN) == 0)
            return e;
    centry_t *e = sl_calloc(1, sizeof(*e));
    memcpy(e->key, k, KEY_LEN);
    e->hnext = c->buckets[b];
    c->buckets[b] = e;
    sl_lru_push(&c->lru, &e->lru);
    c->n++;
    return e;
}

void sl_auth_caches_free(sl_auth_t *a)
{
    for (size_t i = 0; i < SL_AUTH_MAX_WORKERS; i++) {
        sl_auth_cache_t *c = a->caches[i];
        if (!c)
            continue;
        while (c->lru.head) {
            centry_t *e = ENTRY(c->lru.head);
            SL_ASSERT(!e->check); /* a check holds its requests, they the config */
            entry_free(c, e);
        }
        sl_free(c->buckets);
        sl_free(c);
        a->caches[i] = NULL;
    }
}

/* ---- what the service is told ---- */

static void key_of(const sl_auth_t *a, const sl_req_t *req, uint8_t *k)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned n = 0;
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
        sl_assert_fail("SHA-256 for an auth cache key", __FILE__, __LINE__);
    for (size_t i = 0; i < a->nfwd; i++) {
        EVP_DigestUpdate(md, a->fwd[i], strlen(a->fwd[i]) + 1);
        for (size_t j = 0; j < req->headers.n; j++) {
            const sl_header_t *h = &req->headers.v[j];
            if (sl_str_eq(h->name, a->fwd[i])) {
                EVP_DigestUpdate(md, h->value.p, h->value.n);
                EVP_DigestUpdate(md, "\n", 1);
            }
        }
        EVP_DigestUpdate(md, "", 1);
    }
    EVP_DigestFinal_ex(md, k, &n);
    EVP_MD_CTX_free(md);
}

static char *fields_of(const sl_auth_t *a, const sl_req_t *req)
{
    sl_str_t ip = sl_peer_ip(req->peer);
    /* Every part counted: each header at most once per forwarded name. */
    size_t cap = 256 + req->method.n + req->target.n + req->scheme.n + req->authority.n + ip.n, len;
    for (size_t j = 0; j < req->headers.n; j++)
        cap += req->headers.v[j].name.n + req->headers.v[j].value.n + 4;
    char *f = sl_malloc(cap);
    len = (size_t)snprintf(f, cap,
                           "x-original-method: %.*s\r\nx-original-uri: %.*s\r\n"
                           "x-forwarded-for: %.*s\r\nx-forwarded-proto: %.*s\r\n"
                           "x-forwarded-host: %.*s\r\n",
                           (int)req->method.n, req->method.p, (int)req->target.n, req->target.p,
                           (int)ip.n, ip.p, (int)req->scheme.n, req->scheme.p,
                           (int)req->authority.n, req->authority.p);
    for (size_t i = 0; i < a->nfwd; i++)
        for (size_t j = 0; j < req->headers.n; j++) {
            const sl_header_t *h = &req->headers.v[j];
            /* never past cap, whatever the request holds */
            if (sl_str_eq(h->name, a->fwd[i]) && len + h->name.n + h->value.n + 5 <= cap)
                len += (size_t)snprintf(f + len, cap - len, "%s: %.*s\r\n", a->fwd[i],
                                        (int)h->value.n, h->value.p);
        }
    return f;
}

/* ---- the check ---- */

static char *on_head_text(void *arg, const char *host, size_t *len)
{
    check_t *k = arg;
    return sl_strdup_printf(len,
                            "GET %s HTTP/1.1\r\nhost: %s\r\nuser-agent: sluice-auth\r\n"
                            "connection: close\r\n%s\r\n",
                            k->a->path, host, k->fields);
}

static char *copy_value(sl_str_t v)
{
    return sl_strndup(v.p, SL_MIN(v.n, (size_t)SL_AUTH_FIELD_MAX));
}

static void read_cache_control(check_t *k, sl_str_t v)
{
    const char *p = v.p, *end = v.p + v.n;
    if (sl_str_has_token(v, "no-store") || sl_str_has_token(v, "no-cache") ||
        sl_str_has_token(v, "private"))
        k->no_store = 1; /* private: meant for one client, not for a shared key */
    for (; p + 8 <= end; p++)
        if (strncasecmp(p, "max-age=", 8) == 0) {
            /* The digits only: the value is not NUL-terminated. */
            const char *d = p + 8, *e = d;
            uint64_t secs;
            while (e < end && *e >= '0' && *e <= '9')
                e++;
            if (sl_str_parse_u64((sl_str_t){d, (size_t)(e - d)}, 0, 86400 * 365, &secs) == 0)
                k->max_age = (double)secs;
            break;
        }
}

static int on_resp_head(void *arg, int status, const sl_header_t *f, size_t n)
{
    check_t *k = arg;
    k->status = status;
    for (size_t i = 0; i < n; i++) {
        if (status >= 200 && status < 300) {
            for (size_t j = 0; j < k->a->ncopy; j++)
                if (sl_str_eq(f[i].name, k->a->copy[j]) && !k->values[j])
                    k->values[j] = copy_value(f[i].value);
        } else if (sl_str_eq(f[i].name, "www-authenticate") && !k->www) {
            k->www = copy_value(f[i].value);
        } else if (sl_str_eq(f[i].name, "content-type") && !k->ctype) {
            k->ctype = copy_value(f[i].value);
        }
        if (sl_str_eq(f[i].name, "cache-control"))
            read_cache_control(k, f[i].value);
    }
    /* A denial's body goes to the client; anything else is the status. */
    return !(status == 401 || status == 403);
}

static void on_resp_data(void *arg, const uint8_t *p, size_t n)
{
    check_t *k = arg;
    if (k->too_big || k->body_len + n > SL_AUTH_BODY_MAX) {
        k->too_big = 1;
        return;
    }
    k->body = sl_realloc(k->body, k->body_len + n);
    memcpy(k->body + k->body_len, p, n);
    k->body_len += n;
}

static sl_auth_decision_t *decision_of(check_t *k, const char *error)
{
    if (error)
        return decision_error(error);
    if (k->too_big)
        return decision_error("a denial with a body over 64 KiB");
    sl_auth_decision_t *d = sl_calloc(1, sizeof(*d));
    d->refs = 1;
    d->bytes = sizeof(*d);
    if (k->status >= 200 && k->status < 300) {
        d->kind = SL_AUTH_ALLOW;
        for (size_t i = 0; i < k->a->ncopy; i++) {
            d->values[i] = k->values[i];
            k->values[i] = NULL;
            d->bytes += d->values[i] ? strlen(d->values[i]) : 0;
        }
    } else if (k->status == 401 || k->status == 403) {
        d->kind = SL_AUTH_DENY;
        d->status = k->status;
        d->www_authenticate = k->www;
        d->content_type = k->ctype;
        d->body = k->body;
        d->body_len = k->body_len;
        k->www = k->ctype = NULL;
        k->body = NULL;
        d->bytes += d->body_len + (d->www_authenticate ? strlen(d->www_authenticate) : 0);
    } else {
        sl_free(d);
        return decision_error("the auth service answered another status");
    }
    return d;
}

static void check_free(check_t *k)
{
    ev_timer_stop(k->c->loop, &k->timer);
    for (size_t i = 0; i < SL_AUTH_MAX_NAMES; i++)
        sl_free(k->values[i]);
    sl_free(k->www);
    sl_free(k->ctype);
    sl_free(k->body);
    sl_free(k->fields);
    sl_free(k);
}

/* The check is over: keep what may be kept, then tell every waiter. A
 * waiter's request may end inside done (and leave: unwait finds it
 * already out of the list). */
static void deliver(check_t *k, sl_auth_decision_t *d)
{
    sl_auth_cache_t *c = k->c;
    centry_t *e = k->e;
    k->delivering = 1;
    double ttl = k->max_age >= 0 ? SL_MIN(k->max_age, k->a->cache_s) : k->a->cache_s;
    sl_metrics_auth(d->kind == SL_AUTH_ALLOW  ? SL_M_AUTH_ALLOW
                    : d->kind == SL_AUTH_DENY ? SL_M_AUTH_DENY
                                              : SL_M_AUTH_ERROR);
    e->check = NULL;
    if (d->kind != SL_AUTH_ERROR && ttl > 0 && !k->no_store) {
        d->refs++;
        e->d = d;
        e->expires = ev_now(c->loop) + ttl;
        c->bytes += d->bytes;
        trim(k->a, c);
    } else {
        entry_free(c, e);
    }
    while (k->waiters) {
        sl_auth_waiter_t *w = k->waiters;
        k->waiters = w->next;
        if (k->waiters)
            k->waiters->prev = NULL;
        w->check = NULL;
        w->prev = w->next = NULL;
        d->refs++;
        w->done(w, d);
    }
    sl_auth_decision_unref(d);
    check_free(k);
}

static void on_done(void *arg, const char *error)
{
    check_t *k = arg;
    k->client = NULL; /* it frees itself after this call */
    if (error)
        sl_log(SL_LOG_WARN, NULL, "route %s: auth service %s%s: %s", k->a->route, k->a->upstream,
               k->a->path, error);
    else if (k->status != 401 && k->status != 403 && (k->status < 200 || k->status >= 300))
        sl_log(SL_LOG_WARN, NULL, "route %s: auth service %s%s answered %d; refusing (503)",
               k->a->route, k->a->upstream, k->a->path, k->status);
    deliver(k, decision_of(k, error));
}

static void on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    check_t *k = t->data;
    sl_proxy_client_cancel(k->client);
    k->client = NULL;
    sl_log(SL_LOG_WARN, NULL, "route %s: auth service %s%s: no answer within %.0f ms", k->a->route,
           k->a->upstream, k->a->path, k->a->timeout_s * 1000);
    deliver(k, decision_error("the auth service did not answer in time"));
}

static const sl_proxy_client_cbs_t client_cbs = {
    .head = on_head_text,
    .on_head = on_resp_head,
    .on_data = on_resp_data,
    .on_done = on_done,
};

static void join(check_t *k, sl_auth_waiter_t *w)
{
    w->check = k;
    w->prev = NULL;
    w->next = k->waiters;
    if (k->waiters)
        k->waiters->prev = w;
    k->waiters = w;
}

sl_auth_decision_t *sl_auth_ask(sl_auth_t *a, const sl_req_t *req, sl_auth_waiter_t *w)
{
    uint8_t key[KEY_LEN];
    sl_auth_cache_t *c = cache_of(a);
    key_of(a, req, key);
    centry_t *e = entry_get(c, key);
    sl_lru_touch(&c->lru, &e->lru);
    if (e->d && e->expires > ev_now(c->loop)) {
        sl_metrics_auth(SL_M_AUTH_CACHED);
        e->d->refs++;
        return e->d;
    }
    drop_decision(c, e); /* stale */
    if (e->check) {
        sl_metrics_auth(SL_M_AUTH_CACHED);
        join(e->check, w);
        return NULL;
    }
    check_t *k = sl_calloc(1, sizeof(*k));
    k->a = a;
    k->c = c;
    k->e = e;
    k->max_age = -1;
    k->fields = fields_of(a, req);
    k->client = sl_proxy_client_start(sl_conn_config(req->conn), a->upstream, NULL, 0,
                                      "auth: ", &client_cbs, k);
    if (!k->client) {
        check_free(k);
        entry_free(c, e);
        sl_metrics_auth(SL_M_AUTH_ERROR);
        sl_log(SL_LOG_WARN, NULL, "route %s: auth upstream %s has no servers; refusing (503)",
               a->route, a->upstream);
        return decision_error("the auth upstream has no servers");
    }
    sl_proxy_client_end(k->client);
    e->check = k;
    ev_timer_init(&k->timer, on_timeout, a->timeout_s, 0.);
    k->timer.data = k;
    ev_timer_start(c->loop, &k->timer);
    join(k, w);
    return NULL;
}

void sl_auth_unwait(sl_auth_waiter_t *w)
{
    check_t *k = w->check;
    if (!k)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        k->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->check = NULL;
    w->prev = w->next = NULL;
    if (k->waiters || k->delivering)
        return;
    /* Nobody is left to tell: stop asking. */
    if (k->client)
        sl_proxy_client_cancel(k->client);
    k->e->check = NULL;
    entry_free(k->c, k->e);
    check_free(k);
}
