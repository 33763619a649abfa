/* sluice - SPDX-License-Identifier: MIT
 *
 * Answers shared by the harness endpoints: the 400 for a bad parameter
 * (JSON body + INFO "client sent ..." line) and the callbacks that drop a
 * request body nobody reads, giving its credit back at once so the client
 * is never stalled by flow control.
 */
#include "harness_int.h"
#include "../log.h"

void sl_harness_bad_request(sl_req_t *req, const char *msg)
{
    sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id, "client sent a bad harness request: %s",
                  msg);
    req->cbs = &sl_req_discard_cbs;
    sl_resp_error(req, 400, msg);
}

void sl_harness_bad_param(sl_req_t *req, const char *name, int rv, uint64_t min, uint64_t max)
{
    const char *msg;
    if (rv == SL_EINVAL)
        msg = sl_pool_printf(&req->pool, "%s: not a decimal number", name);
    else
        msg = sl_pool_printf(&req->pool, "%s: out of range %llu..%llu", name,
                             (unsigned long long)min, (unsigned long long)max);
    sl_harness_bad_request(req, msg);
}
