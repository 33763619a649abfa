/* sluice - SPDX-License-Identifier: MIT
 *
 * status/CODE: answers that final status (200-599) with a small JSON body,
 * or none where HTTP forbids one (204, 205, 304). 1xx codes are refused
 * with 400: they are not final responses (early-hints sends a real 103).
 */
#include "harness_int.h"
#include <stdio.h>

void sl_harness_status(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    uint64_t code;
    int rv = sl_str_parse_u64(cx->arg, 100, 599, &code);
    if (rv != 0) {
        sl_harness_bad_param(req, "CODE", rv, 200, 599);
        return;
    }
    if (code < 200) {
        sl_harness_bad_request(req, "CODE: 1xx is not a final status (use early-hints for 103)");
        return;
    }
    req->cbs = &sl_req_discard_cbs;
    if (code == 204 || code == 205 || code == 304) {
        req->res.status = (int)code;
        /* 205 may say it has no content; 204 and 304 must not send a length. */
        req->res.content_length = code == 205 ? 0 : -1;
        sl_resp_send(req, NULL, 0, 1);
        return;
    }
    char body[96];
    int n = snprintf(body, sizeof(body), "{\"status\":%d,\"reason\":\"%s\"}\n", (int)code,
                     sl_status_reason((int)code));
    sl_resp_simple(req, (int)code, "application/json", body, (size_t)n);
}
