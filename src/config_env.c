/* sluice - SPDX-License-Identifier: MIT
 *
 * Every configuration key from the environment (config_env.h). The rule:
 * SLUICE_ + the JSON path in capitals, one "__" between levels, a number
 * for an array index; the value is JSON when it parses as JSON, else a
 * string. The variables are merged into the parsed document before it is
 * validated, so a value from the environment is checked by the same code,
 * and with the same messages, as one from the file; sl_config_env_blame
 * then adds the variable's name to a message about a path it set.
 */
#include "config_env.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

extern char **environ;

#define PREFIX "SLUICE_"
#define MAX_DEPTH 16
#define MAX_NAME 200

/* Older spellings with their own syntax (config.c applies them). */
static int legacy(const char *name, const char *val)
{
    if (strcmp(name, "SLUICE_TLS_CERT") == 0 || strcmp(name, "SLUICE_TLS_KEY") == 0)
        return 1;
    if (strcmp(name, "SLUICE_LISTEN") == 0)
        return val[0] != '['; /* "addr,tls:addr" */
    if (strcmp(name, "SLUICE_ACCESS_LOG") == 0)
        return strcmp(val, "0") == 0 || strcmp(val, "1") == 0;
    return 0;
}

static int depth_of(const char *name)
{
    int d = 1;
    for (const char *p = strstr(name, "__"); p; p = strstr(p + 2, "__"))
        d++;
    return d;
}

static int is_top_key(const char *key, const char *const *keys, size_t nkeys)
{
    for (size_t i = 0; i < nkeys; i++)
        if (strcmp(key, keys[i]) == 0)
            return 1;
    return 0;
}

/* Split "LIMITS__H2_MAX" into lower-case parts; 0 on a bad name. */
static int split(const char *s, char parts[MAX_DEPTH][MAX_NAME], int *nparts)
{
    int n = 0;
    size_t len = 0;
    for (;; s++) {
        if (*s == '\0' || (s[0] == '_' && s[1] == '_')) {
            if (len == 0 || n == MAX_DEPTH)
                return 0;
            parts[n++][len] = '\0';
            len = 0;
            if (*s == '\0')
                break;
            s++;
            continue;
        }
        if (len + 1 >= MAX_NAME)
            return 0;
        parts[n][len++] = (char)tolower((unsigned char)*s);
    }
    *nparts = n;
    return 1;
}

static int all_digits(const char *s)
{
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

static void path_append(char *path, const char *part, int is_index)
{
    size_t n = strlen(path);
    if (is_index)
        snprintf(path + n, SL_CONF_PATH_LEN - n, "[%.32s]", part);
    else
        snprintf(path + n, SL_CONF_PATH_LEN - n, "%s%.200s", n ? "." : "", part);
}

/* Store v (taken) at parts[0..n) below root, creating objects on the way. */
static int store(json_t *root, char parts[MAX_DEPTH][MAX_NAME], int n, json_t *v,
                 const char *var, char *path, char *err, size_t errlen)
{
    json_t *at = root;
    path[0] = '\0';
    for (int i = 0; i < n; i++) {
        int last = i == n - 1, idx = json_is_array(at) && all_digits(parts[i]);
        path_append(path, parts[i], idx);
        json_t *next = NULL;
        if (idx) {
            size_t k = strtoul(parts[i], NULL, 10), size = json_array_size(at);
            if (k > size) {
                json_decref(v);
                return sl_conf_fail(err, errlen, "%s: index %zu past the end of %s (%zu items)",
                                    var, k, path, size);
            }
            if (last)
                return (k == size ? json_array_append_new(at, v) : json_array_set_new(at, k, v))
                           ? sl_conf_fail(err, errlen, "%s: cannot set %s", var, path)
                           : 0;
            next = k < size ? json_array_get(at, k) : NULL;
            if (!next)
                json_array_append_new(at, next = json_object());
        } else if (json_is_object(at)) {
            if (last)
                return json_object_set_new(at, parts[i], v) ? sl_conf_fail(err, errlen,
                                                                           "%s: cannot set %s",
                                                                           var, path)
                                                            : 0;
            next = json_object_get(at, parts[i]);
            if (!next)
                json_object_set_new(at, parts[i], next = json_object());
        } else {
            json_decref(v);
            return sl_conf_fail(err, errlen, "%s: %s is inside a value that is not an object", var,
                                path);
        }
        at = next;
    }
    return 0;
}

static json_t *parse_value(const char *val)
{
    json_t *v = json_loads(val, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    return v ? v : json_string(val);
}

static int apply_one(json_t *root, const char *name, const char *val, const char *const *keys,
                     size_t nkeys, sl_config_env_t *tr, char *err, size_t errlen)
{
    char parts[MAX_DEPTH][MAX_NAME];
    int n;
    const char *rest = name + strlen(PREFIX);
    int nested = strstr(rest, "__") != NULL;
    if (!split(rest, parts, &n))
        return nested ? sl_conf_fail(err, errlen, "%s: not a valid configuration variable name",
                                     name)
                      : 0;
    if (!is_top_key(parts[0], keys, nkeys)) {
        /* SLUICE_BIN and the like are not configuration; a nested name is. */
        if (nested)
            return sl_conf_fail(err, errlen, "%s: \"%s\" is not a configuration key", name,
                                parts[0]);
        return 0;
    }
    if (tr->n == SL_CONFIG_ENV_MAX)
        return sl_conf_fail(err, errlen, "%s: more than %d configuration variables", name,
                            SL_CONFIG_ENV_MAX);
    sl_config_env_set_t *s = &tr->set[tr->n];
    snprintf(s->var, sizeof(s->var), "%.200s", name);
    if (store(root, parts, n, parse_value(val), name, s->path, err, errlen))
        return SL_EINVAL;
    tr->n++;
    return 0;
}

typedef struct env_var {
    char name[MAX_NAME + 8];
    const char *val;
    int depth;
} env_var_t;

/* Outer paths first, so SLUICE_LIMITS='{...}' and SLUICE_LIMITS__X combine
 * the same way whatever order the environment lists them in. */
static int by_depth(const void *a, const void *b)
{
    const env_var_t *x = a, *y = b;
    if (x->depth != y->depth)
        return x->depth - y->depth;
    return strcmp(x->name, y->name);
}

int sl_config_env_merge(json_t *root, const char *const *keys, size_t nkeys, sl_config_env_t *tr,
                        char *err, size_t errlen)
{
    env_var_t vars[SL_CONFIG_ENV_MAX + 1];
    size_t nv = 0;
    tr->n = 0;
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t nlen = eq ? (size_t)(eq - *e) : 0;
        if (!eq || strncmp(*e, PREFIX, strlen(PREFIX)) != 0 || eq[1] == '\0' || nlen > MAX_NAME)
            continue; /* an empty value counts as unset (containers pass VAR=) */
        if (nv == SL_ARRAY_LEN(vars))
            return sl_conf_fail(err, errlen, "environment: more than %d SLUICE_* variables",
                                SL_CONFIG_ENV_MAX);
        env_var_t *v = &vars[nv];
        memcpy(v->name, *e, nlen);
        v->name[nlen] = '\0';
        v->val = eq + 1;
        if (legacy(v->name, v->val))
            continue;
        v->depth = depth_of(v->name);
        nv++;
    }
    qsort(vars, nv, sizeof(vars[0]), by_depth);
    for (size_t i = 0; i < nv; i++)
        if (apply_one(root, vars[i].name, vars[i].val, keys, nkeys, tr, err, errlen))
            return SL_EINVAL;
    return 0;
}

void sl_config_env_blame(const sl_config_env_t *tr, char *err, size_t errlen)
{
    const sl_config_env_set_t *best = NULL;
    size_t bestlen = 0;
    for (size_t i = 0; i < tr->n; i++) {
        size_t n = strlen(tr->set[i].path);
        char next = err[n];
        if (n > bestlen && strncmp(err, tr->set[i].path, n) == 0 &&
            (next == ':' || next == '.' || next == '['))
            best = &tr->set[i], bestlen = n;
    }
    size_t len = strlen(err);
    if (best && len < errlen)
        snprintf(err + len, errlen - len, " (from the environment: %s)", best->var);
}
