/* sluice - SPDX-License-Identifier: MIT
 *
 * Answers shared by the harness endpoints: the 400 for a bad parameter
 * (JSON body + INFO "client sent ..." line) and the callbacks that drop a
 * request body nobody reads, giving its credit back at once so the client
 * is never stalled by flow control.
 */
#include "harness_int.h"
#include "../log.h"

static void discard_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    SL_UNUSED(data);
    SL_UNUSED(fin);
    if (len)
        sl_req_consume(req, len);
}

const sl_handler_cbs_t sl_harness_discard_cbs = {.on_body = discard_body};

void sl_harness_bad_request(sl_req_t *req, const char *msg)
{
    sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id, "client sent a bad harness request: %s",
                  msg);
    req->cbs = &sl_harness_discard_cbs;
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
