/* sluice - SPDX-License-Identifier: MIT
 *
 * The router: matches a request's host and path against the configured
 * routes (exact or prefix, first match in config order wins) and starts
 * the route's handler. Handlers register a definition (name, option
 * parser, request entry point) before the config is loaded; main.c does
 * the wiring. The router works on sl_req_t only.
 */
#ifndef SL_ROUTER_H
#define SL_ROUTER_H

#include "sl.h"
#include "req.h"
#include <jansson.h>

struct sl_config;

typedef struct sl_handler_def {
    const char *name; /* "health", "return", "harness", ... */
    /* Parse this handler's route options (the whole route object, path
     * names it for errors). Stores an opaque result in *state (freed with
     * free_state). Returns 0 or SL_EINVAL with a message in err. */
    int (*configure)(json_t *route, const char *path, void **state, char *err, size_t errlen);
    void (*free_state)(void *state);
    /* Answer the request. req->route->state is the parsed options. The
     * handler must eventually finish the response (sl_resp_send final or
     * sl_resp_reset). Request body, if any, arrives via req->cbs->on_body
     * once the handler has set req->cbs. */
    void (*on_req)(sl_req_t *req);
    /* Optional: the request's job owner under the route's rule, for
     * rate_limit {"key": "owner"} (0 and out, or non-zero when none). */
    int (*rate_key)(const sl_req_t *req, char *out, size_t cap);
} sl_handler_def_t;

typedef enum sl_route_match { SL_ROUTE_PREFIX = 0, SL_ROUTE_EXACT = 1 } sl_route_match_t;

/* A check that runs before a route's handler (route auth; main.c
 * registers it): parsed from its key in the route, begun with the request
 * and the rest of the dispatch (next), which it calls once the request
 * may go on, or never (it answered). */
typedef struct sl_route_gate {
    const char *key; /* "auth" */
    /* *state = NULL when the route does not use it. */
    int (*parse)(json_t *route, const char *path, void **state, char *err, size_t errlen);
    void (*free)(void *state);
    void (*begin)(void *state, sl_req_t *req, void (*next)(sl_req_t *req));
} sl_route_gate_t;

struct sl_route {
    char *host; /* NULL = any host; else exact (case-insensitive, no port) or "*.suffix" */
    char *path;
    size_t path_len;
    size_t dir_len; /* path up to and including its last '/' (0: none) */
    sl_route_match_t match;
    const sl_handler_def_t *handler;
    void *state; /* handler's parsed options */
    int index;
    int slot; /* its path's label, the same in every snapshot (sl_metrics_intern) */
    struct sl_ratelimit *rl; /* "rate_limit", or NULL */
    void *gate;              /* the gate's state, or NULL */
};

/* Register the "routes" config section after every other section (a route
 * may name their entries), before loading config. Idempotent. */
void sl_router_init(void);

/* Register a handler definition (before loading config). Not thread-safe. */
void sl_router_register(const sl_handler_def_t *def);
/* The one route gate (before loading config). */
void sl_router_set_gate(const sl_route_gate_t *gate);
const sl_handler_def_t *sl_router_find_handler(const char *name);
/* Every handler's configure calls this first: an unknown key in a route
 * is an error ("did you mean"), never a silently ignored typo. own: the
 * handler's keys; the keys every route has (path, host, match, handler,
 * comment) are added here. */
int sl_router_check_keys(json_t *route, const char *path, const char *const *own, size_t n,
                         char *err, size_t errlen);

/* Match req against cfg routes: sets req->route and calls the handler, or
 * answers 404 itself. */
void sl_router_dispatch(const struct sl_config *cfg, sl_req_t *req);
/* Pure lookup, for tests. NULL when nothing matches. */
const sl_route_t *sl_router_match(const struct sl_config *cfg, sl_str_t host, sl_str_t path);

/* cfg's routes in config order (*n of them). */
const sl_route_t *sl_router_routes(const struct sl_config *cfg, size_t *n);

#endif
