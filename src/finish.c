/* sluice - SPDX-License-Identifier: MIT
 *
 * See finish.h.
 */
#include "finish.h"
#include "access.h"
#include "metrics.h"
#include "router.h"

void sl_req_finished(const sl_req_t *req)
{
    size_t route = req->route ? (size_t)req->route->slot : SL_M_ROUTE_NONE;
    sl_metrics_request(req->proto == SL_PROTO_H2, route, req->res.status, req->bytes_in,
                       req->bytes_out, sl_now_ns() - req->start_ns);
    sl_access_log(req);
}
