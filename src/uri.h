/* sluice - SPDX-License-Identifier: MIT
 *
 * Request paths normalised once, before routing (RFC 3986 section 6), so
 * that what the router matched is what handlers and upstreams see: a deny
 * route cannot be walked around with "//", "/./", "/../" or "%61".
 */
#ifndef SL_URI_H
#define SL_URI_H

#include "sl.h"
#include "pool.h"

/* A byte allowed in a request-target on any protocol: VCHAR (0x21-0x7e),
 * the HTTP/1.1 parser's rule, applied to HTTP/2's :path too. */
static inline int sl_uri_is_target_byte(uint8_t c)
{
    return c > 0x20 && c < 0x7f;
}

typedef enum sl_uri_flags {
    SL_URI_KEEP_ENCODED_SLASH = 1, /* "%2F" stays encoded instead of a 400 */
} sl_uri_flags_t;

/* Normalise path (the request-target up to '?', starting with '/'):
 * percent-encodings of unreserved characters decoded, the others
 * upper-cased; empty segments ("//") collapsed; "." and ".." segments
 * resolved. *out is path itself when nothing changes (the common case, no
 * copy), else a copy of at most path.n bytes from pool. Returns 0, or
 * SL_EINVAL with a
 * reason in *why: a byte outside the target class, a malformed
 * percent-encoding, an encoded slash (unless flags allow it), an encoded
 * NUL, or ".." above the root. */
int sl_uri_normalize_path(sl_str_t path, unsigned flags, sl_pool_t *pool, sl_str_t *out,
                          const char **why);

#endif
