/* sluice - SPDX-License-Identifier: MIT
 *
 * Query strings (query.h): raw lookups, percent-decoding and the split
 * into decoded pairs. Pure functions: no allocation, no sockets, so the
 * unit tests drive them directly.
 */
#include "query.h"

int sl_query_get(sl_str_t q, const char *name, sl_str_t *out)
{
    size_t nl = strlen(name);
    int found = 0;
    for (size_t i = 0; i < q.n;) {
        size_t e = i;
        while (e < q.n && q.p[e] != '&')
            e++;
        if (e - i >= nl && memcmp(q.p + i, name, nl) == 0 && (e - i == nl || q.p[i + nl] == '=')) {
            size_t v = i + nl + (e - i > nl);
            *out = (sl_str_t){q.p + v, e - v};
            found = 1;
        }
        i = e + 1;
    }
    return found ? 0 : SL_EAGAIN;
}

int sl_query_get_u64(sl_str_t query, const char *name, uint64_t def, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    sl_str_t v;
    if (sl_query_get(query, name, &v) != 0) {
        *out = def;
        return 0;
    }
    return sl_str_parse_u64(v, min, max, out);
}

ssize_t sl_query_pct_decode(const char *s, size_t n, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            dst[o++] = ' ';
        } else if (c == '%') {
            /* A '%' must start a full two-digit escape; anything else is
             * ambiguous, so refuse it rather than guess. */
            if (i + 2 >= n)
                return SL_EINVAL;
            int hi = sl_hex_value((unsigned char)s[i + 1]),
                lo = sl_hex_value((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return SL_EINVAL;
            dst[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            dst[o++] = (char)c;
        }
    }
    return (ssize_t)o;
}

/* Decode one piece into scratch at *used, NUL-terminate it and point out at
 * it. The caller has checked there is room (decoding never grows). */
static int decode_piece(const char *s, size_t n, char *scratch, size_t *used, sl_str_t *out)
{
    ssize_t d = sl_query_pct_decode(s, n, scratch + *used);
    if (d < 0)
        return SL_EINVAL;
    out->p = scratch + *used;
    out->n = (size_t)d;
    scratch[*used + (size_t)d] = '\0';
    *used += (size_t)d + 1;
    return 0;
}

int sl_query_parse(sl_str_t raw, sl_query_param_t *params, size_t max, char *scratch,
                   size_t scratch_len, size_t *n, const char **why)
{
    size_t count = 0, used = 0, i = 0;
    *n = 0;
    SL_ASSERT(scratch_len >= raw.n + 1);
    while (i < raw.n) {
        size_t start = i;
        while (i < raw.n && raw.p[i] != '&')
            i++;
        size_t seg = i - start;
        i++; /* past '&' (or the end) */
        if (seg == 0)
            continue;
        if (count == max) {
            *why = "too many query parameters";
            return SL_ETOOBIG;
        }
        const char *s = raw.p + start;
        const char *eq = memchr(s, '=', seg);
        size_t nlen = eq ? (size_t)(eq - s) : seg;
        sl_query_param_t *pr = &params[count];
        /* name + NUL + value + NUL fits in seg + 1 raw bytes plus the one
         * byte of slack per segment given by the separator, so scratch
         * of raw.n + 1 always has room. */
        if (decode_piece(s, nlen, scratch, &used, &pr->name) != 0)
            goto bad_escape;
        if (eq) {
            if (decode_piece(eq + 1, seg - nlen - 1, scratch, &used, &pr->value) != 0)
                goto bad_escape;
        } else {
            pr->value = SL_STR("");
        }
        count++;
    }
    *n = count;
    return 0;

bad_escape:
    *why = "bad percent-encoding in the query";
    return SL_EINVAL;
}

const sl_str_t *sl_query_find(const sl_query_t *q, const char *name)
{
    for (size_t i = q->n; i-- > 0;)
        if (sl_str_eq(q->v[i].name, name))
            return &q->v[i].value;
    return NULL;
}

int sl_query_find_u64(const sl_query_t *q, const char *name, uint64_t def, uint64_t min,
                      uint64_t max, uint64_t *out)
{
    const sl_str_t *v = sl_query_find(q, name);
    if (!v) {
        *out = def;
        return 0;
    }
    return sl_str_parse_u64(*v, min, max, out);
}
