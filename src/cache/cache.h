/* sluice - SPDX-License-Identifier: MIT
 *
 * The HTTP cache (RFC 9111, RFC 5861, RFC 9211) in front of proxied
 * upstreams: zones defined under the top-level "caches" key, used by
 * proxy routes with "cache": {"zone": ...}. The proxy hands a request
 * here first; the cache answers it from a stored response, makes it wait
 * for a fill under way, or fills: one upstream request (run by the proxy
 * engine) whose response is stored as it streams to every request that
 * waits for it. Reference: docs/cache.md.
 */
#ifndef SL_CACHE_H
#define SL_CACHE_H

#include "../config.h"
#include "../req.h"
#include "../router.h"
#include <jansson.h>

extern const sl_config_section_def_t sl_cache_section; /* "caches" */
extern const sl_handler_def_t sl_cache_purge_handler;  /* "cache_purge" */

/* How the cache reaches the upstream of a route: start(req, arg)
 * forwards req as the proxy handler would (it then owns req's
 * callbacks). raw_path: the route forwards the path as received, so the
 * key uses it too. */
typedef struct sl_cache_upstream {
    void (*start)(sl_req_t *req, void *arg);
    void *arg;
    int raw_path;
} sl_cache_upstream_t;

typedef struct sl_cache_route sl_cache_route_t;

/* A route's "cache" object into *out (NULL when the route has none). up
 * must live as long as the route. */
int sl_cache_route_parse(json_t *route, const char *path, const sl_cache_upstream_t *up,
                         sl_cache_route_t **out, char *err, size_t errlen);
void sl_cache_route_free(sl_cache_route_t *cr);

/* Take req: 1 when the cache answers it (it set req's callbacks), 0 when
 * the caller forwards it as usual (not a cacheable request). */
int sl_cache_handle(sl_req_t *req, const sl_cache_route_t *cr);

/* The worker's loop is over: cancel its fills (worker exit hook). */
void sl_cache_worker_exit(void);

#endif
