/* sluice - SPDX-License-Identifier: MIT
 *
 * The "cache_purge" handler: PURGE or DELETE with the route's admin
 * token removes stored responses of a zone, by exact key (every variant)
 * or by key prefix:
 *
 *   curl -X PURGE -H "authorization: Bearer $TOKEN" \
 *        "https://edge/_cache/purge?key=example.com/api/items?page=2"
 *   curl -X DELETE ... "https://edge/_cache/purge?prefix=example.com/api/"
 *
 * A key is the request's host (lower-case), its path and its query, as
 * docs/cache.md says. The answer is {"purged": N}.
 */
#include "cache_int.h"
#include "../conf.h"
#include "../log.h"
#include "../query.h"
#include <openssl/crypto.h>
#include <stdio.h>

typedef struct purge_route {
    cc_zone_t *z;
    char *token;
} purge_route_t;

static void purge_free(void *state)
{
    purge_route_t *p = state;
    if (!p)
        return;
    if (p->token) {
        OPENSSL_cleanse(p->token, strlen(p->token));
        sl_free(p->token);
    }
    sl_free(p);
}

static int purge_configure(json_t *route, const char *path, void **state, char *err, size_t errlen)
{
    static const char *const keys[] = {"zone", "admin_token_file"};
    const char *zname;
    char tok[257];
    size_t n;
    if (sl_router_check_keys(route, path, keys, SL_ARRAY_LEN(keys), err, errlen) ||
        sl_conf_get_str(route, path, "zone", NULL, &zname, err, errlen) ||
        sl_conf_read_secret(route, path, "admin_token_file", tok, sizeof(tok), &n, err, errlen))
        return SL_EINVAL;
    if (!zname)
        return sl_conf_fail(err, errlen, "%s.zone: required (a name from \"caches\")", path);
    cc_zone_t *z = cc_zone_named(zname);
    if (!z)
        return sl_conf_fail(err, errlen, "%s.zone: no zone named \"%s\" in \"caches\"", path,
                            zname);
    if (!n)
        return sl_conf_fail(err, errlen, "%s.admin_token_file: required", path);
    tok[n] = 0;
    if (strpbrk(tok, " \t\r\n")) {
        OPENSSL_cleanse(tok, sizeof(tok));
        return sl_conf_fail(err, errlen, "%s.admin_token_file: the token must be one word", path);
    }
    purge_route_t *p = sl_calloc(1, sizeof(*p));
    p->z = z;
    p->token = sl_strdup(tok);
    OPENSSL_cleanse(tok, sizeof(tok));
    *state = p;
    return 0;
}

static void answer(sl_req_t *req, int status, const char *body)
{
    req->cbs = &sl_req_discard_cbs;
    sl_resp_simple(req, status, "application/json", body, strlen(body));
}

static void purge_on_req(sl_req_t *req)
{
    const purge_route_t *p = req->route->state;
    if (!sl_str_eq(req->method, "PURGE") && !sl_str_eq(req->method, "DELETE")) {
        sl_resp_header_add(req, "allow", "PURGE, DELETE");
        req->cbs = &sl_req_discard_cbs;
        sl_resp_error(req, 405, "use PURGE or DELETE");
        return;
    }
    if (!sl_req_bearer_is(req, p->token)) {
        sl_resp_header_add(req, "www-authenticate", "Bearer realm=\"sluice cache\"");
        req->cbs = &sl_req_discard_cbs;
        sl_resp_error(req, 401, "admin token required");
        return;
    }
    sl_str_t v;
    int prefix = 0;
    if (sl_query_get(req->query, "key", &v) != 0) {
        prefix = 1;
        if (sl_query_get(req->query, "prefix", &v) != 0 || v.n == 0) {
            req->cbs = &sl_req_discard_cbs;
            sl_resp_error(req, 400, "give ?key= or ?prefix=");
            return;
        }
    }
    char *key = sl_pool_alloc(&req->pool, v.n + 1);
    ssize_t n = sl_query_pct_decode(v.p, v.n, key);
    if (n < 0) {
        req->cbs = &sl_req_discard_cbs;
        sl_resp_error(req, 400, "bad percent-encoding");
        return;
    }
    size_t purged = cc_zone_purge(p->z, key, (size_t)n, prefix);
    sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id,
                  "cache: purged %zu from zone \"%s\" (%s %.*s)", purged, p->z->name,
                  prefix ? "prefix" : "key", (int)n, key);
    char body[64];
    snprintf(body, sizeof(body), "{\"purged\":%zu}\n", purged);
    answer(req, 200, body);
}

const sl_handler_def_t sl_cache_purge_handler = {
    .name = "cache_purge",
    .configure = purge_configure,
    .free_state = purge_free,
    .on_req = purge_on_req,
};
