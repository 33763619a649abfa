/* sluice - SPDX-License-Identifier: MIT
 *
 * The static handler: serves files below a route's document root over
 * HTTP/1.1 and HTTP/2 (GET and HEAD), with safe path mapping, validators,
 * conditional and range requests, pre-compressed variants and a per-worker
 * open-file cache. main.c registers it with sl_router_register. Route
 * options and behaviour: docs/static.md.
 */
#ifndef SL_STATIC_H
#define SL_STATIC_H

#include "../router.h"

extern const sl_handler_def_t sl_static_handler;

#endif
