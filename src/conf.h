/* sluice - SPDX-License-Identifier: MIT
 *
 * Reading configuration values out of jansson objects: typed getters with
 * bounds, the "unknown key (did you mean ...)" check, and the key-table
 * engine that loads a struct from a static table (name, type, offset,
 * default, min, max). A leaf: the core loader (config.c), the router and
 * every module's section or route options use it, and it uses none of them.
 * Every message names the JSON path: "<path>.<key>: reason".
 */
#ifndef SL_CONF_H
#define SL_CONF_H

#include "sl.h"
#include <jansson.h>

#define SL_CONF_PATH_LEN 256

/* Write the message into err (when given) and return SL_EINVAL. */
int sl_conf_fail(char *err, size_t errlen, const char *fmt, ...) SL_PRINTF(3, 4);
/* "path.key", or "key" at the top level, into out[SL_CONF_PATH_LEN]. */
void sl_conf_path(char *out, const char *path, const char *key);

/* Refuse any key of obj not in allowed[0..n): "<path>.<key>: unknown key"
 * (with a "did you mean" hint) in err and SL_EINVAL, else 0. */
int sl_conf_check_keys(json_t *obj, const char *path, const char *const *allowed, size_t n,
                       char *err, size_t errlen);

/* Each reads key from obj (which may be NULL); when absent stores def. On a
 * bad value it writes "<path>.<key>: reason" into err and returns SL_EINVAL. */
int sl_conf_get_int(json_t *obj, const char *path, const char *key, int64_t def, int64_t min,
                    int64_t max, int64_t *out, char *err, size_t errlen);
int sl_conf_get_bool(json_t *obj, const char *path, const char *key, int def, int *out, char *err,
                     size_t errlen);
/* A pointer into obj (valid while the document lives) or def; an explicit
 * null gives NULL ("none", distinct from absent). */
int sl_conf_get_str(json_t *obj, const char *path, const char *key, const char *def,
                    const char **out, char *err, size_t errlen);
/* A non-empty string copied with sl_strdup: required, or optional (absent
 * leaves *out as it is, a given value replaces and frees it). */
int sl_conf_get_req_str(json_t *obj, const char *path, const char *key, char **out, char *err,
                        size_t errlen);
int sl_conf_get_opt_str(json_t *obj, const char *path, const char *key, char **out, char *err,
                        size_t errlen);

/* An array of at most max header field names (RFC 9110 tokens), copied
 * lower-cased into out[0..*n) (sl_strdup each; the caller frees them,
 * also after an error). Absent: *n = 0. */
int sl_conf_get_names(json_t *obj, const char *path, const char *key, char **out, size_t max,
                      size_t *n, char *err, size_t errlen);

/* A secret kept in a file named by key (absent: *len = 0): 16 to cap - 1
 * bytes, trailing whitespace dropped. Not NUL-terminated. */
int sl_conf_read_secret(json_t *obj, const char *path, const char *key, char *out, size_t cap,
                        size_t *len, char *err, size_t errlen);

/* ---- key tables ---- */

typedef enum sl_conf_type {
    SL_CONF_U32,
    SL_CONF_SIZE,
    SL_CONF_I64,
    SL_CONF_DOUBLE,
} sl_conf_type_t;

typedef struct sl_conf_key {
    const char *name;
    sl_conf_type_t type;
    size_t off;               /* of the field in the struct being loaded */
    int64_t idef, imin, imax; /* integer types */
    double ddef, dmin, dmax;  /* SL_CONF_DOUBLE */
} sl_conf_key_t;

/* clang-format off */
#define SL_CONF_INT(type, st, f, def, min, max) {#f, type, offsetof(st, f), def, min, max, 0, 0, 0}
#define SL_CONF_SECONDS(st, f, def, min, max) {#f, SL_CONF_DOUBLE, offsetof(st, f), 0, 0, 0, def, min, max}
/* clang-format on */

/* Check one value v (path names it) against k and store it at base. */
int sl_conf_key_store(const sl_conf_key_t *k, json_t *v, const char *path, void *base, char *err,
                      size_t errlen);
/* Store every default of tab into the struct at base. */
void sl_conf_table_defaults(const sl_conf_key_t *tab, size_t n, void *base);
/* The struct at base as a JSON object, one member per key of tab. */
json_t *sl_conf_table_dump(const sl_conf_key_t *tab, size_t n, const void *base);
/* Defaults, then every key of obj (an object or NULL) checked and stored;
 * a key neither in tab nor in also[0..nalso) is refused (the caller reads
 * those itself). */
int sl_conf_table_load(const sl_conf_key_t *tab, size_t n, json_t *obj, const char *path,
                       void *base, const char *const *also, size_t nalso, char *err, size_t errlen);

#endif
