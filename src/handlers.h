/* sluice - SPDX-License-Identifier: MIT
 *
 * Small built-in handlers that live in core: "health" (liveness and
 * readiness probes, 503 while draining) and "return" (a fixed response
 * from the route's options). main.c registers them with
 * sl_router_register; the harness handler has its own header
 * (harness/harness.h).
 */
#ifndef SL_HANDLERS_H
#define SL_HANDLERS_H

#include "router.h"

extern const sl_handler_def_t sl_health_handler, sl_return_handler, sl_metrics_handler;

#endif
