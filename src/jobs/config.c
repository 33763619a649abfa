/* sluice - SPDX-License-Identifier: MIT
 *
 * The "jobs" and "executors" config sections: one table of keys with
 * defaults and bounds for "jobs" (the one place its defaults are written), and per executor the
 * common keys (type, concurrency, queue, timeout_s, grace_s, content_type) followed by the type's
 * own keys, parsed by its executor file.
 */
#include "jobs_int.h"
#include "../config.h"
#include <openssl/crypto.h>
#include <stdio.h>

#define K(n, d, lo, hi) SL_CONF_INT(SL_CONF_I64, sl_jobs_cfg_t, n, d, lo, hi)
static const sl_conf_key_t jobs_keys[] = {
    K(max_jobs, 10000, 1, 10000000),
    K(retain_bytes, 1 << 20, 1024, 1LL << 32),
    K(ttl_s, 300, 1, 30 * 86400),
    K(heartbeat_s, 15, 1, 3600),
    K(shards, 16, 1, 1024),
    K(max_tombstones, 10000, 1, 10000000),
    K(max_wait_s, 300, 1, 3600),
    K(max_jobs_per_owner, 100, 1, 10000000),
    K(max_retained_bytes, 256LL << 20, 1 << 20, 1LL << 40),
};

/* The two secret files: whole content, trailing white space cut, at least
 * 16 bytes (a guessable secret is no secret). Returns 0 or SL_EINVAL. */
static int parse_secrets(json_t *v, const char *path, sl_jobs_cfg_t *c, char *err, size_t errlen)
{
    char tok[257];
    size_t n;
    if (sl_conf_read_secret(v, path, "owner_key_file", (char *)c->owner_key, sizeof(c->owner_key),
                    &c->owner_key_len, err, errlen) ||
        sl_conf_read_secret(v, path, "admin_token_file", tok, sizeof(tok), &n, err, errlen))
        return SL_EINVAL;
    if (n) {
        tok[n] = '\0';
        if (strpbrk(tok, " \t\r\n")) {
            snprintf(err, errlen, "%s.admin_token_file: the token must be one word", path);
            return SL_EINVAL;
        }
        c->admin_token = sl_strdup(tok);
    }
    return 0;
}

static int num_in(const char *s, uint64_t lo, uint64_t hi, int64_t *out)
{
    uint64_t v;
    if (sl_str_parse_u64((sl_str_t){s, strlen(s)}, lo, hi, &v) != 0)
        return SL_EINVAL;
    *out = (int64_t)v;
    return 0;
}

/* "redis://[:password@]host[:port][/db]" or "unix:/path.sock[?db=N]". */
static int parse_url(const char *url, const char *p, sl_jobs_store_cfg_t *c, char *err,
                     size_t errlen)
{
    char buf[512];
    int64_t n;
    if (strlen(url) >= sizeof(buf))
        return sl_conf_fail(err, errlen, "%s: too long", p);
    snprintf(buf, sizeof(buf), "%s", url);
    if (strncmp(buf, "unix:", 5) == 0) {
        char *q = strchr(buf, '?');
        if (q) {
            *q++ = '\0';
            if (strncmp(q, "db=", 3) != 0 || num_in(q + 3, 0, 1000, &n) != 0)
                return sl_conf_fail(err, errlen, "%s: \"?db=N\" expected after the path", p);
            c->db = (int)n;
        }
        if (buf[5] != '/' || strlen(buf + 5) >= sizeof(c->unix_path))
            return sl_conf_fail(err, errlen, "%s: unix: needs an absolute socket path", p);
        snprintf(c->unix_path, sizeof(c->unix_path), "%s", buf + 5);
        return 0;
    }
    if (strncmp(buf, "redis://", 8) != 0)
        return sl_conf_fail(err, errlen, "%s: must start with redis:// or unix:", p);
    char *h = buf + 8, *at = strrchr(h, '@'), *slash, *colon;
    if (at) {
        *at = '\0';
        char *pw = strchr(h, ':'); /* "user:password" or ":password" */
        if (!pw || strlen(pw + 1) >= sizeof(c->password))
            return sl_conf_fail(err, errlen, "%s: credentials must be \":password@\"", p);
        snprintf(c->password, sizeof(c->password), "%s", pw + 1);
        h = at + 1;
    }
    if ((slash = strchr(h, '/'))) {
        *slash = '\0';
        if (slash[1] && num_in(slash + 1, 0, 1000, &n) != 0)
            return sl_conf_fail(err, errlen, "%s: the database must be a number", p);
        c->db = slash[1] ? (int)n : 0;
    }
    c->port = 6379;
    if ((colon = strrchr(h, ':'))) {
        *colon = '\0';
        if (num_in(colon + 1, 1, 65535, &n) != 0)
            return sl_conf_fail(err, errlen, "%s: bad port", p);
        c->port = (int)n;
    }
    if (!*h || strlen(h) >= sizeof(c->host))
        return sl_conf_fail(err, errlen, "%s: a host is needed", p);
    snprintf(c->host, sizeof(c->host), "%s", h);
    return 0;
}

#define S(n, d, lo, hi) SL_CONF_INT(SL_CONF_I64, sl_jobs_store_cfg_t, n, d, lo, hi)
static const sl_conf_key_t store_keys[] = {
    S(max_events, 10000, 16, 100000000),
    S(max_age_s, 86400, 60, 365 * 86400),
    S(timeout_ms, 2000, 50, 600000),
    S(max_pending, 10000, 16, 10000000),
};

static int parse_store(json_t *v, const char *path, sl_jobs_store_cfg_t *c, char *err,
                       size_t errlen)
{
    static const char *const also[] = {"type", "url", "prefix"};
    char p[SL_CONF_PATH_LEN], up[SL_CONF_PATH_LEN];
    const char *type, *url, *prefix;
    sl_conf_path(p, path, "store");
    sl_conf_table_defaults(store_keys, SL_ARRAY_LEN(store_keys), c);
    snprintf(c->prefix, sizeof(c->prefix), "sluice:");
    if (!v)
        return 0;
    if (!json_is_object(v))
        return sl_conf_fail(err, errlen, "%s: must be an object", p);
    if (sl_conf_table_load(store_keys, SL_ARRAY_LEN(store_keys), v, p, c, also,
                           SL_ARRAY_LEN(also), err, errlen) ||
        sl_conf_get_str(v, p, "type", "memory", &type, err, errlen) ||
        sl_conf_get_str(v, p, "url", "redis://127.0.0.1:6379/0", &url, err, errlen) ||
        sl_conf_get_str(v, p, "prefix", "sluice:", &prefix, err, errlen))
        return SL_EINVAL;
    if (!type || (strcmp(type, "memory") != 0 && strcmp(type, "redis") != 0))
        return sl_conf_fail(err, errlen, "%s.type: must be \"memory\" or \"redis\"", p);
    c->redis = strcmp(type, "redis") == 0;
    if (!prefix || strlen(prefix) >= sizeof(c->prefix))
        return sl_conf_fail(err, errlen, "%s.prefix: at most %zu bytes", p, sizeof(c->prefix) - 1);
    snprintf(c->prefix, sizeof(c->prefix), "%s", prefix);
    sl_conf_path(up, p, "url");
    return url ? parse_url(url, up, c, err, errlen) : sl_conf_fail(err, errlen, "%s: needed", up);
}

static const char *const common_keys[] = {"type",      "concurrency", "queue",
                                          "timeout_s", "grace_s",     "content_type"};

int sl_jobs_check_keys(json_t *obj, const char *path, const char *const *names, size_t n, char *err,
                       size_t errlen)
{
    /* One key table: the core checker, with its "did you mean" hint. */
    const char *all[64];
    size_t k = 0;
    for (size_t i = 0; i < n && k < SL_ARRAY_LEN(all); i++)
        all[k++] = names[i];
    for (size_t i = 0; i < SL_ARRAY_LEN(common_keys) && k < SL_ARRAY_LEN(all); i++)
        all[k++] = common_keys[i];
    SL_ASSERT(k == n + SL_ARRAY_LEN(common_keys));
    k += sl_jobs_ext_key_names(all + k, SL_ARRAY_LEN(all) - k); /* other modules' keys */
    return sl_conf_check_keys(obj, path, all, k, err, errlen);
}

void sl_jobs_config_defaults(sl_jobs_cfg_t *c)
{
    memset(c, 0, sizeof(*c));
    sl_conf_table_defaults(jobs_keys, SL_ARRAY_LEN(jobs_keys), c);
    parse_store(NULL, "jobs", &c->store, NULL, 0);
}

static int parse_jobs(json_t *v, const char *path, void **state, char *err, size_t errlen)
{
    static const char *const file_keys[] = {"owner_key_file", "admin_token_file", "store"};
    sl_jobs_cfg_t *c = sl_calloc(1, sizeof(*c));
    *state = c;
    if (sl_conf_table_load(jobs_keys, SL_ARRAY_LEN(jobs_keys), v, path, c, file_keys,
                           SL_ARRAY_LEN(file_keys), err, errlen))
        return SL_EINVAL;
    if (parse_store(json_object_get(v, "store"), path, &c->store, err, errlen))
        return SL_EINVAL;
    return parse_secrets(v, path, c, err, errlen);
}

void sl_jobs_config_dispose(sl_jobs_cfg_t *c)
{
    if (c->admin_token) {
        OPENSSL_cleanse(c->admin_token, strlen(c->admin_token));
        sl_free(c->admin_token);
        c->admin_token = NULL;
    }
    OPENSSL_cleanse(c->owner_key, sizeof(c->owner_key));
}

static void free_jobs(void *state)
{
    if (state)
        sl_jobs_config_dispose(state);
    sl_free(state);
}

const sl_config_section_def_t sl_jobs_section = {.name = "jobs", .parse = parse_jobs, .free_state = free_jobs};

static const sl_jobs_executor_t *const types[] = {&sl_jobs_exec_builtin, &sl_jobs_exec_process,
                                                  &sl_jobs_exec_upstream, &sl_jobs_exec_redis};

static void free_execs(void *state)
{
    sl_jobs_execs_t *xs = state;
    if (!xs)
        return;
    for (size_t i = 0; i < xs->n; i++) {
        if (xs->v[i].ops && xs->v[i].ops->free_opts)
            xs->v[i].ops->free_opts(xs->v[i].opts);
        sl_free(xs->v[i].name);
        sl_free(xs->v[i].content_type);
        sl_jobs_ext_free(&xs->v[i]);
    }
    sl_free(xs->v);
    sl_free(xs);
}

static int parse_common(json_t *o, const char *p, sl_jobs_exec_def_t *x, char *err, size_t errlen)
{
    int64_t conc, queue, timeout, grace;
    const char *type, *ct;
    if (sl_conf_get_str(o, p, "type", NULL, &type, err, errlen) ||
        sl_conf_get_int(o, p, "concurrency", 64, 1, 100000, &conc, err, errlen) ||
        sl_conf_get_int(o, p, "queue", 1024, 0, 1000000, &queue, err, errlen) ||
        sl_conf_get_int(o, p, "timeout_s", 0, 0, 30 * 86400, &timeout, err, errlen) ||
        sl_conf_get_int(o, p, "grace_s", 5, 0, 3600, &grace, err, errlen) ||
        sl_conf_get_str(o, p, "content_type", NULL, &ct, err, errlen))
        return SL_EINVAL;
    for (size_t i = 0; type && i < SL_ARRAY_LEN(types); i++)
        if (strcmp(types[i]->type, type) == 0)
            x->ops = types[i];
    if (!x->ops) {
        snprintf(err, errlen, "%s.type: must be \"builtin\", \"exec\", \"upstream\" or \"redis\"",
                 p);
        return SL_EINVAL;
    }
    x->concurrency = conc;
    x->queue = queue;
    x->timeout_s = (double)timeout;
    x->grace_s = (double)grace;
    x->content_type = sl_strdup(ct ? ct : "application/octet-stream");
    return sl_jobs_ext_parse(o, p, x, err, errlen);
}

static int parse_execs(json_t *v, const char *path, void **state, char *err, size_t errlen)
{
    char p[256];
    sl_jobs_execs_t *xs = sl_calloc(1, sizeof(*xs));
    *state = xs;
    sl_jobs_stats_register(); /* at load: before the workers run */
    if (!v)
        return 0;
    if (!json_is_object(v)) {
        snprintf(err, errlen, "%s: must be an object", path);
        return SL_EINVAL;
    }
    xs->v = sl_calloc(json_object_size(v) + 1, sizeof(*xs->v));
    const char *name;
    json_t *o;
    json_object_foreach(v, name, o)
    {
        snprintf(p, sizeof(p), "%s.%s", path, name);
        if (!json_is_object(o)) {
            snprintf(err, errlen, "%s: must be an object", p);
            return SL_EINVAL;
        }
        sl_jobs_exec_def_t *x = &xs->v[xs->n++];
        x->name = sl_strdup(name);
        atomic_init(&x->admitted, 0);
        if (parse_common(o, p, x, err, errlen) || x->ops->parse(o, p, &x->opts, err, errlen))
            return SL_EINVAL;
    }
    return 0;
}

const sl_config_section_def_t sl_jobs_executors_section = {
    .name = "executors", .parse = parse_execs, .free_state = free_execs};

const sl_jobs_exec_def_t *sl_jobs_exec_find(const char *name)
{
    const sl_config_t *cfg = sl_config_loading();
    sl_jobs_execs_t *xs = cfg ? sl_config_section(cfg, "executors") : NULL;
    for (size_t i = 0; xs && i < xs->n; i++)
        if (strcmp(xs->v[i].name, name) == 0)
            return &xs->v[i];
    return NULL;
}

const char *sl_jobs_exec_name(const sl_jobs_exec_def_t *x)
{
    return x->name;
}

const char *sl_jobs_exec_content_type(const sl_jobs_exec_def_t *x)
{
    return x->content_type;
}
