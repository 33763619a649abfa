/* sluice - SPDX-License-Identifier: MIT
 *
 * Path normalisation (uri.h): one pass to find out whether anything needs
 * doing, and a second, into a caller's buffer, only when it does.
 */
#include "uri.h"

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int is_unreserved(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Nothing to do: valid bytes, no '%', no empty, "." or ".." segment. */
static int is_normal(sl_str_t p, const char **why)
{
    for (size_t i = 0; i < p.n; i++) {
        uint8_t c = (uint8_t)p.p[i];
        if (!sl_uri_is_target_byte(c)) {
            *why = "invalid byte in the path";
            return -1;
        }
        if (c == '%')
            return 0;
        if (c != '/' || i + 1 == p.n)
            continue;
        uint8_t d = (uint8_t)p.p[i + 1];
        if (d == '/')
            return 0;
        if (d == '.') {
            size_t j = i + 2;
            if (j < p.n && p.p[j] == '.')
                j++;
            if (j == p.n || p.p[j] == '/')
                return 0;
        }
    }
    return 1;
}

/* Decode one percent-encoding at s[i] (s[i] == '%') into *c. Returns the
 * bytes to write: 1 for a decoded unreserved byte, 3 to keep it encoded
 * (upper-case hex), or -1 (malformed, NUL, or a slash not allowed). */
static int pct(sl_str_t s, size_t i, unsigned flags, uint8_t *c, const char **why)
{
    int hi = i + 2 < s.n ? hexval((uint8_t)s.p[i + 1]) : -1;
    int lo = hi >= 0 ? hexval((uint8_t)s.p[i + 2]) : -1;
    if (lo < 0) {
        *why = "malformed percent-encoding in the path";
        return -1;
    }
    *c = (uint8_t)(hi << 4 | lo);
    if (*c == 0) {
        *why = "encoded NUL in the path";
        return -1;
    }
    if (*c == '/' && !(flags & SL_URI_KEEP_ENCODED_SLASH)) {
        *why = "encoded slash in the path";
        return -1;
    }
    return is_unreserved(*c) ? 1 : 3;
}

/* The segment just decoded at buf[seg..*o) (buf[seg - 1] is '/'):
 * resolve "." and "..", drop an empty one ("//"), else keep it and, unless
 * it is the last, its '/'. Returns -1 for ".." above the root. */
static int end_segment(char *buf, size_t seg, size_t *o, int last)
{
    size_t n = *o - seg;
    if (n == 2 && buf[seg] == '.' && buf[seg + 1] == '.') {
        if (seg <= 1)
            return -1;
        size_t k = seg - 1; /* the '/' before ".."; drop the segment before it */
        while (k > 0 && buf[k - 1] != '/')
            k--;
        *o = k;
    } else if (n == 0 || (n == 1 && buf[seg] == '.')) {
        *o = seg; /* "/a//b", "/a/./b" -> "/a/b"; "/a/." -> "/a/" */
    } else if (!last) {
        buf[(*o)++] = '/';
    }
    return 0;
}

int sl_uri_normalize_path(sl_str_t path, unsigned flags, sl_pool_t *pool, sl_str_t *out,
                          const char **why)
{
    static const char hx[] = "0123456789ABCDEF";
    int r = is_normal(path, why);
    if (r < 0)
        return SL_EINVAL;
    if (r == 1 || path.n == 0 || path.p[0] != '/') {
        *out = path;
        return 0;
    }
    /* Every input byte gives at most one output byte. */
    char *buf = sl_pool_alloc(pool, path.n);
    size_t o = 1, i = 1;
    buf[0] = '/';
    for (;;) {
        size_t seg = o;
        while (i < path.n && path.p[i] != '/') {
            uint8_t c = (uint8_t)path.p[i];
            if (!sl_uri_is_target_byte(c)) { /* is_normal stopped at the first '%' */
                *why = "invalid byte in the path";
                return SL_EINVAL;
            }
            if (c != '%') {
                buf[o++] = (char)c;
                i++;
                continue;
            }
            int k = pct(path, i, flags, &c, why);
            if (k < 0)
                return SL_EINVAL;
            if (k == 1) {
                buf[o++] = (char)c;
            } else {
                buf[o++] = '%';
                buf[o++] = hx[c >> 4];
                buf[o++] = hx[c & 15];
            }
            i += 3;
        }
        int last = i >= path.n;
        if (end_segment(buf, seg, &o, last) != 0) {
            *why = "\"..\" above the root of the path";
            return SL_EINVAL;
        }
        if (last)
            break;
        i++;
    }
    *out = (sl_str_t){buf, o};
    return 0;
}
