/* sluice - SPDX-License-Identifier: MIT
 *
 * Query strings, one implementation for every handler: a raw lookup of one
 * name (the value still %-encoded, for handlers that want a number or a
 * token), and a full split of "a=1&b=%20x" into a bounded array of
 * decoded pairs (the harness). In both, a segment without '=' has an
 * empty value and the last of repeated names wins.
 */
#ifndef SL_QUERY_H
#define SL_QUERY_H

#include "sl.h"

/* The raw value of the last "name" or "name=value" segment of query.
 * Returns 0, or SL_EAGAIN when name is absent. */
int sl_query_get(sl_str_t query, const char *name, sl_str_t *value);
/* name's raw value as an unsigned decimal (sl_str_parse_u64) within
 * [min, max], or def when absent. Returns 0, SL_EINVAL or SL_ETOOBIG. */
int sl_query_get_u64(sl_str_t query, const char *name, uint64_t def, uint64_t min, uint64_t max,
                     uint64_t *out);

/* One decoded parameter; both strings are NUL-terminated (the NUL is not
 * counted in .n) and may contain NUL bytes of their own (%00). */
typedef struct sl_query_param {
    sl_str_t name, value;
} sl_query_param_t;

typedef struct sl_query {
    sl_query_param_t *v;
    size_t n;
} sl_query_t;

/* Percent-decode s[0..n) into dst (room for n bytes); '+' becomes a space.
 * Returns the decoded length, or SL_EINVAL on a malformed %-escape. dst may
 * equal s (decoding never grows). */
ssize_t sl_query_pct_decode(const char *s, size_t n, char *dst);

/* Split raw ("a=1&b=%20x") into at most max parameters, decoded into
 * scratch, which needs raw.n + 1 bytes. Empty segments are skipped; a
 * segment without '=' has an empty value. Returns 0, SL_ETOOBIG when there
 * are more than max parameters or SL_EINVAL on bad %-encoding; *why then
 * says which (static string). */
int sl_query_parse(sl_str_t raw, sl_query_param_t *params, size_t max, char *scratch,
                   size_t scratch_len, size_t *n, const char **why);

/* The last value given for name (later ones win), or NULL. */
const sl_str_t *sl_query_find(const sl_query_t *q, const char *name);

/* Look name up in q and parse it with sl_str_parse_u64; def when absent. */
int sl_query_find_u64(const sl_query_t *q, const char *name, uint64_t def, uint64_t min,
                      uint64_t max, uint64_t *out);

#endif
