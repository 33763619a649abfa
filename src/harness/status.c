/* sluice - SPDX-License-Identifier: MIT
 *
 * status/CODES: one final status (200-599), or a comma-separated list
 * with optional weights ("200,500:0.25,503:2", httpbin's form) of which
 * one is picked at random by weight. The answer is a small JSON body, or
 * none where HTTP forbids one (204, 205, 304). Like httpbin, a redirect
 * status carries Location (redirect/1), 401 a Basic challenge and 407 a
 * proxy one. 1xx codes are refused with 400: they are not final
 * responses (early-hints sends a real 103).
 */
#include "harness_int.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_CODES 32

/* "CODE[:WEIGHT]" into code and weight; 0 or SL_EINVAL. */
static int one(sl_str_t item, uint64_t *code, double *weight)
{
    const char *colon = memchr(item.p, ':', item.n);
    sl_str_t c = {item.p, colon ? (size_t)(colon - item.p) : item.n};
    *weight = 1;
    if (sl_str_parse_u64(c, 200, 599, code) != 0)
        return SL_EINVAL;
    if (!colon)
        return 0;
    char buf[24];
    size_t wn = item.n - c.n - 1;
    if (!wn || wn >= sizeof(buf))
        return SL_EINVAL;
    memcpy(buf, colon + 1, wn);
    buf[wn] = 0;
    char *end;
    *weight = strtod(buf, &end);
    return *end || !isfinite(*weight) || *weight < 0 ? SL_EINVAL : 0;
}

/* Pick one code of the list by weight; 0 with *code, or SL_EINVAL. */
static int pick(sl_str_t list, uint64_t *code)
{
    uint64_t codes[MAX_CODES];
    double weights[MAX_CODES], total = 0;
    size_t n = 0, i = 0;
    while (i <= list.n) {
        size_t s = i;
        while (i < list.n && list.p[i] != ',')
            i++;
        if (n == MAX_CODES || one((sl_str_t){list.p + s, i - s}, &codes[n], &weights[n]) != 0)
            return SL_EINVAL;
        total += weights[n++];
        i++;
    }
    if (n == 1) {
        *code = codes[0];
        return 0;
    }
    if (total <= 0)
        return SL_EINVAL;
    uint64_t r;
    sl_rand_fast(&r, sizeof(r));
    double x = (double)(r >> 11) / 9007199254740992.0 * total; /* [0, total) */
    for (i = 0; i + 1 < n && x >= weights[i]; i++)
        x -= weights[i];
    *code = codes[i];
    return 0;
}

static void extra_fields(sl_req_t *req, int code)
{
    if (code == 301 || code == 302 || code == 303 || code == 305 || code == 307) {
        sl_resp_header_add(req, "location",
                           sl_pool_printf(&req->pool, "%sredirect/1", sl_harness_prefix(req)));
    } else if (code == 401) {
        sl_resp_header_add(req, "www-authenticate", "Basic realm=\"Fake Realm\"");
    } else if (code == 407) {
        sl_resp_header_add(req, "proxy-authenticate", "Basic realm=\"Fake Realm\"");
    }
}

void sl_harness_status(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    uint64_t code;
    if (memchr(cx->arg.p, ',', cx->arg.n) || memchr(cx->arg.p, ':', cx->arg.n)) {
        if (pick(cx->arg, &code) != 0) {
            sl_harness_bad_request(req, "CODES: CODE[:WEIGHT],... with codes 200..599");
            return;
        }
    } else {
        int rv = sl_str_parse_u64(cx->arg, 100, 599, &code);
        if (rv != 0) {
            sl_harness_bad_param(req, "CODE", rv, 200, 599);
            return;
        }
        if (code < 200) {
            sl_harness_bad_request(req,
                                   "CODE: 1xx is not a final status (use early-hints for 103)");
            return;
        }
    }
    req->cbs = &sl_req_discard_cbs;
    extra_fields(req, (int)code);
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
