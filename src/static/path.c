/* sluice - SPDX-License-Identifier: MIT
 *
 * Request path -> path relative to the document root, lexically. Escapes
 * are decoded exactly once, and anything that could change meaning at a
 * later layer (NUL, an encoded '/', a backslash) is refused rather than
 * passed on. "." and ".." are resolved here, so the opener only ever sees
 * plain names; the opener still refuses to leave the root (open.c), since
 * symlinks are only known to the file system.
 */
#include "static_int.h"

/* Close the segment that ends at out[*o] (exclusive) and started at
 * out[seg]: drop "." and pop the previous segment for "..". */
static int end_segment(char *out, size_t *o, size_t seg, const char **why)
{
    size_t len = *o - seg;
    if (len == 1 && out[seg] == '.') {
        *o = seg;
        return 0;
    }
    if (len == 2 && out[seg] == '.' && out[seg + 1] == '.') {
        if (seg == 0) {
            *why = "a path climbing above the root";
            return SL_EINVAL;
        }
        /* out[seg - 1] is the '/' after the previous segment. */
        size_t p = seg - 1;
        while (p > 0 && out[p - 1] != '/')
            p--;
        *o = p;
        return 0;
    }
    if (len > 0)
        out[(*o)++] = '/';
    return 0;
}

int sl_static_path_normalize(const char *raw, size_t n, char *out, size_t cap, size_t *outlen,
                             const char **why)
{
    size_t o = 0, seg = 0;
    *why = NULL;
    SL_ASSERT(cap > 0);
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)raw[i];
        int encoded = 0;
        if (c == '%') {
            int hi = i + 1 < n ? sl_hex_value((unsigned char)raw[i + 1]) : -1;
            int lo = i + 2 < n ? sl_hex_value((unsigned char)raw[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                *why = "a bad percent escape";
                return SL_EINVAL;
            }
            c = hi * 16 + lo;
            i += 2;
            encoded = 1;
        }
        if (c == 0) {
            *why = "a NUL byte in the path";
            return SL_EINVAL;
        }
        if (c == '\\') {
            *why = "a backslash in the path";
            return SL_EINVAL;
        }
        if (c == '/' && encoded) {
            *why = "an encoded '/' in the path";
            return SL_EINVAL;
        }
        if (c == '/') {
            if (o == seg)
                continue; /* empty segment: "//" and the leading '/' */
            if (o + 1 >= cap)
                return SL_ETOOBIG;
            if (end_segment(out, &o, seg, why) != 0)
                return SL_EINVAL;
            seg = o;
            continue;
        }
        if (o + 1 >= cap)
            return SL_ETOOBIG;
        out[o++] = (char)c;
    }
    /* The last segment: "." and ".." name directories, so a trailing slash
     * is implied ("a/b/.." is "a/"). */
    size_t len = o - seg;
    int dotseg =
        (len == 1 && out[seg] == '.') || (len == 2 && out[seg] == '.' && out[seg + 1] == '.');
    if (dotseg) {
        if (o + 1 >= cap)
            return SL_ETOOBIG;
        if (end_segment(out, &o, seg, why) != 0)
            return SL_EINVAL;
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

int sl_static_path_has_dotfile(const char *rel, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rel[i] == '.' && (i == 0 || rel[i - 1] == '/'))
            return 1;
    return 0;
}
