/* sluice - SPDX-License-Identifier: MIT
 *
 * What HTTP/2 and HTTP/3 share about field blocks (RFC 9113 8.3, RFC 9114
 * 4.3): the request model finished from its pseudo-fields, and the
 * response head and trailers as lists of lower-case fields, written once
 * in the array each protocol's library takes (sl_nv_t).
 */
#ifndef SL_FIELDS_H
#define SL_FIELDS_H

#include "req.h"
#include <stddef.h>

/* The request head is complete: path and query split from :path, the
 * authority from Host when :authority is absent, the scheme from the
 * connection when :scheme is, is_head; several Cookie fields joined into
 * one with "; " (RFC 9113 8.2.3, RFC 9114 4.2.1), as handlers and
 * HTTP/1.1 upstreams expect. ncookies: how many were seen (saturating). */
void sl_fields_request_done(sl_req_t *req, unsigned ncookies);

/* One field laid out as nghttp2_nv and nghttp3_nv both are (the same five
 * members), so the head is built once and handed on as it is, with no
 * second array of copies. h2/stream.c and h3/stream.c check the layout at
 * compile time. flags is the library's: the callers pass theirs. */
typedef struct sl_nv {
    uint8_t *name, *value;
    size_t namelen, valuelen;
    uint8_t flags;
} sl_nv_t;

#define SL_NV_SAME_LAYOUT(T)                                                                       \
    _Static_assert(sizeof(T) == sizeof(sl_nv_t) && offsetof(T, name) == offsetof(sl_nv_t, name) && \
                       offsetof(T, value) == offsetof(sl_nv_t, value) &&                           \
                       offsetof(T, namelen) == offsetof(sl_nv_t, namelen) &&                       \
                       offsetof(T, valuelen) == offsetof(sl_nv_t, valuelen) &&                     \
                       offsetof(T, flags) == offsetof(sl_nv_t, flags),                             \
                   #T " is laid out as sl_nv_t")

/* A status (100..999) as three digits and a NUL. */
void sl_fields_status(char out[4], int code);

/* name, lower-cased into req's pool when it has upper case (field names
 * are lower-case on the wire). */
sl_str_t sl_fields_lower(sl_req_t *req, sl_str_t name);

/* The final response head: ":status" first (a status outside 200..999 is
 * logged and sent as 500), the handler's fields lower-cased without the
 * connection-specific ones, then date and server unless the handler set
 * them, and content-length from res.content_length. out has room for
 * res.headers.n + 4 fields, each given flags; status and clen are the
 * caller's buffers for the digits, alive as long as the fields are.
 * Returns the count. */
size_t sl_fields_response(sl_req_t *req, double now, sl_nv_t *out, uint8_t flags, char status[4],
                          char clen[24]);

/* A 1xx head: ":status" (code gets the digits) and hdrs without the
 * connection-specific fields, lower-cased; out has room for hdrs->n + 1
 * (hdrs may be NULL). Returns the count. */
size_t sl_fields_informational(sl_req_t *req, int status, const sl_headers_t *hdrs, sl_nv_t *out,
                               uint8_t flags, char code[4]);

/* The handler's trailers without connection-specific fields, lower-cased;
 * out has room for res.trailers.n. Returns the count. */
size_t sl_fields_trailers(sl_req_t *req, sl_nv_t *out, uint8_t flags);

#endif
