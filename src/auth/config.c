/* sluice - SPDX-License-Identifier: MIT
 *
 * A route's "auth" option (docs/auth.md):
 *   {"upstream": "authsvc", "path": "/check", "timeout_ms": 500,
 *    "forward_headers": ["authorization", "cookie"],
 *    "copy_headers": ["x-user"], "cache_s": 5, "reauth_s": 60}
 * The upstream group must exist; copied fields are ones a request may
 * carry (never the connection's own, never Host or Content-Length).
 */
#include "auth_int.h"
#include "../conf.h"
#include "../proxy/proxy.h"
#include <stdio.h>

typedef struct opts {
    int64_t timeout_ms, cache_entries, cache_bytes;
    double cache_s, reauth_s;
} opts_t;

static const sl_conf_key_t keys[] = {
    SL_CONF_INT(SL_CONF_I64, opts_t, timeout_ms, 500, 1, 600000),
    SL_CONF_SECONDS(opts_t, cache_s, 5, 0, 86400),
    SL_CONF_SECONDS(opts_t, reauth_s, 0, 0, 86400),
    SL_CONF_INT(SL_CONF_I64, opts_t, cache_entries, 10000, 1, 10000000),
    SL_CONF_INT(SL_CONF_I64, opts_t, cache_bytes, 1 << 20, 4096, (int64_t)1 << 32),
};

void sl_auth_free(sl_auth_t *a)
{
    if (!a)
        return;
    sl_auth_caches_free(a);
    sl_auth_jwt_free(a->jwt);
    for (size_t i = 0; i < a->nfwd; i++)
        sl_free(a->fwd[i]);
    for (size_t i = 0; i < a->ncopy; i++)
        sl_free(a->copy[i]);
    sl_free(a->route);
    sl_free(a->upstream);
    sl_free(a->path);
    sl_free(a);
}

/* A copied field lands on the request: not one the connection owns. */
static int copy_ok(const char *n)
{
    return !sl_field_is_connection_specific((sl_str_t){n, strlen(n)}) && strcmp(n, "host") != 0 &&
           strcmp(n, "content-length") != 0 && strcmp(n, "transfer-encoding") != 0;
}

/* "jwt": tokens verified here; nothing else goes with it. */
static int parse_jwt(json_t *o, const char *p, sl_auth_t *a, char *err, size_t errlen)
{
    static const char *const only[] = {"jwt"};
    char jp[SL_CONF_PATH_LEN];
    sl_conf_path(jp, p, "jwt");
    if (sl_conf_check_keys(o, p, only, 1, err, errlen) ||
        sl_auth_jwt_parse(json_object_get(o, "jwt"), jp, a, err, errlen))
        return SL_EINVAL;
    for (size_t i = 0; i < a->ncopy; i++)
        if (!copy_ok(a->copy[i]))
            return sl_conf_fail(err, errlen, "%s.claims_to_headers: %s cannot be set on a request",
                                jp, a->copy[i]);
    return 0;
}

static int parse(json_t *o, const char *p, sl_auth_t *a, char *err, size_t errlen)
{
    static const char *const also[] = {"upstream", "path", "forward_headers", "copy_headers"};
    const sl_config_t *cfg = sl_config_loading();
    opts_t v;
    if (json_object_get(o, "jwt"))
        return parse_jwt(o, p, a, err, errlen);
    if (sl_conf_table_load(keys, SL_ARRAY_LEN(keys), o, p, &v, also, SL_ARRAY_LEN(also), err,
                           errlen) ||
        sl_conf_get_req_str(o, p, "upstream", &a->upstream, err, errlen) ||
        sl_conf_get_req_str(o, p, "path", &a->path, err, errlen) ||
        sl_conf_get_names(o, p, "forward_headers", a->fwd, SL_AUTH_MAX_NAMES, &a->nfwd, err,
                          errlen) ||
        sl_conf_get_names(o, p, "copy_headers", a->copy, SL_AUTH_MAX_NAMES, &a->ncopy, err, errlen))
        return SL_EINVAL;
    if (a->path[0] != '/')
        return sl_conf_fail(err, errlen, "%s.path: must start with '/'", p);
    for (const char *c = a->path; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return sl_conf_fail(err, errlen, "%s.path: no spaces or control characters", p);
    if (cfg && !sl_proxy_upstream_exists(cfg, a->upstream))
        return sl_conf_fail(err, errlen, "%s.upstream: no upstream named \"%s\" in \"upstreams\"",
                            p, a->upstream);
    for (size_t i = 0; i < a->ncopy; i++)
        if (!copy_ok(a->copy[i]))
            return sl_conf_fail(err, errlen, "%s.copy_headers: %s cannot be set on a request", p,
                                a->copy[i]);
    a->timeout_s = (double)v.timeout_ms / 1000.0;
    a->cache_s = v.cache_s;
    a->reauth_s = v.reauth_s;
    a->cache_entries = v.cache_entries;
    a->cache_bytes = v.cache_bytes;
    return 0;
}

int sl_auth_parse(json_t *route, const char *path, sl_auth_t **out, char *err, size_t errlen)
{
    json_t *o = json_object_get(route, "auth");
    char p[SL_CONF_PATH_LEN];
    *out = NULL;
    if (!o)
        return 0;
    sl_conf_path(p, path, "auth");
    if (!json_is_object(o))
        return sl_conf_fail(err, errlen, "%s: must be an object", p);
    sl_auth_t *a = sl_calloc(1, sizeof(*a));
    json_t *rp = json_object_get(route, "path");
    a->route = sl_strdup(json_is_string(rp) ? json_string_value(rp) : "?");
    if (parse(o, p, a, err, errlen) != 0) {
        sl_auth_free(a);
        return SL_EINVAL;
    }
    *out = a;
    return 0;
}

static int gate_parse(json_t *route, const char *path, void **state, char *err, size_t errlen)
{
    return sl_auth_parse(route, path, (sl_auth_t **)state, err, errlen);
}

static void gate_free(void *state)
{
    sl_auth_free(state);
}

static void gate_begin(void *state, sl_req_t *req, void (*next)(sl_req_t *req))
{
    sl_auth_begin(state, req, next);
}

const sl_route_gate_t sl_auth_gate = {
    .key = "auth", .parse = gate_parse, .free = gate_free, .begin = gate_begin};
