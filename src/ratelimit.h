/* sluice - SPDX-License-Identifier: MIT
 *
 * Per-route rate limits by key (route "rate_limit"): a token bucket per
 * key (the client address, a request header or cookie, or the route's
 * job owner), one table per route shared by every worker, bounded in
 * keys (the least recently used key goes first). Past the limit: 429
 * with Retry-After and the RateLimit / RateLimit-Policy fields of
 * draft-ietf-httpapi-ratelimit-headers.
 */
#ifndef SL_RATELIMIT_H
#define SL_RATELIMIT_H

#include "sl.h"
#include "req.h"
#include <jansson.h>

typedef struct sl_ratelimit sl_ratelimit_t;
/* The request's job owner under its route's rule (the route handler's
 * rate_key): 0 and out, or non-zero when it names none. */
typedef int (*sl_ratelimit_owner_fn)(const sl_req_t *req, char *out, size_t cap);

/* route.rate_limit, or *out = NULL when the route has none. owner: NULL
 * when the handler has no job owners (then "owner" is refused). */
int sl_ratelimit_parse(json_t *route, const char *path, sl_ratelimit_owner_fn owner,
                       sl_ratelimit_t **out, char *err, size_t errlen);
void sl_ratelimit_free(sl_ratelimit_t *rl);
/* Whether the key is the client's address (checked before route auth). */
int sl_ratelimit_by_address(const sl_ratelimit_t *rl);
/* 0: the request goes on (its response gets the RateLimit fields);
 * SL_ELIMIT: it was answered 429. */
int sl_ratelimit_admit(sl_ratelimit_t *rl, sl_req_t *req);

#endif
