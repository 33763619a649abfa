/* sluice - SPDX-License-Identifier: MIT
 *
 * The harness handler definition: parses the route's bound options, strips
 * the route path from the request path to find the endpoint, decodes the
 * query string into the request pool and hands over to the endpoint's
 * file (anything.c, echo.c, ...).
 */
#include "harness.h"
#include "harness_int.h"
#include "../config.h"
#include "../router.h"
#include <stdio.h>

typedef struct opt_def {
    const char *key;
    size_t off;
    int64_t def, min, max;
} opt_def_t;

/* clang-format off */
#define OPT(k, d, lo, hi) {#k, offsetof(sl_harness_opts_t, k), (d), (lo), (hi)}
/* clang-format on */

/* Every bound an endpoint applies, with its default and its own sane range. */
static const opt_def_t opt_defs[] = {
    OPT(max_bytes, 1LL << 30, 0, 1LL << 40),
    OPT(max_chunks, 100000, 0, 100000000),
    OPT(max_chunk_bytes, 1 << 20, 1, 16 << 20),
    OPT(max_delay_ms, 60000, 0, 86400000),
    OPT(max_interval_ms, 60000, 0, 86400000),
    OPT(max_sse_events, 100000, 0, 100000000),
    OPT(max_trailers, 32, 0, 1000),
    OPT(max_query_params, 64, 1, 4096),
    OPT(max_body_bytes, 1 << 20, 0, 1LL << 30),
};

enum { ARG_NONE, ARG_ANY, ARG_REQUIRED };

typedef struct endpoint {
    const char *name;
    void (*fn)(sl_harness_ctx_t *cx);
    int arg;
} endpoint_t;

static const endpoint_t endpoints[] = {
    {"anything", sl_harness_anything, ARG_ANY},
    {"echo", sl_harness_echo, ARG_NONE},
    {"bytes", sl_harness_bytes, ARG_REQUIRED},
    {"stream", sl_harness_stream, ARG_REQUIRED},
    {"delay", sl_harness_delay, ARG_REQUIRED},
    {"status", sl_harness_status, ARG_REQUIRED},
    {"trailers", sl_harness_trailers, ARG_NONE},
    {"reset", sl_harness_reset, ARG_NONE},
    {"sse", sl_harness_sse, ARG_NONE},
    {"sink", sl_harness_sink, ARG_NONE},
    {"early-hints", sl_harness_early_hints, ARG_NONE},
    /* httpbin's API (hb*.c) */
    {"get", sl_harness_hb_get, ARG_NONE},
    {"post", sl_harness_hb_body, ARG_NONE},
    {"put", sl_harness_hb_body, ARG_NONE},
    {"patch", sl_harness_hb_body, ARG_NONE},
    {"delete", sl_harness_hb_body, ARG_NONE},
    {"headers", sl_harness_hb_headers_ep, ARG_NONE},
    {"ip", sl_harness_hb_ip, ARG_NONE},
    {"user-agent", sl_harness_hb_user_agent, ARG_NONE},
    {"uuid", sl_harness_hb_uuid, ARG_NONE},
    {"basic-auth", sl_harness_hb_basic_auth, ARG_REQUIRED},
    {"bearer", sl_harness_hb_bearer, ARG_NONE},
    {"cookies", sl_harness_hb_cookies, ARG_ANY},
    {"cache", sl_harness_hb_cache, ARG_ANY},
    {"etag", sl_harness_hb_etag, ARG_REQUIRED},
    {"range", sl_harness_hb_range, ARG_REQUIRED},
    {"response-headers", sl_harness_hb_response_headers, ARG_NONE},
    {"gzip", sl_harness_hb_compressed, ARG_NONE},
    {"deflate", sl_harness_hb_compressed, ARG_NONE},
    {"brotli", sl_harness_hb_compressed, ARG_NONE},
    {"redirect", sl_harness_hb_redirect, ARG_REQUIRED},
    {"relative-redirect", sl_harness_hb_redirect, ARG_REQUIRED},
    {"absolute-redirect", sl_harness_hb_redirect, ARG_REQUIRED},
    {"redirect-to", sl_harness_hb_redirect_to, ARG_NONE},
    {"json", sl_harness_hb_sample, ARG_NONE},
    {"html", sl_harness_hb_sample, ARG_NONE},
    {"xml", sl_harness_hb_sample, ARG_NONE},
    {"encoding", sl_harness_hb_sample, ARG_REQUIRED},
    {"base64", sl_harness_hb_base64, ARG_REQUIRED},
    {"links", sl_harness_hb_links, ARG_REQUIRED},
    {"image", sl_harness_hb_image, ARG_REQUIRED},
    {"drip", sl_harness_hb_drip, ARG_NONE},
    {"stream-bytes", sl_harness_hb_stream_bytes, ARG_REQUIRED},
    {"fault", sl_harness_fault, ARG_REQUIRED},
};

static void free_state(void *state)
{
    sl_harness_opts_t *o = state;
    if (!o)
        return;
    EVP_MD_free(o->sha256);
    sl_free(o);
}

static int configure(json_t *route, const char *path, void **state, char *err, size_t errlen)
{
    const char *keys[SL_ARRAY_LEN(opt_defs) + 2];
    for (size_t i = 0; i < SL_ARRAY_LEN(opt_defs); i++)
        keys[i] = opt_defs[i].key;
    keys[SL_ARRAY_LEN(opt_defs)] = "faults";
    keys[SL_ARRAY_LEN(opt_defs) + 1] = "fault_smuggling";
    if (sl_router_check_keys(route, path, keys, SL_ARRAY_LEN(keys), err, errlen))
        return SL_EINVAL;
    sl_harness_opts_t *o = sl_calloc(1, sizeof(*o));
    if (sl_conf_get_bool(route, path, "faults", 0, &o->faults, err, errlen) ||
        sl_conf_get_bool(route, path, "fault_smuggling", 0, &o->fault_smuggling, err, errlen))
        goto fail_option;
    if (o->fault_smuggling && !o->faults) {
        snprintf(err, errlen, "%s.fault_smuggling: needs \"faults\": true", path);
        goto fail_option;
    }
    if (o->faults)
        sl_harness_faults_metrics();
    for (size_t i = 0; i < SL_ARRAY_LEN(opt_defs); i++) {
        const opt_def_t *d = &opt_defs[i];
        int64_t v;
        if (sl_conf_get_int(route, path, d->key, d->def, d->min, d->max, &v, err, errlen) != 0)
            goto fail_option;
        *(int64_t *)(void *)((char *)o + d->off) = v;
    }
    /* Fetch once here, not per request: implicit fetches take a lock. */
    o->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!o->sha256) {
        snprintf(err, errlen, "%s: OpenSSL offers no SHA-256", path);
        goto fail_digest;
    }
    *state = o;
    return 0;

fail_digest:
fail_option:
    free_state(o);
    return SL_EINVAL;
}

static const endpoint_t *find_endpoint(sl_str_t name)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(endpoints); i++)
        if (sl_str_eq(name, endpoints[i].name))
            return &endpoints[i];
    return NULL;
}

/* "/_h/bytes/1024" under route "/_h/" -> name "bytes", arg "1024". */
static void split_endpoint(const sl_req_t *req, sl_str_t *name, sl_str_t *arg)
{
    sl_str_t rest = req->path;
    const sl_route_t *r = req->route;
    if (rest.n >= r->path_len && memcmp(rest.p, r->path, r->path_len) == 0) {
        rest.p += r->path_len;
        rest.n -= r->path_len;
    }
    /* A route written without the trailing slash ("/_h") leaves one. */
    if (rest.n && rest.p[0] == '/') {
        rest.p++;
        rest.n--;
    }
    const char *slash = memchr(rest.p, '/', rest.n);
    if (!slash) {
        *name = rest;
        *arg = (sl_str_t){rest.p + rest.n, 0};
        return;
    }
    *name = (sl_str_t){rest.p, (size_t)(slash - rest.p)};
    *arg = (sl_str_t){slash + 1, rest.n - name->n - 1};
}

static void not_found(sl_req_t *req)
{
    req->cbs = &sl_req_discard_cbs;
    sl_resp_error(req, 404, "unknown harness endpoint (see docs/harness.md)");
}

static int parse_query(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    size_t max = (size_t)cx->opts->max_query_params;
    const char *why = NULL;
    cx->q.v = NULL;
    cx->q.n = 0;
    if (req->query.n == 0)
        return 0;
    /* Bounded by the protocol's URI / header limits and max_query_params. */
    cx->q.v = sl_pool_alloc(&req->pool, max * sizeof(sl_query_param_t));
    char *scratch = sl_pool_alloc(&req->pool, req->query.n + 1);
    if (sl_query_parse(req->query, cx->q.v, max, scratch, req->query.n + 1, &cx->q.n, &why) != 0) {
        sl_harness_bad_request(req, why);
        return SL_EINVAL;
    }
    return 0;
}

static void on_req(sl_req_t *req)
{
    sl_harness_ctx_t cx = {.req = req, .opts = req->route->state};
    split_endpoint(req, &cx.name, &cx.arg);
    const endpoint_t *ep = find_endpoint(cx.name);
    int has_arg = cx.arg.p != cx.name.p + cx.name.n; /* a '/' followed the name */
    if (!ep || (ep->arg == ARG_NONE && has_arg) || (ep->arg == ARG_REQUIRED && cx.arg.n == 0)) {
        not_found(req);
        return;
    }
    if (parse_query(&cx) != 0)
        return;
    ep->fn(&cx);
}

const sl_handler_def_t sl_harness_handler = {
    .name = "harness",
    .configure = configure,
    .free_state = free_state,
    .on_req = on_req,
};
