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
    /* The clock is read only when someone records the duration. */
    int log = sl_access_log_wanted(req);
    uint64_t ns = log || sl_metrics_current() ? sl_now_ns() - req->start_ns : 0;
    sl_metrics_request((int)req->proto - 1, route, req->res.status, req->bytes_in, req->bytes_out,
                       ns);
    if (log)
        sl_access_log(req, ns);
}
