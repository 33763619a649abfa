/* sluice - SPDX-License-Identifier: MIT
 *
 * Route table: handler registry, the "routes" config section, and matching
 * a request's host + path to a route (first match in config order). The
 * table is a section of the immutable config snapshot, so matching takes
 * no lock.
 */
#include "router.h"
#include "metrics.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "ratelimit.h"
#include "uri.h"
#include <stdio.h>
#include <strings.h>

#define MAX_HANDLERS 32
#define MAX_ROUTES 10000

typedef struct route_table {
    sl_route_t *v;
    size_t n;
} route_table_t;

static const sl_handler_def_t *handlers[MAX_HANDLERS];
static size_t nhandlers;
static int routes_slot = -1; /* of the "routes" section */

static const sl_route_gate_t *gate;

void sl_router_set_gate(const sl_route_gate_t *g)
{
    gate = g;
}

void sl_router_register(const sl_handler_def_t *def)
{
    SL_ASSERT(nhandlers < MAX_HANDLERS);
    handlers[nhandlers++] = def;
}

const sl_handler_def_t *sl_router_find_handler(const char *name)
{
    for (size_t i = 0; i < nhandlers; i++)
        if (strcmp(handlers[i]->name, name) == 0)
            return handlers[i];
    return NULL;
}

#define ROUTE_KEYS_MAX 64

int sl_router_check_keys(json_t *route, const char *path, const char *const *own, size_t n,
                         char *err, size_t errlen)
{
    static const char *const common[] = {"path", "host", "match", "handler", "comment",
                                         "rate_limit"};
    const char *all[ROUTE_KEYS_MAX];
    size_t k = 0;
    SL_ASSERT(n + SL_ARRAY_LEN(common) + 1 <= ROUTE_KEYS_MAX);
    for (size_t i = 0; i < SL_ARRAY_LEN(common); i++)
        all[k++] = common[i];
    if (gate)
        all[k++] = gate->key;
    for (size_t i = 0; i < n && own[i]; i++)
        all[k++] = own[i];
    return sl_conf_check_keys(route, path, all, k, err, errlen);
}

static int parse_route(json_t *obj, const char *path, sl_route_t *r, char *err, size_t errlen)
{
    const char *p, *host, *match, *hname;
    memset(r, 0, sizeof(*r));
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "%s: must be an object", path);
        return SL_EINVAL;
    }
    if (sl_conf_get_str(obj, path, "path", NULL, &p, err, errlen) ||
        sl_conf_get_str(obj, path, "host", NULL, &host, err, errlen) ||
        sl_conf_get_str(obj, path, "match", "prefix", &match, err, errlen) ||
        sl_conf_get_str(obj, path, "handler", NULL, &hname, err, errlen))
        return SL_EINVAL;
    if (!p || p[0] != '/') {
        snprintf(err, errlen, "%s.path: must be a string starting with '/'", path);
        return SL_EINVAL;
    }
    if (strcmp(match, "prefix") == 0)
        r->match = SL_ROUTE_PREFIX;
    else if (strcmp(match, "exact") == 0)
        r->match = SL_ROUTE_EXACT;
    else {
        snprintf(err, errlen, "%s.match: must be \"prefix\" or \"exact\"", path);
        return SL_EINVAL;
    }
    if (!hname) {
        snprintf(err, errlen, "%s.handler: required", path);
        return SL_EINVAL;
    }
    r->handler = sl_router_find_handler(hname);
    if (!r->handler) {
        int n = snprintf(err, errlen, "%s.handler: unknown handler \"%s\" (one of:", path, hname);
        for (size_t i = 0; i < nhandlers && n > 0 && (size_t)n < errlen; i++)
            n += snprintf(err + n, errlen - (size_t)n, " %s", handlers[i]->name);
        if (n > 0 && (size_t)n < errlen)
            snprintf(err + n, errlen - (size_t)n, ")");
        return SL_EINVAL;
    }
    if (r->handler->configure && r->handler->configure(obj, path, &r->state, err, errlen) != 0)
        return SL_EINVAL;
    if (sl_ratelimit_parse(obj, path, r->handler->rate_key, &r->rl, err, errlen) != 0 ||
        (gate && gate->parse(obj, path, &r->gate, err, errlen) != 0))
        return SL_EINVAL;
    r->path = sl_strdup(p);
    r->path_len = strlen(p);
    const char *slash = strrchr(p, '/');
    r->dir_len = slash ? (size_t)(slash - p) + 1 : 0;
    r->host = host ? sl_strdup(host) : NULL;
    return 0;
}

static void route_dispose(sl_route_t *r)
{
    if (r->handler && r->handler->free_state && r->state)
        r->handler->free_state(r->state);
    sl_ratelimit_free(r->rl);
    if (r->gate)
        gate->free(r->gate);
    sl_free(r->path);
    sl_free(r->host);
    memset(r, 0, sizeof(*r));
}

static void free_routes(void *state)
{
    route_table_t *t = state;
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        route_dispose(&t->v[i]);
    sl_free(t->v);
    sl_free(t);
}

static int parse_routes(json_t *v, const char *path, void **state, char *err, size_t errlen)
{
    char p[SL_CONF_PATH_LEN];
    if (!v)
        return 0;
    size_t n = json_is_array(v) ? json_array_size(v) : 0;
    if (!json_is_array(v) || n > MAX_ROUTES)
        return sl_conf_fail(err, errlen, "%s: must be an array of at most %d routes", path,
                            MAX_ROUTES);
    route_table_t *t = sl_calloc(1, sizeof(*t));
    *state = t;
    t->v = n ? sl_calloc(n, sizeof(*t->v)) : NULL;
    for (size_t i = 0; i < n; i++) {
        snprintf(p, sizeof(p), "%s[%zu]", path, i);
        if (parse_route(json_array_get(v, i), p, &t->v[i], err, errlen))
            return SL_EINVAL;
        /* Counted only once parsed: a failed route cleaned up after itself. */
        t->v[i].index = (int)i;
        t->v[i].slot = sl_metrics_intern(SL_M_NAME_ROUTE, t->v[i].path);
        t->n++;
    }
    return 0;
}

static const sl_config_section_def_t routes_section = {
    .name = "routes", .parse = parse_routes, .free_state = free_routes};

void sl_router_init(void)
{
    if (routes_slot >= 0)
        return;
    routes_slot = sl_config_register_section(&routes_section);
}

const sl_route_t *sl_router_routes(const sl_config_t *cfg, size_t *n)
{
    const route_table_t *t = routes_slot >= 0 ? sl_config_section_at(cfg, routes_slot) : NULL;
    *n = t ? t->n : 0;
    return t ? t->v : NULL;
}

/* Host without port, compared case-insensitively; "*.suffix" matches any
 * subdomain of suffix. */
static int host_matches(const char *pattern, sl_str_t host)
{
    const char *colon = host.n && host.p[0] != '[' ? memchr(host.p, ':', host.n) : NULL;
    if (host.n && host.p[0] == '[') {
        const char *rb = memchr(host.p, ']', host.n);
        if (rb)
            host.n = (size_t)(rb - host.p) + 1;
    } else if (colon)
        host.n = (size_t)(colon - host.p);
    if (pattern[0] == '*' && pattern[1] == '.') {
        size_t sl = strlen(pattern + 1);
        return host.n > sl && strncasecmp(host.p + host.n - sl, pattern + 1, sl) == 0;
    }
    return strlen(pattern) == host.n && strncasecmp(pattern, host.p, host.n) == 0;
}

const sl_route_t *sl_router_match(const sl_config_t *cfg, sl_str_t host, sl_str_t path)
{
    size_t n;
    const sl_route_t *routes = sl_router_routes(cfg, &n);
    for (size_t i = 0; i < n; i++) {
        const sl_route_t *r = &routes[i];
        if (r->match == SL_ROUTE_EXACT) {
            if (path.n != r->path_len || memcmp(path.p, r->path, path.n) != 0)
                continue;
        } else if (path.n < r->path_len || memcmp(path.p, r->path, r->path_len) != 0) {
            continue;
        }
        if (r->host && !host_matches(r->host, host))
            continue;
        return r;
    }
    return NULL;
}

/* After the gate: the route's other limits, then its handler. */
static void proceed(sl_req_t *req)
{
    const sl_route_t *r = req->route;
    if (r->rl && !sl_ratelimit_by_address(r->rl) && sl_ratelimit_admit(r->rl, req) != 0)
        return;
    r->handler->on_req(req);
}

void sl_router_dispatch(const sl_config_t *cfg, sl_req_t *req)
{
    const char *why;
    sl_str_t norm;
    const sl_conn_t *c = req->conn;
    /* RFC 7838: HTTP/3 is on offer at this listener's port (docs/h3.md). */
    if (c && c->lcfg && c->lcfg->alt_svc[0] && req->proto != SL_PROTO_H3)
        sl_resp_header_add_ref(req, "alt-svc", 7, c->lcfg->alt_svc, strlen(c->lcfg->alt_svc));
    req->raw_path = req->path;
    if (sl_uri_normalize_path(req->path, cfg->allow_encoded_slash ? SL_URI_KEEP_ENCODED_SLASH : 0,
                              &req->pool, &norm, &why) != 0) {
        sl_log(SL_LOG_INFO, req->conn, "client sent a bad path (%s); answered 400", why);
        sl_resp_error(req, 400, why);
        return;
    }
    req->path = norm;
    const sl_route_t *r = sl_router_match(cfg, req->authority, req->path);
    if (!r) {
        sl_resp_error(req, 404, "no route");
        return;
    }
    req->route = r;
    /* A limit by address comes first, so that it also spares the auth
     * service; one by a field the auth service sets comes after it. */
    if (r->rl && sl_ratelimit_by_address(r->rl) && sl_ratelimit_admit(r->rl, req) != 0)
        return;
    if (r->gate)
        gate->begin(r->gate, req, proceed);
    else
        proceed(req);
}
