/* sluice - SPDX-License-Identifier: MIT
 *
 * Configuration loader (config.h). jansson parses the file; static tables
 * describe the scalar sections ("limits", "timeouts": name, type, offset,
 * default, min, max) and the top-level keys, and one walker per kind loads
 * and bounds-checks them. Every error names its JSON path. SLUICE_*
 * environment variables are applied last. The reference for every key is
 * docs/config.md; keep the tables and that page in step.
 */
#include "config.h"
#include "config_env.h"
#include "cpus.h"
#include "metrics.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define PATH_LEN SL_CONF_PATH_LEN
#define MAX_FILE_BYTES (16 * 1024 * 1024)
#define MAX_WORKERS 256
#define MAX_LISTENERS 64
#define MAX_CERTS 256
#define MAX_NAMES 1024
#define U31_MAX 2147483647
#define DAY_S 86400.0

/* ---- scalar tables: limits and timeouts ---- */

#define LIM(f, t, def, min, max) SL_CONF_INT(t, sl_limits_t, f, def, min, max)
#define TMO(f, def, min, max) SL_CONF_SECONDS(sl_timeouts_t, f, def, min, max)

/* Defaults and what happens at each bound: config.h and docs/config.md. */
static const sl_conf_key_t limit_keys[] = {
    LIM(h1_uri_bytes, SL_CONF_SIZE, 8192, 256, 1 << 20),
    LIM(h1_header_bytes, SL_CONF_SIZE, 65536, 1024, 16 << 20),
    LIM(h1_max_headers, SL_CONF_SIZE, 100, 1, 10000),
    LIM(body_window_bytes, SL_CONF_SIZE, 65536, 1024, 1 << 30),
    LIM(max_body_bytes, SL_CONF_I64, 1 << 30, 0, INT64_MAX),
    LIM(conn_out_bytes, SL_CONF_SIZE, 256 << 10, 16384, 1 << 30),
    LIM(h2_max_concurrent_streams, SL_CONF_U32, 100, 1, U31_MAX),
    LIM(h2_initial_window, SL_CONF_U32, 1 << 20, 65535, U31_MAX),
    LIM(h2_conn_window, SL_CONF_U32, 16 << 20, 65535, U31_MAX),
    LIM(h2_max_frame_size, SL_CONF_U32, 16384, 16384, 16777215),
    LIM(h2_header_list_bytes, SL_CONF_U32, 65536, 1024, 16 << 20),
    LIM(h2_header_table_bytes, SL_CONF_U32, 4096, 0, 1 << 20),
    LIM(h2_max_continuations, SL_CONF_U32, 8, 0, 1024),
    LIM(h2_reset_burst, SL_CONF_U32, 1000, 1, 1000000),
    LIM(h2_reset_rate, SL_CONF_U32, 33, 1, 1000000),
    LIM(h2_glitch_limit, SL_CONF_U32, 1000, 1, 1000000),
    LIM(h2_glitch_window_s, SL_CONF_U32, 10, 1, 3600),
    LIM(h2_max_settings, SL_CONF_U32, 32, 1, 4096),
    LIM(h2_max_outbound_ack, SL_CONF_U32, 1000, 1, 1000000),
    LIM(max_conns_per_worker, SL_CONF_U32, 10000, 1, 1000000),
    LIM(conns_per_ip, SL_CONF_U32, 0, 0, 1000000),
    LIM(conns_per_ip_v6_prefix, SL_CONF_U32, 64, 1, 128),
};

static const sl_conf_key_t timeout_keys[] = {
    TMO(tls_handshake_s, 10, 0.001, DAY_S),
    TMO(h1_header_s, 10, 0.001, DAY_S),
    TMO(h1_keepalive_s, 75, 0.001, DAY_S),
    TMO(h2_idle_s, 300, 0.001, DAY_S),
    TMO(h2_frame_s, 10, 0, DAY_S),
    TMO(stream_idle_s, 300, 0, DAY_S),
    TMO(request_body_s, 60, 0.001, DAY_S),
    TMO(drain_s, 30, 0, DAY_S),
    TMO(linger_s, 2, 0, 3600),
    TMO(reload_drain_s, 60, 0, DAY_S),
};

/* ---- listeners ---- */

/* Parse "a.b.c.d:port" or "[v6]:port" into ss. Returns NULL or a reason. */
static const char *parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *sslen)
{
    char host[64];
    const char *port;
    size_t hl;
    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return "expected \"[IPv6]:port\"";
        hl = (size_t)(rb - s - 1);
        port = rb + 2;
        if (hl == 0 || hl >= sizeof(host))
            return "bad IPv6 address";
        memcpy(host, s + 1, hl);
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon)
            return "expected \"IPv4:port\" or \"[IPv6]:port\"";
        hl = (size_t)(colon - s);
        port = colon + 1;
        if (hl == 0 || hl >= sizeof(host))
            return "bad IPv4 address";
        memcpy(host, s, hl);
    }
    host[hl] = '\0';
    size_t pl = strlen(port);
    int64_t pv = sl_str_to_u64((sl_str_t){port, pl});
    if (pl > 5 || pv < 0 || pv > 65535)
        return "port must be 0..65535";
    if (s[0] == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            return "bad IPv6 address";
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)pv);
        *sslen = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
            return "bad IPv4 address (IPv6 goes in brackets: \"[::1]:8080\")";
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)pv);
        *sslen = sizeof(*a4);
    }
    return NULL;
}

static int set_listener_addr(sl_listener_cfg_t *lc, const char *addr, const char *path, char *err,
                             size_t errlen)
{
    const char *why = parse_addr(addr, &lc->ss, &lc->sslen);
    if (why)
        return sl_conf_fail(err, errlen, "%s: %s (got \"%s\")", path, why, addr);
    sl_free(lc->addr);
    lc->addr = sl_strdup(addr);
    return 0;
}

static int port_of(const sl_listener_cfg_t *lc)
{
    if (lc->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&lc->ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&lc->ss)->sin_port);
}

/* Two listeners on one fixed address would fail at bind; say it here. */
static int check_duplicate_addrs(const sl_config_t *cfg, const char *what, const char *suffix,
                                 char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const sl_listener_cfg_t *a = &cfg->listeners[i];
        for (size_t j = 0; j < i && port_of(a) != 0; j++) {
            const sl_listener_cfg_t *b = &cfg->listeners[j];
            if (a->sslen == b->sslen && memcmp(&a->ss, &b->ss, a->sslen) == 0)
                return sl_conf_fail(err, errlen, "%s[%zu]%s: same address as %s[%zu] (\"%s\")",
                                    what, i, suffix, what, j, a->addr);
        }
    }
    return 0;
}

/* A server name for SNI: "a.example" or "*.b.example"; stored lower-case. */
static int valid_server_name(char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return 0;
    char *p = s;
    if (p[0] == '*') {
        if (p[1] != '.' || p[2] == '\0')
            return 0;
        p += 2;
    }
    for (; *p; p++) {
        char c = *p;
        if (c >= 'A' && c <= 'Z')
            *p = (char)(c - 'A' + 'a');
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

static int parse_names(json_t *obj, const char *path, sl_tls_cert_cfg_t *c, char *err,
                       size_t errlen)
{
    char p[PATH_LEN];
    json_t *arr = json_object_get(obj, "names");
    if (!arr)
        return 0;
    sl_conf_path(p, path, "names");
    if (!json_is_array(arr) || json_array_size(arr) > MAX_NAMES)
        return sl_conf_fail(err, errlen, "%s: must be an array of at most %d server names", p,
                            MAX_NAMES);
    c->names = sl_calloc(json_array_size(arr) ? json_array_size(arr) : 1, sizeof(char *));
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_string(v))
            return sl_conf_fail(err, errlen, "%s[%zu]: must be a string", p, i);
        c->names[c->nnames++] = sl_strdup(json_string_value(v));
        if (!valid_server_name(c->names[i]))
            return sl_conf_fail(err, errlen, "%s[%zu]: not a valid server name (\"%s\")", p, i,
                                json_string_value(v));
    }
    return 0;
}

static int parse_cert(json_t *obj, const char *path, sl_tls_cert_cfg_t *c, char *err, size_t errlen)
{
    if (sl_conf_get_req_str(obj, path, "cert", &c->cert, err, errlen) ||
        sl_conf_get_req_str(obj, path, "key", &c->key, err, errlen) ||
        parse_names(obj, path, c, err, errlen))
        return SL_EINVAL;
    return 0;
}

static int parse_certs(json_t *arr, const char *path, sl_tls_cfg_t *t, char *err, size_t errlen)
{
    static const char *const keys[] = {"cert", "key", "names"};
    char p[PATH_LEN], ep[PATH_LEN + 24];
    sl_conf_path(p, path, "certs");
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    if (n == 0 || n > MAX_CERTS)
        return sl_conf_fail(err, errlen, "%s: must be an array of 1 to %d certificates", p,
                            MAX_CERTS);
    t->certs = sl_calloc(n, sizeof(*t->certs));
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        snprintf(ep, sizeof(ep), "%s[%zu]", p, i);
        t->ncerts++;
        if (!json_is_object(o))
            return sl_conf_fail(err, errlen, "%s: must be an object", ep);
        if (sl_conf_check_keys(o, ep, keys, SL_ARRAY_LEN(keys), err, errlen) ||
            parse_cert(o, ep, &t->certs[i], err, errlen))
            return SL_EINVAL;
    }
    return 0;
}

static int parse_tls(json_t *obj, const char *path, sl_tls_cfg_t *t, char *err, size_t errlen)
{
    static const char *const keys[] = {
        "cert",         "key",         "names",           "certs",     "self_signed",  "ciphers",
        "ciphersuites", "min_version", "session_tickets", "client_ca", "verify_client"};
    const char *minv, *verify;
    char p[PATH_LEN];
    t->session_tickets = 1;
    t->min_version = sl_strdup("TLSv1.2");
    if (!json_is_object(obj))
        return sl_conf_fail(err, errlen, "%s: must be an object", path);
    if (sl_conf_check_keys(obj, path, keys, SL_ARRAY_LEN(keys), err, errlen))
        return SL_EINVAL;
    json_t *certs = json_object_get(obj, "certs");
    int shorthand = json_object_get(obj, "cert") || json_object_get(obj, "key") ||
                    json_object_get(obj, "names");
    if (certs && shorthand)
        return sl_conf_fail(err, errlen, "%s: use either \"cert\"/\"key\" or \"certs\", not both",
                            path);
    if (certs) {
        if (parse_certs(certs, path, t, err, errlen))
            return SL_EINVAL;
    } else {
        t->certs = sl_calloc(1, sizeof(*t->certs));
        t->ncerts = 1;
        if (parse_cert(obj, path, &t->certs[0], err, errlen))
            return SL_EINVAL;
    }
    if (sl_conf_get_bool(obj, path, "self_signed", 0, &t->self_signed, err, errlen) ||
        sl_conf_get_bool(obj, path, "session_tickets", 1, &t->session_tickets, err, errlen) ||
        sl_conf_get_opt_str(obj, path, "ciphers", &t->ciphers, err, errlen) ||
        sl_conf_get_opt_str(obj, path, "ciphersuites", &t->ciphersuites, err, errlen) ||
        sl_conf_get_str(obj, path, "min_version", "TLSv1.2", &minv, err, errlen))
        return SL_EINVAL;
    if (!minv || (strcmp(minv, "TLSv1.2") != 0 && strcmp(minv, "TLSv1.3") != 0)) {
        sl_conf_path(p, path, "min_version");
        return sl_conf_fail(err, errlen, "%s: must be \"TLSv1.2\" or \"TLSv1.3\"", p);
    }
    sl_free(t->min_version);
    t->min_version = sl_strdup(minv);
    if (sl_conf_get_opt_str(obj, path, "client_ca", &t->client_ca, err, errlen) ||
        sl_conf_get_str(obj, path, "verify_client", "off", &verify, err, errlen))
        return SL_EINVAL;
    sl_conf_path(p, path, "verify_client");
    if (strcmp(verify, "optional") == 0)
        t->verify_client = SL_TLS_VERIFY_OPTIONAL;
    else if (strcmp(verify, "require") == 0)
        t->verify_client = SL_TLS_VERIFY_REQUIRE;
    else if (strcmp(verify, "off") != 0)
        return sl_conf_fail(err, errlen, "%s: must be \"off\", \"optional\" or \"require\"", p);
    if (t->verify_client != SL_TLS_VERIFY_OFF && !t->client_ca)
        return sl_conf_fail(err, errlen,
                            "%s: needs tls.client_ca (the CA that signs client certificates)", p);
    return 0;
}

static void tls_cfg_dispose(sl_tls_cfg_t *t)
{
    for (size_t i = 0; i < t->ncerts; i++) {
        sl_tls_cert_cfg_t *c = &t->certs[i];
        for (size_t j = 0; j < c->nnames; j++)
            sl_free(c->names[j]);
        sl_free(c->names);
        sl_free(c->cert);
        sl_free(c->key);
    }
    sl_free(t->certs);
    sl_free(t->ciphers);
    sl_free(t->ciphersuites);
    sl_free(t->min_version);
    sl_free(t->client_ca);
}

static int parse_listener(sl_config_t *cfg, json_t *obj, const char *path, sl_listener_cfg_t *lc,
                          char *err, size_t errlen)
{
    static const char *const keys[] = {
        "addr",           "tls", "h2c", "h2c_upgrade", "backlog", "proxy_protocol", "quic",
        "alt_svc_max_age"};
    char p[PATH_LEN];
    const char *addr;
    int64_t backlog;
    if (!json_is_object(obj))
        return sl_conf_fail(err, errlen, "%s: must be an object", path);
    if (sl_conf_check_keys(obj, path, keys, SL_ARRAY_LEN(keys), err, errlen) ||
        sl_conf_get_str(obj, path, "addr", NULL, &addr, err, errlen))
        return SL_EINVAL;
    sl_conf_path(p, path, "addr");
    if (!addr)
        return sl_conf_fail(err, errlen, "%s: required", p);
    if (set_listener_addr(lc, addr, p, err, errlen) ||
        sl_conf_get_bool(obj, path, "h2c", 1, &lc->h2c, err, errlen) ||
        sl_conf_get_bool(obj, path, "h2c_upgrade", 0, &lc->h2c_upgrade, err, errlen) ||
        sl_conf_get_bool(obj, path, "proxy_protocol", 0, &lc->proxy_protocol, err, errlen) ||
        sl_conf_get_bool(obj, path, "quic", 0, &lc->quic, err, errlen) ||
        sl_conf_get_int(obj, path, "alt_svc_max_age", 86400, 0, INT32_MAX, &lc->alt_svc_max_age,
                        err, errlen) ||
        sl_conf_get_int(obj, path, "backlog", 511, 1, 65535, &backlog, err, errlen))
        return SL_EINVAL;
    lc->backlog = (int)backlog;
    json_t *tls = json_object_get(obj, "tls");
    if (tls && !json_is_null(tls)) {
        /* tls_cfgs was sized by counting "tls" members first, so the
         * pointer taken here stays valid. */
        lc->tls = &cfg->tls_cfgs[cfg->ntls++];
        sl_conf_path(p, path, "tls");
        if (parse_tls(tls, p, lc->tls, err, errlen))
            return SL_EINVAL;
    }
    sl_conf_path(p, path, "quic");
    /* QUIC is TLS 1.3 inside; a PROXY header has no place in a datagram. */
    if (lc->quic && (!lc->tls || lc->proxy_protocol))
        return sl_conf_fail(err, errlen, "%s: needs \"tls\" and no \"proxy_protocol\"", p);
    /* Client certificates are checked by the TCP side only (docs/h3.md):
     * refused rather than let HTTP/3 bypass them. */
    if (lc->quic && lc->tls->verify_client != SL_TLS_VERIFY_OFF)
        return sl_conf_fail(err, errlen, "%s: not with tls.verify_client (not supported yet)", p);
    return 0;
}

void sl_listener_cfg_bound(const sl_listener_cfg_t *lc, int port)
{
    /* Written once, by the main thread, before the snapshot is shared. */
    sl_listener_cfg_t *w = (sl_listener_cfg_t *)(uintptr_t)lc;
    w->bound_port = port;
    w->alt_svc[0] = '\0';
    if (lc->quic && lc->alt_svc_max_age > 0)
        snprintf(w->alt_svc, sizeof(w->alt_svc), "h3=\":%d\"; ma=%lld", port,
                 (long long)lc->alt_svc_max_age);
}

static int top_listen(sl_config_t *cfg, json_t *v, char *err, size_t errlen)
{
    char p[PATH_LEN];
    if (!v)
        return 0; /* checked after the environment: SLUICE_LISTEN may supply it */
    size_t n = json_is_array(v) ? json_array_size(v) : 0;
    if (n == 0 || n > MAX_LISTENERS)
        return sl_conf_fail(err, errlen, "listen: must be an array of 1 to %d listeners",
                            MAX_LISTENERS);
    size_t ntls = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_object_get(json_array_get(v, i), "tls");
        ntls += t && !json_is_null(t);
    }
    cfg->tls_cfgs = ntls ? sl_calloc(ntls, sizeof(*cfg->tls_cfgs)) : NULL;
    cfg->listeners = sl_calloc(n, sizeof(*cfg->listeners));
    for (size_t i = 0; i < n; i++) {
        sl_listener_cfg_t *lc = &cfg->listeners[cfg->nlisteners++];
        lc->index = (int)i;
        snprintf(p, PATH_LEN, "listen[%zu]", i);
        if (parse_listener(cfg, json_array_get(v, i), p, lc, err, errlen))
            return SL_EINVAL;
    }
    return check_duplicate_addrs(cfg, "listen", ".addr", err, errlen);
}

/* ---- other top-level keys ---- */

static int top_workers(sl_config_t *cfg, json_t *v, char *err, size_t errlen)
{
    if (!v || (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0)) {
        cfg->workers = SL_MIN(sl_cpus_available(), MAX_WORKERS);
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MAX_WORKERS)
        return sl_conf_fail(err, errlen, "workers: must be \"auto\" or an integer 1..%d",
                            MAX_WORKERS);
    cfg->workers = (int)json_integer_value(v);
    return 0;
}

static int top_limits(sl_config_t *cfg, json_t *v, char *err, size_t errlen)
{
    sl_limits_t *l = &cfg->limits;
    if (sl_conf_table_load(limit_keys, SL_ARRAY_LEN(limit_keys), v, "limits", l, NULL, 0, err,
                           errlen))
        return SL_EINVAL;
    /* The URI is part of the request head; a bigger URI bound could never
     * be reached and the client would see 431 instead of 414. */
    if (l->h1_uri_bytes > l->h1_header_bytes)
        return sl_conf_fail(err, errlen,
                            "limits.h1_uri_bytes: must not exceed limits.h1_header_bytes (%zu)",
                            l->h1_header_bytes);
    return 0;
}

static int top_timeouts(sl_config_t *cfg, json_t *v, char *err, size_t errlen)
{
    return sl_conf_table_load(timeout_keys, SL_ARRAY_LEN(timeout_keys), v, "timeouts",
                              &cfg->timeouts, NULL, 0, err, errlen);
}

/* Runs after top_timeouts (table order), so it can see timeouts.drain_s. */
static int top_drain(sl_config_t *cfg, json_t *v, char *err, size_t errlen)
{
    static const sl_conf_key_t k = TMO(drain_s, 30, 0, DAY_S);
    if (!v)
        return 0;
    json_t *t = json_object_get(json_object_get(cfg->root, "timeouts"), "drain_s");
    if (t)
        return sl_conf_fail(err, errlen, "drain_timeout_s: also set as timeouts.drain_s; keep one");
    return sl_conf_key_store(&k, v, "drain_timeout_s", &cfg->timeouts, err, errlen);
}

/* true/false, "stdout", or the path of a file to append to. */
static int top_access_log(sl_config_t *cfg, json_t *v, char *err, size_t errlen)
{
    cfg->access_log = v ? !json_is_false(v) : 1;
    if (json_is_string(v) && strcmp(json_string_value(v), "stdout") != 0) {
        const char *s = json_string_value(v);
        if (s[0] != '/')
            return sl_conf_fail(err, errlen,
                                "access_log: a file must be an absolute path (got \"%s\")", s);
        cfg->access_log_path = sl_strdup(s);
    } else if (v && !json_is_boolean(v) && !json_is_string(v)) {
        return sl_conf_fail(err, errlen,
                            "access_log: must be true, false, \"stdout\" or an absolute path");
    }
    return 0;
}

static int top_pid_file(sl_config_t *cfg, json_t *v, char *err, size_t errlen)
{
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_value(v)[0] != '/')
        return sl_conf_fail(err, errlen, "pid_file: must be null or an absolute path");
    cfg->pid_file = sl_strdup(json_string_value(v));
    return 0;
}

static int top_allow_encoded_slash(sl_config_t *cfg, json_t *v, char *err, size_t errlen)
{
    cfg->allow_encoded_slash = v && json_is_true(v);
    if (v && !json_is_boolean(v))
        return sl_conf_fail(err, errlen, "allow_encoded_slash: must be true or false");
    return 0;
}

static int valid_log_level(const char *s)
{
    return s && (strcmp(s, "debug") == 0 || strcmp(s, "info") == 0 || strcmp(s, "warn") == 0 ||
                 strcmp(s, "error") == 0);
}

static int top_log_level(sl_config_t *cfg, json_t *v, char *err, size_t errlen)
{
    const char *s = v ? json_string_value(v) : "info";
    if (!valid_log_level(s))
        return sl_conf_fail(err, errlen,
                            "log_level: must be \"debug\", \"info\", \"warn\" or \"error\"");
    cfg->log_level = sl_strdup(s);
    return 0;
}

static int top_server_name(sl_config_t *cfg, json_t *v, char *err, size_t errlen)
{
    if (v && json_is_null(v))
        return 0; /* no Server header */
    const char *s = v ? json_string_value(v) : "sluice";
    /* It becomes a header value: visible ASCII and inner spaces only. */
    int ok = s && *s && s[0] != ' ';
    for (const char *c = s; ok && *c; c++)
        ok = *c >= 0x20 && *c < 0x7f;
    if (!ok || s[strlen(s) - 1] == ' ')
        return sl_conf_fail(err, errlen,
                            "server_name: must be null or a non-empty string of printable "
                            "ASCII without surrounding spaces");
    cfg->server_name = sl_strdup(s);
    return 0;
}

/* ---- sections owned by other modules (upstreams, executors, ...) ---- */

static const sl_config_section_def_t *sections[SL_CONFIG_MAX_SECTIONS];
static size_t nsections;
static const sl_config_t *loading; /* the config being loaded, for handlers */

int sl_config_register_section(const sl_config_section_def_t *def)
{
    SL_ASSERT(nsections < SL_CONFIG_MAX_SECTIONS);
    sections[nsections] = def;
    return (int)nsections++;
}

void *sl_config_section(const sl_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < nsections; i++)
        if (strcmp(sections[i]->name, name) == 0)
            return cfg->sections[i];
    return NULL;
}

const sl_config_t *sl_config_loading(void)
{
    return loading;
}

void sl_config_retire_worker(sl_config_t *cfg, int worker_id)
{
    for (size_t i = 0; i < nsections; i++)
        if (sections[i]->retire_worker && cfg->sections[i])
            sections[i]->retire_worker(cfg->sections[i], worker_id);
    sl_config_ack(cfg);
}

/* In registration order, after the core keys: the router's "routes" is
 * registered last, so a route can name an upstream or an executor. */
static int load_sections(sl_config_t *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < nsections; i++) {
        json_t *v = json_object_get(cfg->root, sections[i]->name);
        if (sections[i]->parse(v, sections[i]->name, &cfg->sections[i], err, errlen))
            return SL_EINVAL;
    }
    return 0;
}

/* Backwards: routes first, since a route's state may point into the
 * sections registered before it. */
static void free_sections(sl_config_t *cfg)
{
    for (size_t i = nsections; i-- > 0;) {
        if (cfg->sections[i] && sections[i]->free_state)
            sections[i]->free_state(cfg->sections[i]);
        cfg->sections[i] = NULL;
    }
}

typedef int (*top_fn)(sl_config_t *cfg, json_t *v, char *err, size_t errlen);

/* Loaded in this order; a key may rely on the ones above it. */
static const struct top_key {
    const char *name;
    top_fn load;
} top_keys[] = {
    {"workers", top_workers},
    {"log_level", top_log_level},
    {"access_log", top_access_log},
    {"pid_file", top_pid_file},
    {"server_name", top_server_name},
    {"limits", top_limits},
    {"timeouts", top_timeouts},
    {"drain_timeout_s", top_drain},
    {"listen", top_listen},
    {"allow_encoded_slash", top_allow_encoded_slash},
};

#define MAX_TOP_NAMES (SL_ARRAY_LEN(top_keys) + SL_CONFIG_MAX_SECTIONS)

/* The core keys and the registered sections. */
static size_t top_names(const char **names)
{
    size_t n = 0;
    for (size_t i = 0; i < SL_ARRAY_LEN(top_keys); i++)
        names[n++] = top_keys[i].name;
    for (size_t i = 0; i < nsections; i++)
        names[n++] = sections[i]->name;
    return n;
}

static int load_top(sl_config_t *cfg, char *err, size_t errlen)
{
    const char *names[MAX_TOP_NAMES];
    size_t n = top_names(names);
    if (sl_conf_check_keys(cfg->root, "", names, n, err, errlen))
        return SL_EINVAL;
    for (size_t i = 0; i < SL_ARRAY_LEN(top_keys); i++) {
        json_t *v = json_object_get(cfg->root, top_keys[i].name);
        if (top_keys[i].load(cfg, v, err, errlen))
            return SL_EINVAL;
    }
    return load_sections(cfg, err, errlen);
}

/* ---- environment: the older spellings with a syntax of their own ---- */

/* Unset and empty both mean "not given" (containers often pass VAR=). */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int env_listen(sl_config_t *cfg, const char *val, char *err, size_t errlen)
{
    char item[PATH_LEN], p[PATH_LEN];
    size_t n = 1;
    for (const char *c = val; *c; c++)
        n += *c == ',';
    if (n > MAX_LISTENERS)
        return sl_conf_fail(err, errlen, "SLUICE_LISTEN: at most %d addresses", MAX_LISTENERS);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        sl_free(cfg->listeners[i].addr);
    sl_free(cfg->listeners);
    cfg->listeners = sl_calloc(n, sizeof(*cfg->listeners));
    cfg->nlisteners = 0;
    const char *s = val;
    for (size_t i = 0; i < n; i++) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        while (len && *s == ' ')
            s++, len--;
        while (len && s[len - 1] == ' ')
            len--;
        snprintf(item, sizeof(item), "%.*s", (int)len, s);
        sl_listener_cfg_t *lc = &cfg->listeners[cfg->nlisteners++];
        lc->index = (int)i;
        lc->h2c = 1;
        lc->backlog = 511;
        const char *addr = item;
        if (strncmp(item, "tls:", 4) == 0) {
            if (cfg->ntls == 0)
                return sl_conf_fail(err, errlen,
                                    "SLUICE_LISTEN: \"%s\" needs a \"tls\" object in the "
                                    "config file to copy",
                                    item);
            lc->tls = &cfg->tls_cfgs[0];
            addr += 4;
        }
        snprintf(p, PATH_LEN, "SLUICE_LISTEN[%zu]", i);
        if (set_listener_addr(lc, addr, p, err, errlen))
            return SL_EINVAL;
        s = e ? e + 1 : s + len;
    }
    /* The file's listeners are gone: keep only the TLS object a "tls:"
     * address uses, so unused ones load no certificate. */
    int used = 0;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        used |= cfg->listeners[i].tls != NULL;
    while (cfg->ntls > (size_t)used)
        tls_cfg_dispose(&cfg->tls_cfgs[--cfg->ntls]);
    return check_duplicate_addrs(cfg, "SLUICE_LISTEN", "", err, errlen);
}

static int apply_env(sl_config_t *cfg, char *err, size_t errlen)
{
    const char *v;
    /* "0"/"1"; any other value went through the general rule. */
    if ((v = env("SLUICE_ACCESS_LOG")) && (strcmp(v, "0") == 0 || strcmp(v, "1") == 0))
        cfg->access_log = v[0] == '1';
    /* "addr,tls:addr"; a JSON array went through the general rule. */
    if ((v = env("SLUICE_LISTEN")) && v[0] != '[' && env_listen(cfg, v, err, errlen))
        return SL_EINVAL;
    const char *cert = env("SLUICE_TLS_CERT"), *key = env("SLUICE_TLS_KEY");
    for (size_t i = 0; i < cfg->ntls; i++) {
        sl_tls_cert_cfg_t *c = &cfg->tls_cfgs[i].certs[0];
        if (cert) {
            sl_free(c->cert);
            c->cert = sl_strdup(cert);
        }
        if (key) {
            sl_free(c->key);
            c->key = sl_strdup(key);
        }
    }
    return 0;
}

/* ---- the effective configuration ---- */

json_t *sl_config_effective(const sl_config_t *cfg)
{
    json_t *doc = json_object(), *given = json_deep_copy(cfg->root);
    json_object_set_new(doc, "workers", json_integer(cfg->workers));
    json_object_set_new(doc, "log_level", json_string(cfg->log_level));
    json_object_set_new(doc, "access_log",
                        !cfg->access_log       ? json_false()
                        : cfg->access_log_path ? json_string(cfg->access_log_path)
                                               : json_string("stdout"));
    json_object_set_new(doc, "pid_file", cfg->pid_file ? json_string(cfg->pid_file) : json_null());
    json_object_set_new(doc, "server_name",
                        cfg->server_name ? json_string(cfg->server_name) : json_null());
    json_object_set_new(doc, "allow_encoded_slash", json_boolean(cfg->allow_encoded_slash));
    json_object_set_new(doc, "limits",
                        sl_conf_table_dump(limit_keys, SL_ARRAY_LEN(limit_keys), &cfg->limits));
    json_object_set_new(
        doc, "timeouts",
        sl_conf_table_dump(timeout_keys, SL_ARRAY_LEN(timeout_keys), &cfg->timeouts));
    json_object_set_new(doc, "listen", sl_config_listeners_json(cfg));
    json_object_del(given, "drain_timeout_s"); /* shown as timeouts.drain_s */
    json_object_update_missing(doc, given); /* the sections, after the core keys */
    json_decref(given);
    sl_config_redact(doc);
    return doc;
}

/* ---- load / free ---- */

sl_config_t *sl_config_load_string(const char *json, const char *name, char *err, size_t errlen)
{
    json_error_t je;
    if (!name)
        name = "(embedded)";
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (je.line > 0)
            sl_conf_fail(err, errlen, "%s:%d:%d: %s", name, je.line, je.column, je.text);
        else
            sl_conf_fail(err, errlen, "%s: %s", name, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        sl_conf_fail(err, errlen, "%s: the top level must be a JSON object", name);
        return NULL;
    }
    sl_config_t *cfg = sl_calloc(1, sizeof(*cfg));
    cfg->root = root;
    cfg->path = sl_strdup(name);
    const char *names[MAX_TOP_NAMES];
    sl_config_env_t *tr = sl_malloc(sizeof(*tr));
    int bad = sl_config_env_merge(root, names, top_names(names), tr, err, errlen);
    loading = cfg;
    bad = bad || load_top(cfg, err, errlen) || apply_env(cfg, err, errlen);
    loading = NULL;
    if (bad)
        sl_config_env_blame(tr, err, errlen);
    sl_free(tr);
    if (bad)
        goto fail_load;
    if (cfg->nlisteners == 0) {
        sl_conf_fail(err, errlen, "listen: required (or set SLUICE_LISTEN)");
        goto fail_load;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++)
        cfg->listeners[i].slot = sl_metrics_intern(SL_M_NAME_LISTENER, cfg->listeners[i].addr);
    atomic_init(&cfg->live, 1);
    atomic_init(&cfg->refs, 1);
    return cfg;

fail_load:
    sl_config_free(cfg);
    return NULL;
}

/* Read the whole file; NULL with a message on failure. */
static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        sl_conf_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 8192, len = 0;
    char *buf = sl_malloc(cap);
    for (;;) {
        if (len + 1 == cap) {
            if (cap > MAX_FILE_BYTES) {
                sl_conf_fail(err, errlen, "%s: larger than %d bytes", path, MAX_FILE_BYTES);
                goto fail_read;
            }
            cap *= 2;
            buf = sl_realloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, cap - 1 - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        sl_conf_fail(err, errlen, "%s: read error", path);
        goto fail_read;
    }
    fclose(f);
    buf[len] = '\0';
    if (strlen(buf) != len) {
        sl_conf_fail(err, errlen, "%s: contains a NUL byte", path);
        sl_free(buf);
        return NULL;
    }
    return buf;

fail_read:
    fclose(f);
    sl_free(buf);
    return NULL;
}

sl_config_t *sl_config_load_file(const char *path, char *err, size_t errlen)
{
    char *text = read_file(path, err, errlen);
    if (!text)
        return NULL;
    sl_config_t *cfg = sl_config_load_string(text, path, err, errlen);
    sl_free(text);
    return cfg;
}

void sl_config_free(sl_config_t *cfg)
{
    if (!cfg)
        return;
    if (cfg->runtime_free)
        cfg->runtime_free(cfg->runtime);
    free_sections(cfg); /* before root: their state may point into it */
    for (size_t i = 0; i < cfg->nlisteners; i++)
        sl_free(cfg->listeners[i].addr);
    sl_free(cfg->listeners);
    for (size_t i = 0; i < cfg->ntls; i++)
        tls_cfg_dispose(&cfg->tls_cfgs[i]);
    sl_free(cfg->tls_cfgs);
    sl_free(cfg->log_level);
    sl_free(cfg->access_log_path);
    sl_free(cfg->pid_file);
    sl_free(cfg->server_name);
    sl_free(cfg->path);
    json_decref(cfg->root);
    sl_free(cfg);
}
