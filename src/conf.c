/* sluice - SPDX-License-Identifier: MIT
 *
 * Typed getters, the unknown-key check and the key-table engine (conf.h).
 * Every message names the JSON path, so a user finds the line to fix.
 */
#include "conf.h"
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

/* ---- error helpers ---- */

int sl_conf_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return SL_EINVAL;
}

/* A path too long for the buffer is cut short, which only shortens an
 * error message. */
void sl_conf_path(char *out, const char *path, const char *key)
{
    if (path && *path)
        snprintf(out, SL_CONF_PATH_LEN, "%s.%s", path, key);
    else
        snprintf(out, SL_CONF_PATH_LEN, "%s", key);
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[65];
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t sub = diag + (a[i - 1] != b[j - 1]);
            row[j] = SL_MIN(SL_MIN(row[j - 1] + 1, up + 1), sub);
            diag = up;
        }
    }
    return row[lb];
}

/* "path.key: unknown key", with the closest known name when a typo is
 * likely (two edits or fewer). */
static int fail_unknown(char *err, size_t errlen, const char *path, const char *key,
                        const char *const *known, size_t nknown)
{
    char p[SL_CONF_PATH_LEN];
    const char *best = NULL;
    size_t bestd = 3;
    for (size_t i = 0; i < nknown; i++) {
        size_t d = edit_distance(key, known[i]);
        if (d < bestd) {
            bestd = d;
            best = known[i];
        }
    }
    sl_conf_path(p, path, key);
    if (best)
        return sl_conf_fail(err, errlen, "%s: unknown key (did you mean \"%s\"?)", p, best);
    return sl_conf_fail(err, errlen, "%s: unknown key", p);
}

int sl_conf_check_keys(json_t *obj, const char *path, const char *const *allowed, size_t n,
                       char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        size_t i = 0;
        while (i < n && strcmp(key, allowed[i]) != 0)
            i++;
        if (i == n)
            return fail_unknown(err, errlen, path, key, allowed, n);
    }
    return 0;
}

/* ---- typed getters ---- */

int sl_conf_get_int(json_t *obj, const char *path, const char *key, int64_t def, int64_t min,
                    int64_t max, int64_t *out, char *err, size_t errlen)
{
    char p[SL_CONF_PATH_LEN];
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v) {
        *out = def;
        return 0;
    }
    sl_conf_path(p, path, key);
    if (!json_is_integer(v))
        return sl_conf_fail(err, errlen, "%s: must be an integer", p);
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return sl_conf_fail(err, errlen, "%s: must be between %lld and %lld (got %lld)", p,
                            (long long)min, (long long)max, (long long)x);
    *out = x;
    return 0;
}

int sl_conf_get_bool(json_t *obj, const char *path, const char *key, int def, int *out, char *err,
                     size_t errlen)
{
    char p[SL_CONF_PATH_LEN];
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) {
        sl_conf_path(p, path, key);
        return sl_conf_fail(err, errlen, "%s: must be true or false", p);
    }
    *out = json_is_true(v);
    return 0;
}

int sl_conf_get_str(json_t *obj, const char *path, const char *key, const char *def,
                    const char **out, char *err, size_t errlen)
{
    char p[SL_CONF_PATH_LEN];
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v) {
        *out = def;
        return 0;
    }
    /* An explicit null means "none", distinct from "absent = default". */
    if (json_is_null(v)) {
        *out = NULL;
        return 0;
    }
    if (!json_is_string(v)) {
        sl_conf_path(p, path, key);
        return sl_conf_fail(err, errlen, "%s: must be a string", p);
    }
    *out = json_string_value(v);
    return 0;
}

int sl_conf_get_req_str(json_t *obj, const char *path, const char *key, char **out, char *err,
                        size_t errlen)
{
    char p[SL_CONF_PATH_LEN];
    const char *s;
    if (sl_conf_get_str(obj, path, key, NULL, &s, err, errlen))
        return SL_EINVAL;
    if (!s || !*s) {
        sl_conf_path(p, path, key);
        return sl_conf_fail(err, errlen, "%s: required (a non-empty string)", p);
    }
    *out = sl_strdup(s);
    return 0;
}

int sl_conf_get_opt_str(json_t *obj, const char *path, const char *key, char **out, char *err,
                        size_t errlen)
{
    char p[SL_CONF_PATH_LEN];
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0) {
        sl_conf_path(p, path, key);
        return sl_conf_fail(err, errlen, "%s: must be a non-empty string", p);
    }
    sl_free(*out);
    *out = sl_strdup(json_string_value(v));
    return 0;
}

void sl_conf_table_defaults(const sl_conf_key_t *tab, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t *f = (uint8_t *)base + tab[i].off;
        switch (tab[i].type) {
        case SL_CONF_U32: *(uint32_t *)f = (uint32_t)tab[i].idef; break;
        case SL_CONF_SIZE: *(size_t *)f = (size_t)tab[i].idef; break;
        case SL_CONF_I64: *(int64_t *)f = tab[i].idef; break;
        case SL_CONF_DOUBLE: *(double *)f = tab[i].ddef; break;
        }
    }
}

json_t *sl_conf_table_dump(const sl_conf_key_t *tab, size_t n, const void *base)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++) {
        const uint8_t *f = (const uint8_t *)base + tab[i].off;
        json_t *v = NULL;
        switch (tab[i].type) {
        case SL_CONF_U32: v = json_integer(*(const uint32_t *)f); break;
        case SL_CONF_SIZE: v = json_integer((json_int_t) * (const size_t *)f); break;
        case SL_CONF_I64: v = json_integer(*(const int64_t *)f); break;
        case SL_CONF_DOUBLE: v = json_real(*(const double *)f); break;
        }
        json_object_set_new(o, tab[i].name, v);
    }
    return o;
}

int sl_conf_key_store(const sl_conf_key_t *k, json_t *v, const char *p, void *base, char *err,
                      size_t errlen)
{
    uint8_t *f = (uint8_t *)base + k->off;
    if (k->type == SL_CONF_DOUBLE) {
        if (!json_is_number(v))
            return sl_conf_fail(err, errlen, "%s: must be a number (seconds)", p);
        double d = json_number_value(v);
        if (!(d >= k->dmin && d <= k->dmax))
            return sl_conf_fail(err, errlen, "%s: must be between %g and %g (got %g)", p, k->dmin,
                                k->dmax, d);
        *(double *)f = d;
        return 0;
    }
    if (!json_is_integer(v))
        return sl_conf_fail(err, errlen, "%s: must be an integer", p);
    json_int_t x = json_integer_value(v);
    if (x < k->imin || x > k->imax)
        return sl_conf_fail(err, errlen, "%s: must be between %lld and %lld (got %lld)", p,
                            (long long)k->imin, (long long)k->imax, (long long)x);
    switch (k->type) {
    case SL_CONF_U32: *(uint32_t *)f = (uint32_t)x; break;
    case SL_CONF_SIZE: *(size_t *)f = (size_t)x; break;
    default: *(int64_t *)f = x; break;
    }
    return 0;
}

int sl_conf_table_load(const sl_conf_key_t *tab, size_t n, json_t *obj, const char *path,
                       void *base, const char *const *also, size_t nalso, char *err, size_t errlen)
{
    const char *names[64];
    const char *key;
    json_t *v;
    char p[SL_CONF_PATH_LEN];
    SL_ASSERT(n + nalso <= SL_ARRAY_LEN(names));
    sl_conf_table_defaults(tab, n, base);
    if (!obj)
        return 0;
    if (!json_is_object(obj))
        return sl_conf_fail(err, errlen, "%s: must be an object", path);
    json_object_foreach(obj, key, v)
    {
        size_t i = 0;
        while (i < n && strcmp(tab[i].name, key) != 0)
            i++;
        if (i == n) {
            size_t k = 0;
            while (k < nalso && strcmp(also[k], key) != 0)
                k++;
            if (k < nalso)
                continue;
            for (size_t j = 0; j < n; j++)
                names[j] = tab[j].name;
            for (size_t j = 0; j < nalso; j++)
                names[n + j] = also[j];
            return fail_unknown(err, errlen, path, key, names, n + nalso);
        }
        sl_conf_path(p, path, key);
        if (sl_conf_key_store(&tab[i], v, p, base, err, errlen))
            return SL_EINVAL;
    }
    return 0;
}

int sl_conf_get_names(json_t *obj, const char *path, const char *key, char **out, size_t max,
                      size_t *n, char *err, size_t errlen)
{
    char p[SL_CONF_PATH_LEN];
    json_t *a = json_object_get(obj, key);
    *n = 0;
    if (!a)
        return 0;
    sl_conf_path(p, path, key);
    if (!json_is_array(a) || json_array_size(a) > max)
        return sl_conf_fail(err, errlen, "%s: must be an array of at most %zu header names", p,
                            max);
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (!s || !sl_str_is_token((sl_str_t){s, strlen(s)}))
            return sl_conf_fail(err, errlen, "%s[%zu]: must be a header name", p, i);
        for (size_t j = 0; j < *n; j++)
            if (strcasecmp(out[j], s) == 0)
                return sl_conf_fail(err, errlen, "%s[%zu]: %s is listed twice", p, i, s);
        char *l = sl_strdup(s);
        for (char *c = l; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        out[(*n)++] = l;
    }
    return 0;
}

int sl_conf_read_secret(json_t *v, const char *path, const char *key, char *out, size_t cap,
                        size_t *len, char *err, size_t errlen)
{
    const char *file;
    if (sl_conf_get_str(v, path, key, NULL, &file, err, errlen))
        return SL_EINVAL;
    *len = 0;
    if (!file)
        return 0;
    FILE *f = fopen(file, "rb");
    if (!f) {
        snprintf(err, errlen, "%s.%s: cannot read %s", path, key, file);
        return SL_EINVAL;
    }
    size_t n = fread(out, 1, cap, f);
    int more = fgetc(f) != EOF;
    fclose(f);
    while (n &&
           (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ' || out[n - 1] == '\t'))
        n--;
    if (more || n < 16) {
        snprintf(err, errlen, "%s.%s: %s must hold 16 to %zu bytes", path, key, file, cap - 1);
        return SL_EINVAL;
    }
    *len = n;
    return 0;
}
