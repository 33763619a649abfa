/* sluice - SPDX-License-Identifier: MIT
 *
 * early-hints: a 103 informational response carrying a preload link, then
 * the final 200 (which repeats the link, as RFC 8297 suggests).
 */
#include "harness_int.h"

static const char link_value[] = "</style.css>; rel=preload; as=style";
static const char body[] = "early hints sent\n";

void sl_harness_early_hints(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    sl_headers_t hints = {0};
    sl_headers_add(&req->pool, &hints, "link", 4, link_value, sizeof(link_value) - 1);
    req->cbs = &sl_req_discard_cbs;
    /* HTTP/1.0 gets no 1xx (the protocol skips it); the 200 goes either way. */
    (void)sl_resp_informational(req, 103, &hints);
    sl_resp_header_add(req, "link", link_value);
    sl_resp_simple(req, 200, "text/plain; charset=utf-8", body, sizeof(body) - 1);
}
