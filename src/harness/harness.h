/* sluice - SPDX-License-Identifier: MIT
 *
 * The harness handler: bounded built-in test endpoints (anything, echo,
 * bytes, stream, delay, status, trailers, reset, sse, sink, early-hints)
 * under one route prefix ("/_h/" in the dev config), so that HTTP/2 and
 * HTTP/1.1 client test suites can use sluice as their target. main.c
 * registers it with sl_router_register. Endpoint reference, parameters,
 * bounds and route options: docs/harness.md.
 */
#ifndef SL_HARNESS_H
#define SL_HARNESS_H

#include "../router.h"

extern const sl_handler_def_t sl_harness_handler;

#endif
