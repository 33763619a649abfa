/* sluice - SPDX-License-Identifier: MIT
 *
 * reset?after=BYTES&code=NAME: sends BYTES bytes of the deterministic
 * stream (no content-length), then aborts the response with the named
 * HTTP/2 error code (RST_STREAM on HTTP/2, a connection abort on
 * HTTP/1.1). Lets clients test how they surface a reset mid-body.
 */
#include "harness_int.h"

#define PIECE 16384

static size_t fill_after(sl_harness_pump_t *p, uint8_t *buf, size_t cap, int *last)
{
    uint64_t left = p->total - p->offset;
    size_t n = left < cap ? (size_t)left : cap;
    sl_harness_gen_fill(0, p->offset, buf, n);
    p->offset += n;
    *last = p->offset == p->total;
    return n;
}

void sl_harness_reset(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    uint64_t max = (uint64_t)cx->opts->max_bytes, after;
    int rv = sl_query_find_u64(&cx->q, "after", 0, 0, max, &after);
    if (rv != 0) {
        sl_harness_bad_param(req, "after", rv, 0, max);
        return;
    }
    int code = 8; /* CANCEL */
    const sl_str_t *name = sl_query_find(&cx->q, "code");
    if (name && (code = sl_harness_h2_error_code(*name)) < 0) {
        sl_harness_bad_request(req, "code: not an HTTP/2 error code name (e.g. CANCEL)");
        return;
    }
    req->res.status = 200;
    req->res.content_length = -1;
    sl_resp_header_add(req, "content-type", "application/octet-stream");
    sl_harness_pump_t *p =
        sl_harness_pump_new(req, (size_t)SL_MAX(SL_MIN(after, PIECE), 1), fill_after);
    p->total = after;
    p->reset_code = code;
    sl_harness_pump_start(p);
}
