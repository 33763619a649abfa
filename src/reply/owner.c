/* sluice - SPDX-License-Identifier: MIT
 *
 * Job owners (docs/jobs.md, "Security model"). A job route's "owner"
 * option names where the owner comes from: a request header, a cookie, the
 * verified TLS client certificate (its SHA-256), or nothing (the 128-bit
 * job id is then the only capability). The
 * credential itself is never stored: the owner is HMAC-SHA256 over the
 * rule and the value, under jobs.owner_key_file's key (so that instances
 * sharing it agree) or a random per-process key, cut to 128 bits, hex.
 */
#include "reply_int.h"
#include "../worker.h"
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>
#include <sys/random.h>

static uint8_t proc_key[32];
static EVP_MAC *hmac; /* fetched once: a provider lookup per request is not free */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init(void)
{
    if (getrandom(proc_key, sizeof(proc_key), 0) != (ssize_t)sizeof(proc_key))
        sl_assert_fail("getrandom for the owner key", __FILE__, __LINE__);
    if (!(hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)))
        sl_assert_fail("EVP_MAC_fetch(HMAC)", __FILE__, __LINE__);
}

static int name_ok(const char *n)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (!*n || strlen(n) > 128)
        return 0;
    for (const char *c = n; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              strchr(extra, *c)))
            return 0;
    return 1;
}

int sl_reply_owner_parse(json_t *route, const char *path, sl_reply_owner_rule_t *r, char *err,
                         size_t errlen)
{
    const char *v;
    memset(r, 0, sizeof(*r));
    if (sl_conf_get_str(route, path, "owner", "none", &v, err, errlen))
        return SL_EINVAL;
    if (strcmp(v, "none") == 0)
        return 0;
    if (strcmp(v, "tls_client") == 0) {
        r->kind = SL_REPLY_OWNER_TLS_CLIENT;
        r->name = sl_strdup("tls_client");
        return 0;
    }
    if (strncmp(v, "header:", 7) == 0 && name_ok(v + 7)) {
        r->kind = SL_REPLY_OWNER_HEADER;
        r->name = sl_strdup(v + 7);
        for (char *c = r->name; *c; c++) /* request field names arrive lower-cased */
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    } else if (strncmp(v, "cookie:", 7) == 0 && name_ok(v + 7)) {
        r->kind = SL_REPLY_OWNER_COOKIE;
        r->name = sl_strdup(v + 7);
    } else {
        snprintf(err, errlen,
                 "%s.owner: must be \"none\", \"header:NAME\", \"cookie:NAME\" or "
                 "\"tls_client\" (got \"%s\")",
                 path, v);
        return SL_EINVAL;
    }
    return 0;
}

void sl_reply_owner_dispose(sl_reply_owner_rule_t *r)
{
    sl_free(r->name);
    r->name = NULL;
}

static void hash_owner(const sl_reply_owner_rule_t *r, sl_str_t v, char *out)
{
    const sl_jobs_cfg_t *cfg = sl_jobs_config();
    const uint8_t *key = proc_key;
    size_t klen = sizeof(proc_key);
    pthread_once(&init_once, init);
    if (cfg && cfg->owner_key_len) {
        key = cfg->owner_key;
        klen = cfg->owner_key_len;
    }
    /* The rule goes in too: one value under two rules is two owners. */
    char pre[160];
    static const char *const kinds[] = {"none", "header", "cookie", "tls"};
    int pn = snprintf(pre, sizeof(pre), "%s:%s", kinds[r->kind], r->name);
    uint8_t md[EVP_MAX_MD_SIZE], sep = 0;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                           OSSL_PARAM_construct_end()};
    size_t outl = 0;
    if (!ctx || !EVP_MAC_init(ctx, key, klen, params) ||
        !EVP_MAC_update(ctx, (const uint8_t *)pre, (size_t)pn) || !EVP_MAC_update(ctx, &sep, 1) ||
        !EVP_MAC_update(ctx, (const uint8_t *)v.p, v.n) ||
        !EVP_MAC_final(ctx, md, &outl, sizeof(md)))
        sl_assert_fail("HMAC-SHA256 for a job owner", __FILE__, __LINE__);
    EVP_MAC_CTX_free(ctx);
    sl_hex_encode(md, SL_MIN((size_t)SL_JOBS_OWNER_LEN / 2, outl), out);
}

int sl_reply_owner_of(const sl_req_t *req, const sl_reply_owner_rule_t *r, char *out)
{
    sl_str_t v;
    out[0] = '\0';
    if (r->kind == SL_REPLY_OWNER_NONE)
        return 0;
    if (r->kind == SL_REPLY_OWNER_HEADER) {
        const sl_header_t *h = sl_req_header(req, r->name);
        if (!h || h->value.n == 0)
            return SL_EINVAL;
        v = h->value;
    } else if (r->kind == SL_REPLY_OWNER_TLS_CLIENT) {
        if (!req->tls.client_fp)
            return SL_EINVAL;
        v = (sl_str_t){req->tls.client_fp, strlen(req->tls.client_fp)};
    } else if (sl_req_cookie(req, r->name, &v) != 0 || v.n == 0) {
        return SL_EINVAL;
    }
    hash_owner(r, v, out);
    return 0;
}

int sl_reply_owner_key(const sl_req_t *req, const sl_reply_owner_rule_t *r, char *out, size_t cap)
{
    char owner[SL_JOBS_OWNER_LEN + 1];
    if (cap <= SL_JOBS_OWNER_LEN || sl_reply_owner_of(req, r, owner) != 0 || !owner[0])
        return SL_EINVAL;
    memcpy(out, owner, sizeof(owner));
    return 0;
}

int sl_reply_is_admin(const sl_req_t *req)
{
    const sl_jobs_cfg_t *cfg = sl_jobs_config();
    return cfg && sl_req_bearer_is(req, cfg->admin_token);
}

static int owner_may(const sl_reply_caller_t *c, sl_jobs_job_t *job)
{
    const char *owner = sl_jobs_job_owner(job);
    if (c->admin || owner[0] == '\0')
        return 1;
    return c->owner[0] && CRYPTO_memcmp(c->owner, owner, SL_JOBS_OWNER_LEN) == 0;
}

void sl_reply_may_see(const sl_reply_caller_t *c, sl_jobs_job_t **job, int *status)
{
    if (*job && !owner_may(c, *job)) {
        sl_jobs_job_unref(*job); /* 404, like an unknown id: existence does not leak */
        *job = NULL;
        *status = SL_JOBS_UNKNOWN;
    }
}

sl_jobs_lookup_t *sl_reply_find_job(const sl_reply_caller_t *c, sl_str_t id, sl_jobs_found_fn cb,
                                    void *arg, sl_jobs_job_t **job, int *status)
{
    sl_worker_t *w = sl_worker_current();
    sl_jobs_lookup_t *l = sl_jobs_lookup(id, w->loop, w->id, cb, arg, job, status);
    if (!l)
        sl_reply_may_see(c, job, status);
    return l;
}

int sl_reply_lookup_error(int status, const char **msg)
{
    switch (status) {
    case SL_JOBS_GONE: *msg = "job expired"; return 410;
    case SL_JOBS_UNAVAILABLE: *msg = "job store unavailable"; return 503;
    default: *msg = "no such job"; return 404;
    }
}

void sl_reply_caller_of(const sl_req_t *req, const sl_reply_owner_rule_t *r, sl_reply_caller_t *c)
{
    c->admin = sl_reply_is_admin(req);
    if (sl_reply_owner_of(req, r, c->owner) != 0)
        c->owner[0] = '\0';
}
