/* sluice - SPDX-License-Identifier: MIT
 *
 * Token buckets by key (docs/config.md, "Rate limits"). One table per
 * route for all workers, under one mutex: a client's requests spread over
 * workers, and a per-worker bucket would let it through workers x rps.
 * The table is a hash of at most max_keys entries with an LRU list; a key
 * longer than KEY_INLINE bytes is kept as its SHA-256, so an entry has a
 * fixed size and max_keys bounds the memory. The bucket index is seeded
 * per table, so clients cannot aim their keys at one chain.
 */
#include "ratelimit.h"
#include "climit.h"
#include "config.h"
#include "conf.h"
#include "conn.h"
#include "log.h"
#include "lru.h"
#include "metrics.h"
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>
#include <sys/random.h>

#define KEY_INLINE 64

typedef enum key_kind { KEY_IP, KEY_HEADER, KEY_COOKIE, KEY_OWNER } key_kind_t;

typedef struct entry {
    struct entry *hnext;
    sl_lru_node_t lru; /* head: the most recent */
    double tokens;
    uint64_t at_ns; /* tokens as of then */
    uint8_t klen;
    uint8_t key[KEY_INLINE];
} entry_t;

struct sl_ratelimit {
    key_kind_t kind;
    char *name; /* header (lower-case) or cookie */
    sl_ratelimit_owner_fn owner;
    char *route; /* its path, for the log */
    double rps;
    int64_t burst, max_keys;
    pthread_mutex_t mu;
    entry_t **buckets;
    size_t nbuckets; /* power of two */
    size_t n;
    sl_lru_t lru;
    uint64_t seed;
};

#define ENTRY(n) sl_container_of(n, entry_t, lru)

typedef struct rl_opts {
    double rps;
    int64_t burst, max_keys;
} rl_opts_t;

static const sl_conf_key_t opt_keys[] = {
    {"rps", SL_CONF_DOUBLE, offsetof(rl_opts_t, rps), 0, 0, 0, 10, 0.001, 1e6},
    SL_CONF_INT(SL_CONF_I64, rl_opts_t, burst, 20, 1, 10000000),
    SL_CONF_INT(SL_CONF_I64, rl_opts_t, max_keys, 100000, 1, 100000000),
};

static int parse_key(sl_ratelimit_t *rl, const char *v, const char *path, char *err, size_t errlen)
{
    if (strcmp(v, "ip") == 0) {
        rl->kind = KEY_IP;
    } else if (strcmp(v, "owner") == 0) {
        if (!rl->owner)
            return sl_conf_fail(err, errlen,
                                "%s.rate_limit.key: \"owner\" needs a route with job owners "
                                "(handler job or jobs_api)",
                                path);
        rl->kind = KEY_OWNER;
    } else if ((strncmp(v, "header:", 7) == 0 || strncmp(v, "cookie:", 7) == 0) && v[7]) {
        rl->kind = v[0] == 'h' ? KEY_HEADER : KEY_COOKIE;
        rl->name = sl_strdup(v + 7);
        for (char *c = rl->name; rl->kind == KEY_HEADER && *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c); /* field names arrive lower-cased */
    } else {
        return sl_conf_fail(err, errlen,
                            "%s.rate_limit.key: must be \"ip\", \"header:NAME\", "
                            "\"cookie:NAME\" or \"owner\" (got \"%s\")",
                            path, v);
    }
    return 0;
}

int sl_ratelimit_parse(json_t *route, const char *path, sl_ratelimit_owner_fn owner,
                       sl_ratelimit_t **out, char *err, size_t errlen)
{
    static const char *const also[] = {"key"};
    json_t *o = json_object_get(route, "rate_limit");
    char p[SL_CONF_PATH_LEN];
    rl_opts_t opts;
    const char *key;
    *out = NULL;
    if (!o)
        return 0;
    sl_conf_path(p, path, "rate_limit");
    if (!json_is_object(o))
        return sl_conf_fail(err, errlen, "%s: must be an object", p);
    if (sl_conf_table_load(opt_keys, SL_ARRAY_LEN(opt_keys), o, p, &opts, also, 1, err, errlen) ||
        sl_conf_get_str(o, p, "key", "ip", &key, err, errlen))
        return SL_EINVAL;
    sl_ratelimit_t *rl = sl_calloc(1, sizeof(*rl));
    rl->owner = owner;
    json_t *rp = json_object_get(route, "path");
    rl->route = sl_strdup(json_is_string(rp) ? json_string_value(rp) : "?");
    if (!key || parse_key(rl, key, path, err, errlen) != 0) {
        if (!key)
            sl_conf_fail(err, errlen, "%s.key: must be a string", p);
        sl_ratelimit_free(rl);
        return SL_EINVAL;
    }
    rl->rps = opts.rps;
    rl->burst = opts.burst;
    rl->max_keys = opts.max_keys;
    rl->nbuckets = 64;
    while (rl->nbuckets < (size_t)rl->max_keys && rl->nbuckets < ((size_t)1 << 22))
        rl->nbuckets <<= 1;
    rl->buckets = sl_calloc(rl->nbuckets, sizeof(*rl->buckets));
    if (getrandom(&rl->seed, sizeof(rl->seed), 0) != (ssize_t)sizeof(rl->seed))
        rl->seed = sl_now_ns();
    pthread_mutex_init(&rl->mu, NULL);
    *out = rl;
    return 0;
}

void sl_ratelimit_free(sl_ratelimit_t *rl)
{
    if (!rl)
        return;
    while (rl->lru.head) {
        entry_t *e = ENTRY(rl->lru.head);
        sl_lru_remove(&rl->lru, &e->lru);
        sl_free(e);
    }
    if (rl->buckets)
        pthread_mutex_destroy(&rl->mu);
    sl_free(rl->buckets);
    sl_free(rl->name);
    sl_free(rl->route);
    sl_free(rl);
}

/* ---- keys ---- */

/* The request's key into k (kind byte + bytes, or kind byte + SHA-256
 * when longer). A request without the header, cookie or owner counts
 * under its address: anonymous clients are limited one by one. */
static void key_of(const sl_ratelimit_t *rl, const sl_req_t *req, uint8_t *k, uint8_t *klen)
{
    sl_str_t v = {NULL, 0};
    char owner[128];
    int have = 0;
    if (rl->kind == KEY_HEADER) {
        const sl_header_t *h = sl_req_header(req, rl->name);
        have = h && h->value.n;
        if (have)
            v = h->value;
    } else if (rl->kind == KEY_COOKIE) {
        have = sl_req_cookie(req, rl->name, &v) == 0 && v.n;
    } else if (rl->kind == KEY_OWNER) {
        have = rl->owner(req, owner, sizeof(owner)) == 0;
        if (have)
            v = (sl_str_t){owner, strlen(owner)};
    }
    if (!have) {
        const sl_conn_t *c = req->conn;
        sl_climit_key_t ck;
        if (sl_climit_key_of((const struct sockaddr *)&c->peer_addr,
                             c->cfg->limits.conns_per_ip_v6_prefix, &ck) != 0)
            memset(&ck, 0, sizeof(ck));
        k[0] = 'i';
        memcpy(k + 1, ck.a, sizeof(ck.a));
        *klen = (uint8_t)(1 + sizeof(ck.a));
        return;
    }
    k[0] = (uint8_t) "ihco"[rl->kind];
    if (v.n <= KEY_INLINE - 1) {
        memcpy(k + 1, v.p, v.n);
        *klen = (uint8_t)(1 + v.n);
        return;
    }
    unsigned n = 0;
    EVP_Digest(v.p, v.n, k + 1, &n, EVP_sha256(), NULL);
    *klen = (uint8_t)(1 + n);
}

/* ---- the table (under rl->mu) ---- */

static size_t bucket_of(const sl_ratelimit_t *rl, const uint8_t *k, size_t n)
{
    uint64_t h = rl->seed ^ 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ k[i]) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 31)) & (rl->nbuckets - 1);
}

static void evict_oldest(sl_ratelimit_t *rl)
{
    entry_t *e = ENTRY(rl->lru.tail);
    uint8_t k[KEY_INLINE];
    memcpy(k, e->key, e->klen);
    for (entry_t **pp = &rl->buckets[bucket_of(rl, k, e->klen)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == e) {
            *pp = e->hnext;
            break;
        }
    }
    sl_lru_remove(&rl->lru, &e->lru);
    rl->n--;
    sl_free(e);
}

static entry_t *get(sl_ratelimit_t *rl, const uint8_t *k, uint8_t klen, uint64_t now)
{
    size_t b = bucket_of(rl, k, klen);
    for (entry_t *e = rl->buckets[b]; e; e = e->hnext) {
        if (e->klen == klen && memcmp(e->key, k, klen) == 0) {
            sl_lru_touch(&rl->lru, &e->lru);
            return e;
        }
    }
    if (rl->n >= (size_t)rl->max_keys)
        evict_oldest(rl); /* a new key starts full, as the evicted one would be soon */
    entry_t *e = sl_calloc(1, sizeof(*e));
    memcpy(e->key, k, klen);
    e->klen = klen;
    e->tokens = (double)rl->burst;
    e->at_ns = now;
    e->hnext = rl->buckets[b];
    rl->buckets[b] = e;
    sl_lru_push(&rl->lru, &e->lru);
    rl->n++;
    return e;
}

/* ---- admission ---- */

int sl_ratelimit_by_address(const sl_ratelimit_t *rl)
{
    return rl->kind == KEY_IP;
}

/* draft-ietf-httpapi-ratelimit-headers: the policy (quota q per window
 * w seconds: the bucket's size and the time it takes to fill) and the
 * state (r units left, t seconds until the quota is whole again). */
static void add_fields(sl_req_t *req, const sl_ratelimit_t *rl, double tokens)
{
    char policy[96], state[96];
    long w = (long)ceil((double)rl->burst / rl->rps);
    long t = (long)ceil(((double)rl->burst - tokens) / rl->rps);
    snprintf(policy, sizeof(policy), "\"route\";q=%lld;w=%ld", (long long)rl->burst, SL_MAX(w, 1L));
    snprintf(state, sizeof(state), "\"route\";r=%lld;t=%ld", (long long)floor(tokens), t);
    sl_resp_header_add(req, "ratelimit-policy", policy);
    sl_resp_header_add(req, "ratelimit", state);
}

int sl_ratelimit_admit(sl_ratelimit_t *rl, sl_req_t *req)
{
    static _Atomic int64_t last_log;
    uint8_t k[KEY_INLINE];
    uint8_t klen;
    key_of(rl, req, k, &klen);
    uint64_t now = sl_now_ns();
    pthread_mutex_lock(&rl->mu);
    entry_t *e = get(rl, k, klen, now);
    e->tokens = SL_MIN((double)rl->burst, e->tokens + (double)(now - e->at_ns) * 1e-9 * rl->rps);
    e->at_ns = now;
    int ok = e->tokens >= 1.0;
    if (ok)
        e->tokens -= 1.0;
    double tokens = e->tokens;
    pthread_mutex_unlock(&rl->mu);
    add_fields(req, rl, tokens);
    if (ok)
        return 0;
    char retry[24];
    snprintf(retry, sizeof(retry), "%ld", SL_MAX((long)ceil((1.0 - tokens) / rl->rps), 1L));
    sl_resp_header_add(req, "retry-after", retry);
    sl_metrics_abuse(SL_M_ABUSE_RATE_LIMIT);
    int64_t sec = (int64_t)(now / 1000000000u), prev = atomic_load(&last_log);
    if (sec != prev && atomic_compare_exchange_strong(&last_log, &prev, sec))
        sl_log(SL_LOG_INFO, req->conn, "client sent requests past route %s's rate_limit; 429",
               rl->route);
    req->cbs = &sl_req_discard_cbs;
    sl_resp_error(req, 429, "too many requests");
    return SL_ELIMIT;
}
