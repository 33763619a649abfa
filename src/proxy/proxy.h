/* sluice - SPDX-License-Identifier: MIT
 *
 * The reverse proxy: the "upstreams" config section (named groups of
 * HTTP/1.1 servers with balancing, pools, timeouts and passive health) and
 * the "proxy" route handler that forwards a request arriving over HTTP/1.1
 * or HTTP/2 to one of them, streaming both ways with backpressure. main.c
 * registers both. Reference: docs/proxy.md.
 */
#ifndef SL_PROXY_H
#define SL_PROXY_H

#include "../config.h"
#include "../router.h"

extern const sl_handler_def_t sl_proxy_handler;
extern const sl_config_section_def_t sl_proxy_upstreams_section;

#endif
