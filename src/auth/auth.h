/* sluice - SPDX-License-Identifier: MIT
 *
 * Route auth (docs/auth.md): before a route's handler runs, an auth
 * service (an upstream group) is asked whether the request may go on,
 * in the manner of nginx's auth_request and Envoy's ext_authz; its
 * answers are cached per worker and concurrent questions with the same
 * credentials share one request. Streams that stay open are asked about
 * again every reauth_s and ended when access is withdrawn.
 */
#ifndef SL_AUTH_H
#define SL_AUTH_H

#include "../sl.h"
#include "../req.h"
#include "../router.h"
#include <jansson.h>

typedef struct sl_auth sl_auth_t;

/* route.auth, or *out = NULL when the route has none. */
int sl_auth_parse(json_t *route, const char *path, sl_auth_t **out, char *err, size_t errlen);
void sl_auth_free(sl_auth_t *a);

/* Ask about req (its route's auth is a). When the answer is yes, req
 * gets the copied fields and next(req) runs, now or later; a no or a
 * failure is answered here. The request's body waits meanwhile. */
typedef void (*sl_auth_next_fn)(sl_req_t *req);
void sl_auth_begin(sl_auth_t *a, sl_req_t *req, sl_auth_next_fn next);

/* The router's gate for the "auth" key (main.c registers it). */
extern const sl_route_gate_t sl_auth_gate;

#endif
