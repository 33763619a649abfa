/* sluice - SPDX-License-Identifier: MIT
 *
 * trailers?name=value&...: 200 "trailers follow\n" with the query's pairs
 * sent back as response trailers (HTTP/2 trailing HEADERS, HTTP/1.1
 * chunked trailer section). Names must be tokens and are lower-cased;
 * values must be clean field values; framing and routing fields are
 * refused; at most max_trailers of them.
 */
#include "harness_int.h"
#include <stdio.h>

static const char body[] = "trailers follow\n";

/* Lower-case in place: the decoded query lives in this request's pool. */
static void lower(sl_str_t s)
{
    char *d = (char *)(uintptr_t)s.p;
    for (size_t i = 0; i < s.n; i++)
        if (d[i] >= 'A' && d[i] <= 'Z')
            d[i] = (char)(d[i] - 'A' + 'a');
}

static int check_pairs(sl_harness_ctx_t *cx)
{
    if (cx->q.n > (size_t)cx->opts->max_trailers) {
        sl_harness_bad_request(cx->req, sl_pool_printf(&cx->req->pool,
                                                       "more than max_trailers (%lld) trailers",
                                                       (long long)cx->opts->max_trailers));
        return SL_ETOOBIG;
    }
    for (size_t i = 0; i < cx->q.n; i++) {
        const sl_query_param_t *pr = &cx->q.v[i];
        if (!sl_str_is_token(pr->name)) {
            sl_harness_bad_request(cx->req, "trailer name: not a token");
            return SL_EINVAL;
        }
        lower(pr->name);
        if (sl_harness_is_forbidden_trailer(pr->name)) {
            sl_harness_bad_request(cx->req, "trailer name: not allowed in trailers");
            return SL_EINVAL;
        }
        if (!sl_harness_is_field_value(pr->value)) {
            sl_harness_bad_request(cx->req, "trailer value: control characters or edge spaces");
            return SL_EINVAL;
        }
    }
    return 0;
}

/* The query's pairs as trailers, announced in Trailer; the head is set
 * for a body without a length. SL_EINVAL after a 400. */
static int take(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    if (check_pairs(cx) != 0)
        return SL_EINVAL;
    /* "trailer: a, b" announces them; built from the validated names. */
    char *announce = sl_pool_alloc(&req->pool, req->query.n + 2 * cx->q.n + 1);
    size_t alen = 0;
    for (size_t i = 0; i < cx->q.n; i++) {
        const char *name = cx->q.v[i].name.p;
        sl_resp_trailer_add(req, name, cx->q.v[i].value.p);
        alen += (size_t)sprintf(announce + alen, "%s%s", i ? ", " : "", name);
    }
    req->cbs = &sl_req_discard_cbs;
    req->res.status = 200;
    /* No length: HTTP/1.1 can carry trailers only in a chunked body. */
    req->res.content_length = -1;
    sl_resp_header_add(req, "content-type", "text/plain; charset=utf-8");
    if (alen)
        sl_resp_header_add(req, "trailer", announce);
    return 0;
}

void sl_harness_trailers(sl_harness_ctx_t *cx)
{
    if (take(cx) == 0)
        sl_resp_send(cx->req, body, sizeof(body) - 1, 1);
}

/* fault/trailers-only: the head, then the trailers, no body byte (over
 * HTTP/2 no DATA payload: gRPC's trailers-only shape). */
void sl_harness_trailers_only(sl_harness_ctx_t *cx)
{
    if (take(cx) == 0)
        sl_resp_send(cx->req, NULL, 0, 1);
}
