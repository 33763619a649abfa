/* sluice - SPDX-License-Identifier: MIT
 *
 * Proxy configuration: the top-level "upstreams" section (registered with
 * sl_config_register_section, parsed before routes) and the options of a
 * "proxy" route, which names one of those upstreams. Every key has a
 * default and a bound; an unknown key is refused with its JSON path, so a
 * typo never silently turns a limit off. Reference: docs/proxy.md.
 */
#include "proxy_int.h"
#include "proxy.h"
#include "../config.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/un.h>

#define MAX_UPSTREAMS 1024
#define MAX_LIST 256 /* set_headers, remove_headers, trusted_proxies */

static int fail(char *err, size_t errlen, const char *fmt, ...) SL_PRINTF(3, 4);

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return SL_EINVAL;
}

/* Refuse keys not in allowed (NULL-terminated). */
static int check_keys(json_t *obj, const char *path, const char *const *allowed, char *err,
                      size_t errlen)
{
    size_t n = 0;
    while (allowed[n])
        n++;
    return sl_conf_check_keys(obj, path, allowed, n, err, errlen);
}

static int get_secs(json_t *obj, const char *path, const char *key, double def, double min,
                    double max, double *out, char *err, size_t errlen)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    *out = def;
    if (!v)
        return 0;
    if (!json_is_number(v))
        return fail(err, errlen, "%s.%s: must be a number of seconds", path, key);
    double d = json_number_value(v);
    if (d < min || d > max)
        return fail(err, errlen, "%s.%s: must be between %g and %g", path, key, min, max);
    *out = d;
    return 0;
}

static char *lower_dup(const char *s)
{
    char *d = sl_strdup(s);
    for (char *p = d; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return d;
}

/* ---- servers ---- */

static int parse_unix(px_server_t *s, const char *p, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&s->ss;
    if (!*p || strlen(p) >= sizeof(un->sun_path))
        return fail(err, errlen, "%s: bad unix socket path", path);
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, p, strlen(p) + 1);
    s->sslen = (socklen_t)sizeof(*un);
    s->host = sl_strdup("localhost");
    return 0;
}

/* "127.0.0.1:9000", "[::1]:9001", "localhost:9000" (resolved now, once). */
static int parse_inet(px_server_t *s, const char *a, const char *path, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(a, ':'), *h = a;
    size_t hn;
    if (!colon || !colon[1])
        return fail(err, errlen, "%s: \"%s\" needs host:port", path, a);
    hn = (size_t)(colon - a);
    if (a[0] == '[') {
        if (hn < 2 || a[hn - 1] != ']')
            return fail(err, errlen, "%s: bad IPv6 address \"%s\"", path, a);
        h = a + 1;
        hn -= 2;
    }
    if (hn == 0 || hn >= sizeof(host))
        return fail(err, errlen, "%s: bad host in \"%s\"", path, a);
    memcpy(host, h, hn);
    host[hn] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535)
        return fail(err, errlen, "%s: bad port in \"%s\"", path, a);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0 || !res)
        return fail(err, errlen, "%s: cannot resolve \"%s\": %s", path, a, gai_strerror(rc));
    memcpy(&s->ss, res->ai_addr, res->ai_addrlen);
    s->sslen = res->ai_addrlen;
    freeaddrinfo(res);
    s->host = sl_strdup(a);
    return 0;
}

static int parse_server(json_t *v, const char *path, px_server_t *s, char *err, size_t errlen)
{
    static const char *const keys[] = {"addr", "weight", NULL};
    const char *addr;
    int64_t w = 1;
    if (json_is_object(v)) {
        if (check_keys(v, path, keys, err, errlen) ||
            sl_conf_get_str(v, path, "addr", NULL, &addr, err, errlen) ||
            sl_conf_get_int(v, path, "weight", 1, 1, 1000, &w, err, errlen))
            return SL_EINVAL;
        if (!addr)
            return fail(err, errlen, "%s.addr: required", path);
    } else if (json_is_string(v)) {
        addr = json_string_value(v);
    } else {
        return fail(err, errlen, "%s: must be \"host:port\", \"unix:/path\" or an object", path);
    }
    s->weight = (int)w;
    s->name = sl_strdup(addr);
    if (strncmp(addr, "unix:", 5) == 0)
        return parse_unix(s, addr + 5, path, err, errlen);
    return parse_inet(s, addr, path, err, errlen);
}

static void upstream_dispose(px_upstream_t *u)
{
    for (size_t i = 0; i < u->nservers; i++) {
        sl_free(u->servers[i].name);
        sl_free(u->servers[i].host);
    }
    for (size_t w = 0; w <= PX_SLOT_THREAD; w++)
        px_wstate_free(u->ws[w], 0);
    px_tls_dispose(u); /* after the connections that used it */
    sl_free(u->servers);
    sl_free(u->hash_header);
    sl_free(u->health.path);
    sl_free(u->name);
}

static int parse_balance(json_t *obj, const char *path, px_upstream_t *u, char *err, size_t errlen)
{
    const char *b, *key;
    if (sl_conf_get_str(obj, path, "balance", "round_robin", &b, err, errlen) ||
        sl_conf_get_str(obj, path, "hash_key", "client_addr", &key, err, errlen))
        return SL_EINVAL;
    if (strcmp(b, "round_robin") == 0)
        u->balance = PX_RR;
    else if (strcmp(b, "least_conn") == 0)
        u->balance = PX_LEAST_CONN;
    else if (strcmp(b, "hash") == 0)
        u->balance = PX_HASH;
    else
        return fail(err, errlen, "%s.balance: must be round_robin, least_conn or hash", path);
    if (strncmp(key, "header:", 7) == 0 && key[7])
        u->hash_header = lower_dup(key + 7);
    else if (strcmp(key, "client_addr") != 0)
        return fail(err, errlen, "%s.hash_key: must be \"header:<name>\" or \"client_addr\"", path);
    return 0;
}

static int parse_timeouts(json_t *obj, const char *path, px_timeouts_t *t, char *err, size_t errlen)
{
    static const char *const keys[] = {"connect_s",   "first_byte_s",     "read_idle_s",
                                       "send_idle_s", "keepalive_idle_s", NULL};
    char p[256];
    snprintf(p, sizeof(p), "%.200s.timeouts", path);
    if (obj && !json_is_object(obj))
        return fail(err, errlen, "%s: must be an object", p);
    if (obj && check_keys(obj, p, keys, err, errlen))
        return SL_EINVAL;
    if (get_secs(obj, p, "connect_s", 5, 0.001, 3600, &t->connect_s, err, errlen) ||
        get_secs(obj, p, "first_byte_s", 60, 0.001, 86400, &t->first_byte_s, err, errlen) ||
        get_secs(obj, p, "read_idle_s", 60, 0.001, 86400, &t->read_idle_s, err, errlen) ||
        get_secs(obj, p, "send_idle_s", 60, 0.001, 86400, &t->send_idle_s, err, errlen) ||
        get_secs(obj, p, "keepalive_idle_s", 60, 0.001, 86400, &t->keepalive_idle_s, err, errlen))
        return SL_EINVAL;
    return 0;
}

/* "health": {"path", "interval_s", "timeout_s", "expect"}: active checks. */
static int parse_health(json_t *obj, const char *path, px_health_cfg_t *h, char *err, size_t errlen)
{
    static const char *const keys[] = {"path", "interval_s", "timeout_s", "expect", NULL};
    char p[256];
    int64_t expect;
    const char *hp = NULL;
    snprintf(p, sizeof(p), "%.200s.health", path);
    if (!json_is_object(obj))
        return fail(err, errlen, "%s: must be an object", p);
    if (check_keys(obj, p, keys, err, errlen) ||
        sl_conf_get_str(obj, p, "path", NULL, &hp, err, errlen) ||
        get_secs(obj, p, "interval_s", 5, 0.05, 86400, &h->interval_s, err, errlen) ||
        get_secs(obj, p, "timeout_s", 2, 0.01, 3600, &h->timeout_s, err, errlen) ||
        sl_conf_get_int(obj, p, "expect", 200, 100, 599, &expect, err, errlen))
        return SL_EINVAL;
    /* Goes into a request line: a path, no spaces or controls. */
    size_t n = hp ? strlen(hp) : 0;
    if (n == 0 || hp[0] != '/' || n > 1024)
        return fail(err, errlen, "%s.path: must be a path starting with / (<= 1024 bytes)", p);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)hp[i] <= ' ' || hp[i] == 0x7f)
            return fail(err, errlen, "%s.path: no spaces or control characters", p);
    h->path = sl_strdup(hp);
    h->expect = (int)expect;
    return 0;
}

/* h2 needs TLS (ALPN), h2c needs none (prior knowledge on cleartext). */
static int parse_protocol(json_t *obj, const char *path, px_upstream_t *u, int tls, char *err,
                          size_t errlen)
{
    const char *s;
    if (sl_conf_get_str(obj, path, "protocol", "http/1.1", &s, err, errlen))
        return SL_EINVAL;
    if (strcmp(s, "http/1.1") == 0)
        u->proto = PX_PROTO_H1;
    else if (strcmp(s, "h2c") == 0 && !tls)
        u->proto = PX_PROTO_H2C;
    else if (strcmp(s, "h2") == 0 && tls)
        u->proto = PX_PROTO_H2;
    else if (strcmp(s, "auto") == 0 && tls)
        u->proto = PX_PROTO_AUTO;
    else if (strcmp(s, "h2c") == 0 || strcmp(s, "h2") == 0 || strcmp(s, "auto") == 0)
        return fail(err, errlen, "%s.protocol: \"%s\" %s", path, s,
                    tls ? "is cleartext: use \"h2\" with tls" : "needs \"tls\"");
    else
        return fail(err, errlen, "%s.protocol: must be \"http/1.1\", \"h2c\", \"h2\" or \"auto\"",
                    path);
    return 0;
}

static int parse_upstream(const char *name, json_t *obj, const char *path, px_upstream_t *u,
                          char *err, size_t errlen)
{
    static const char *const keys[] = {
        "servers",        "balance", "hash_key", "keepalive", "max_conns", "timeouts", "retries",
        "fail_threshold", "down_s",  "health",   "tls",       "protocol",  NULL};
    u->name = sl_strdup(name);
    if (!json_is_object(obj))
        return fail(err, errlen, "%s: must be an object", path);
    if (check_keys(obj, path, keys, err, errlen))
        return SL_EINVAL;
    json_t *health = json_object_get(obj, "health");
    if (health && parse_health(health, path, &u->health, err, errlen))
        return SL_EINVAL;
    json_t *servers = json_object_get(obj, "servers");
    size_t n = json_array_size(servers);
    if (!json_is_array(servers) || n == 0 || n > PX_MAX_SERVERS)
        return fail(err, errlen, "%s.servers: must be a list of 1..%d servers", path,
                    PX_MAX_SERVERS);
    u->servers = sl_calloc(n, sizeof(*u->servers));
    for (size_t i = 0; i < n; i++) {
        char p[256];
        snprintf(p, sizeof(p), "%.200s.servers[%zu]", path, i);
        u->nservers = i + 1;
        if (parse_server(json_array_get(servers, i), p, &u->servers[i], err, errlen))
            return SL_EINVAL;
        u->total_weight += u->servers[i].weight;
    }
    if (parse_balance(obj, path, u, err, errlen) ||
        sl_conf_get_int(obj, path, "keepalive", 32, 0, 100000, &u->keepalive, err, errlen) ||
        sl_conf_get_int(obj, path, "max_conns", 1024, 1, 1000000, &u->max_conns, err, errlen) ||
        sl_conf_get_int(obj, path, "retries", 1, 0, 16, &u->retries, err, errlen) ||
        sl_conf_get_int(obj, path, "fail_threshold", 3, 0, 1000, &u->fail_threshold, err, errlen) ||
        get_secs(obj, path, "down_s", 10, 0.001, 86400, &u->down_s, err, errlen) ||
        parse_timeouts(json_object_get(obj, "timeouts"), path, &u->to, err, errlen))
        return SL_EINVAL;
    json_t *tls = json_object_get(obj, "tls");
    if (parse_protocol(obj, path, u, tls != NULL, err, errlen) ||
        (tls && px_tls_parse(tls, path, u, err, errlen)))
        return SL_EINVAL;
    return 0;
}

static void upstreams_free(void *state)
{
    px_upstreams_t *ups = state;
    if (!ups)
        return;
    for (size_t i = 0; i < ups->n; i++)
        upstream_dispose(&ups->v[i]);
    sl_free(ups->v);
    sl_free(ups);
}

static int upstreams_parse(json_t *value, const char *path, void **state, char *err, size_t errlen)
{
    sl_metrics_add_source(px_metrics_source); /* at load: before the workers run */
    *state = NULL;
    if (!value)
        return 0;
    if (!json_is_object(value) || json_object_size(value) > MAX_UPSTREAMS)
        return fail(err, errlen, "%s: must be an object of at most %d named upstreams", path,
                    MAX_UPSTREAMS);
    px_upstreams_t *ups = sl_calloc(1, sizeof(*ups));
    ups->v = sl_calloc(json_object_size(value) + 1, sizeof(*ups->v));
    const char *name;
    json_t *v;
    json_object_foreach(value, name, v)
    {
        char p[256];
        snprintf(p, sizeof(p), "%.100s.%.100s", path, name);
        ups->n++;
        if (parse_upstream(name, v, p, &ups->v[ups->n - 1], err, errlen)) {
            upstreams_free(ups);
            return SL_EINVAL;
        }
    }
    *state = ups;
    return 0;
}

/* After a reload: the worker's pools and health checks of the old
 * snapshot's groups go (the new snapshot's groups start their own). */
static void upstreams_retire_worker(void *state, int worker_id)
{
    px_upstreams_t *ups = state;
    for (size_t i = 0; i < ups->n; i++) {
        px_upstream_t *u = &ups->v[i];
        px_wstate_t *ws = u->ws[worker_id];
        __atomic_store_n(&u->ws[worker_id], NULL, __ATOMIC_RELEASE);
        px_wstate_free(ws, 1);
    }
}

const sl_config_section_def_t sl_proxy_upstreams_section = {
    .name = "upstreams",
    .parse = upstreams_parse,
    .free_state = upstreams_free,
    .retire_worker = upstreams_retire_worker,
};

int sl_proxy_upstream_exists(const sl_config_t *cfg, const char *name)
{
    const px_upstreams_t *ups = cfg ? sl_config_section(cfg, "upstreams") : NULL;
    return ups && name && px_upstream_find(ups, name) != NULL;
}

px_upstream_t *px_upstream_find(const px_upstreams_t *ups, const char *name)
{
    for (size_t i = 0; ups && i < ups->n; i++)
        if (strcmp(ups->v[i].name, name) == 0)
            return &ups->v[i];
    return NULL;
}

/* ---- route options ---- */

static int parse_header_map(json_t *obj, const char *path, const char *key, sl_header_t **out,
                            size_t *n, char *err, size_t errlen)
{
    json_t *m = json_object_get(obj, key);
    if (!m)
        return 0;
    if (!json_is_object(m) || json_object_size(m) > MAX_LIST)
        return fail(err, errlen, "%s.%s: must be an object of at most %d headers", path, key,
                    MAX_LIST);
    *out = sl_calloc(json_object_size(m) + 1, sizeof(**out));
    const char *name;
    json_t *v;
    json_object_foreach(m, name, v)
    {
        const char *val = json_string_value(v);
        if (!val || !*name || strpbrk(name, " :\r\n\t") || strpbrk(val, "\r\n"))
            return fail(err, errlen, "%s.%s.%s: must be a valid header name with a string value",
                        path, key, name);
        char *ln = lower_dup(name), *dv = sl_strdup(val);
        (*out)[*n].name = (sl_str_t){ln, strlen(ln)};
        (*out)[*n].value = (sl_str_t){dv, strlen(dv)};
        (*n)++;
    }
    return 0;
}

static int parse_name_list(json_t *obj, const char *path, const char *key, char ***out, size_t *n,
                           char *err, size_t errlen)
{
    json_t *a = json_object_get(obj, key);
    if (!a)
        return 0;
    if (!json_is_array(a) || json_array_size(a) > MAX_LIST)
        return fail(err, errlen, "%s.%s: must be a list of at most %d strings", path, key,
                    MAX_LIST);
    *out = sl_calloc(json_array_size(a) + 1, sizeof(char *));
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (!s || !*s)
            return fail(err, errlen, "%s.%s[%zu]: must be a non-empty string", path, key, i);
        (*out)[(*n)++] = lower_dup(s);
    }
    return 0;
}

static int parse_trusted(json_t *obj, const char *path, px_route_t *rt, char *err, size_t errlen)
{
    char **list = NULL;
    size_t n = 0;
    int rc = parse_name_list(obj, path, "trusted_proxies", &list, &n, err, errlen);
    if (rc == 0 && n) {
        rt->trusted = sl_calloc(n, sizeof(*rt->trusted));
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (px_cidr_parse(list[i], &rt->trusted[i]) != 0)
                rc = fail(err, errlen, "%s.trusted_proxies[%zu]: bad address or CIDR \"%s\"", path,
                          i, list[i]);
            rt->ntrusted = i + 1;
        }
    }
    for (size_t i = 0; list && list[i]; i++)
        sl_free(list[i]);
    sl_free(list);
    return rc;
}

static int parse_rewrite(json_t *route, const char *path, px_route_t *rt, char *err, size_t errlen)
{
    const char *strip, *repl, *host;
    if (sl_conf_get_str(route, path, "strip_prefix", NULL, &strip, err, errlen) ||
        sl_conf_get_str(route, path, "replace_prefix", NULL, &repl, err, errlen) ||
        sl_conf_get_str(route, path, "host_header", "pass", &host, err, errlen))
        return SL_EINVAL;
    if ((strip && strip[0] != '/') || (repl && repl[0] != '/'))
        return fail(err, errlen, "%s: strip_prefix and replace_prefix must start with '/'", path);
    if (repl && !strip)
        return fail(err, errlen, "%s.replace_prefix: needs strip_prefix", path);
    if (sl_conf_get_bool(route, path, "retry_non_idempotent", 0, &rt->retry_non_idempotent, err,
                         errlen) ||
        sl_conf_get_bool(route, path, "forward_raw_path", 0, &rt->forward_raw_path, err, errlen) ||
        sl_conf_get_bool(route, path, "request_id", 1, &rt->request_id, err, errlen) ||
        sl_conf_get_bool(route, path, "traceparent", 1, &rt->traceparent, err, errlen))
        return SL_EINVAL;
    rt->strip_prefix = strip ? sl_strdup(strip) : NULL;
    rt->replace_prefix = repl ? sl_strdup(repl) : NULL;
    if (strcmp(host, "pass") == 0) {
        rt->host_mode = PX_HOST_PASS;
    } else if (strcmp(host, "upstream") == 0) {
        rt->host_mode = PX_HOST_UPSTREAM;
    } else {
        if (!*host || strpbrk(host, " \r\n\t"))
            return fail(err, errlen, "%s.host_header: must be pass, upstream or a host value",
                        path);
        rt->host_mode = PX_HOST_FIXED;
        rt->host_value = sl_strdup(host);
    }
    return 0;
}

void px_route_free(void *state)
{
    px_route_t *rt = state;
    if (!rt)
        return;
    for (size_t i = 0; i < rt->nset; i++) {
        sl_free((char *)rt->set_headers[i].name.p);
        sl_free((char *)rt->set_headers[i].value.p);
    }
    for (size_t i = 0; i < rt->nset_resp; i++) {
        sl_free((char *)rt->set_resp_headers[i].name.p);
        sl_free((char *)rt->set_resp_headers[i].value.p);
    }
    for (size_t i = 0; i < rt->nremove; i++)
        sl_free(rt->remove_headers[i]);
    for (size_t i = 0; i < rt->nremove_resp; i++)
        sl_free(rt->remove_resp_headers[i]);
    sl_free(rt->set_headers);
    sl_free(rt->set_resp_headers);
    sl_free(rt->remove_headers);
    sl_free(rt->remove_resp_headers);
    sl_free(rt->trusted);
    sl_free(rt->strip_prefix);
    sl_free(rt->replace_prefix);
    sl_free(rt->host_value);
    sl_cache_route_free(rt->cache);
    sl_free(rt);
}

/* Read after the other options: the key follows forward_raw_path. */
static int parse_cache(json_t *route, const char *path, px_route_t *rt, char *err, size_t errlen)
{
    rt->cache_up = (sl_cache_upstream_t){px_forward, rt, rt->forward_raw_path};
    return sl_cache_route_parse(route, path, &rt->cache_up, &rt->cache, err, errlen);
}

int px_route_configure(json_t *route, const char *path, void **state, char *err, size_t errlen)
{
    static const char *const keys[] = {"host_header",
                                       "upstream",
                                       "strip_prefix",
                                       "replace_prefix",
                                       "set_headers",
                                       "remove_headers",
                                       "trusted_proxies",
                                       "set_response_headers",
                                       "remove_response_headers",
                                       "retry_non_idempotent",
                                       "forward_raw_path",
                                       "request_id",
                                       "traceparent",
                                       "cache",
                                       NULL};
    const char *name;
    const sl_config_t *cfg = sl_config_loading();
    if (sl_router_check_keys(route, path, keys, SL_ARRAY_LEN(keys), err, errlen) ||
        sl_conf_get_str(route, path, "upstream", NULL, &name, err, errlen))
        return SL_EINVAL;
    if (!name)
        return fail(err, errlen, "%s.upstream: required (a name from \"upstreams\")", path);
    px_upstream_t *up = px_upstream_find(cfg ? sl_config_section(cfg, "upstreams") : NULL, name);
    if (!up)
        return fail(err, errlen, "%s.upstream: no upstream named \"%s\" in \"upstreams\"", path,
                    name);
    px_route_t *rt = sl_calloc(1, sizeof(*rt));
    rt->up = up;
    if (parse_rewrite(route, path, rt, err, errlen) ||
        parse_header_map(route, path, "set_headers", &rt->set_headers, &rt->nset, err, errlen) ||
        parse_header_map(route, path, "set_response_headers", &rt->set_resp_headers, &rt->nset_resp,
                         err, errlen) ||
        parse_name_list(route, path, "remove_headers", &rt->remove_headers, &rt->nremove, err,
                        errlen) ||
        parse_name_list(route, path, "remove_response_headers", &rt->remove_resp_headers,
                        &rt->nremove_resp, err, errlen) ||
        parse_trusted(route, path, rt, err, errlen) || parse_cache(route, path, rt, err, errlen)) {
        px_route_free(rt);
        return SL_EINVAL;
    }
    *state = rt;
    return 0;
}
