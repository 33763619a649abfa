/* sluice - SPDX-License-Identifier: MIT
 *
 * The end of an exchange, one call from each protocol per request: its
 * access log line (access.c) and its request metrics (metrics.c).
 */
#ifndef SL_FINISH_H
#define SL_FINISH_H

#include "req.h"

void sl_req_finished(const sl_req_t *req);

#endif
