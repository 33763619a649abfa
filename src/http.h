/* sluice - SPDX-License-Identifier: MIT
 *
 * RFC 9110 helpers for handlers that answer from stored representations
 * (static files, the HTTP cache): HTTP-dates, entity-tag comparison and
 * Range parsing. Pure functions (src/http.c).
 */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include "sl.h"

/* Parse an HTTP-date (IMF-fixdate, RFC 850 or asctime); -1 when invalid. */
int64_t sl_http_date_parse(sl_str_t v);
/* IMF-fixdate of t into out (30 bytes incl. NUL). */
void sl_http_date_format(int64_t t, char out[30]);
/* The Date field value for a response sent at loop time now (RFC 9110
 * 6.6.1: an origin with a clock MUST send one): one string per thread,
 * formatted again only when the second changes. It stays valid (and 29
 * bytes long) for the thread's life, so a protocol may point at it
 * until the head is written. */
const char *sl_http_date_now(double now, size_t *len);
/* Does the If-None-Match / If-Match list v match etag? "*" matches any.
 * weak=1 uses the weak comparison (W/ ignored on both sides), weak=0 the
 * strong one (a W/ tag never matches). Malformed lists match nothing. */
int sl_http_etag_match(sl_str_t v, const char *etag, int weak);

typedef enum sl_http_range {
    SL_HTTP_RANGE_NONE = 0, /* no usable Range: answer 200 */
    SL_HTTP_RANGE_ONE,      /* one satisfiable range: 206 */
    SL_HTTP_RANGE_MULTI,    /* several: answered 200 with the whole file */
    SL_HTTP_RANGE_UNSAT,    /* 416 */
} sl_http_range_t;

/* Parse a Range header against a representation of size bytes. Syntax
 * errors, other units and reversed ranges ("5-1") make the header ignored
 * (NONE). ONE sets [*first, *last] (inclusive, clamped to size). */
sl_http_range_t sl_http_range_parse(sl_str_t v, uint64_t size, uint64_t *first, uint64_t *last);

#endif
