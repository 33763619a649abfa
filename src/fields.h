/* sluice - SPDX-License-Identifier: MIT
 *
 * What HTTP/2 and HTTP/3 share about field blocks (RFC 9113 8.3, RFC 9114
 * 4.3): the request model finished from its pseudo-fields, and the
 * response head and trailers as lists of lower-case fields, which each
 * protocol then hands to its own encoder (nghttp2_nv, nghttp3_nv).
 */
#ifndef SL_FIELDS_H
#define SL_FIELDS_H

#include "req.h"

/* The request head is complete: path and query split from :path, the
 * authority from Host when :authority is absent, the scheme from the
 * connection when :scheme is, is_head; several Cookie fields joined into
 * one with "; " (RFC 9113 8.2.3, RFC 9114 4.2.1), as handlers and
 * HTTP/1.1 upstreams expect. ncookies: how many were seen (saturating). */
void sl_fields_request_done(sl_req_t *req, unsigned ncookies);

/* A status (100..999) as three digits and a NUL. */
void sl_fields_status(char out[4], int code);

/* name, lower-cased into req's pool when it has upper case (field names
 * are lower-case on the wire). */
sl_str_t sl_fields_lower(sl_req_t *req, sl_str_t name);

/* The final response head: ":status" first (a status outside 200..999 is
 * logged and sent as 500), the handler's fields lower-cased without the
 * connection-specific ones, then date and server unless the handler set
 * them, and content-length from res.content_length. out has room for
 * res.headers.n + 4 fields; status and clen are the caller's buffers for
 * the digits, alive as long as the fields are. Returns the count. */
size_t sl_fields_response(sl_req_t *req, double now, sl_header_t *out, char status[4],
                          char clen[24]);

/* A 1xx head: ":status" (code gets the digits) and hdrs without the
 * connection-specific fields, lower-cased; out has room for hdrs->n + 1
 * (hdrs may be NULL). Returns the count. */
size_t sl_fields_informational(sl_req_t *req, int status, const sl_headers_t *hdrs,
                               sl_header_t *out, char code[4]);

/* The handler's trailers without connection-specific fields, lower-cased;
 * out has room for res.trailers.n. Returns the count. */
size_t sl_fields_trailers(sl_req_t *req, sl_header_t *out);

#endif
