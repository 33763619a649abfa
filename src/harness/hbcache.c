/* sluice - SPDX-License-Identifier: MIT
 *
 * httpbin's caching and header fixtures: cache (304 to any conditional,
 * else /get's answer with Last-Modified and ETag), cache/N (Cache-Control:
 * public, max-age=N), etag/ETAG (If-None-Match -> 304, a failed If-Match
 * -> 412), range/N (N bytes of a-z, single ranges 206 / 416, ETag
 * "range<N>"), response-headers?name=value (those fields on the answer,
 * and in its JSON body).
 */
#include "harness_int.h"
#include "../http.h"
#include <stdio.h>

static void no_body(sl_req_t *req, int status)
{
    req->cbs = &sl_req_discard_cbs;
    req->res.status = status;
    req->res.content_length = -1;
    sl_resp_send(req, NULL, 0, 1);
}

void sl_harness_hb_cache(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    if (cx->arg.n) {
        uint64_t n;
        int rv = sl_str_parse_u64(cx->arg, 0, 31536000, &n);
        if (rv != 0) {
            sl_harness_bad_param(req, "N", rv, 0, 31536000);
            return;
        }
        sl_resp_header_add(
            req, "cache-control",
            sl_pool_printf(&req->pool, "public, max-age=%llu", (unsigned long long)n));
        sl_harness_json(req, 200, sl_harness_hb_get_doc(cx));
        return;
    }
    if (sl_req_header(req, "if-modified-since") || sl_req_header(req, "if-none-match")) {
        no_body(req, 304);
        return;
    }
    char date[30], etag[40];
    uint8_t r[8];
    sl_http_date_format((int64_t)(sl_wall_ms() / 1000), date);
    sl_rand_fast(r, sizeof(r));
    etag[0] = '"';
    sl_hex_encode(r, sizeof(r), etag + 1);
    strcat(etag, "\"");
    sl_resp_header_add(req, "last-modified", date);
    sl_resp_header_add(req, "etag", etag);
    sl_harness_json(req, 200, sl_harness_hb_get_doc(cx));
}

void sl_harness_hb_etag(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    if (!sl_harness_is_field_value(cx->arg) || memchr(cx->arg.p, '"', cx->arg.n)) {
        sl_harness_bad_request(req, "ETAG: printable, without '\"'");
        return;
    }
    char *etag = sl_pool_printf(&req->pool, "\"%.*s\"", (int)cx->arg.n, cx->arg.p);
    sl_resp_header_add(req, "etag", etag);
    const sl_header_t *inm = sl_req_header(req, "if-none-match");
    const sl_header_t *im = sl_req_header(req, "if-match");
    if (inm && sl_http_etag_match(inm->value, etag, 1)) {
        no_body(req, 304);
        return;
    }
    if (im && !sl_http_etag_match(im->value, etag, 0)) {
        req->cbs = &sl_req_discard_cbs;
        sl_resp_error(req, 412, "precondition failed");
        return;
    }
    sl_harness_json(req, 200, sl_harness_hb_get_doc(cx));
}

/* ---- range/N ---- */

static size_t fill_alpha(sl_harness_pump_t *p, uint8_t *buf, size_t cap, int *last)
{
    uint64_t left = p->total - p->offset;
    size_t n = left < cap ? (size_t)left : cap;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)('a' + (p->offset + i) % 26);
    p->offset += n;
    *last = p->offset == p->total;
    return n;
}

void sl_harness_hb_range(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    uint64_t n, first = 0, last = 0;
    int rv = sl_str_parse_u64(cx->arg, 1, (uint64_t)cx->opts->max_bytes, &n);
    if (rv != 0) {
        sl_harness_bad_param(req, "N", rv, 1, (uint64_t)cx->opts->max_bytes);
        return;
    }
    sl_resp_header_add(req, "etag",
                       sl_pool_printf(&req->pool, "\"range%llu\"", (unsigned long long)n));
    sl_resp_header_add(req, "accept-ranges", "bytes");
    const sl_header_t *rg = sl_req_header(req, "range");
    sl_http_range_t k = rg ? sl_http_range_parse(rg->value, n, &first, &last) : SL_HTTP_RANGE_NONE;
    if (k == SL_HTTP_RANGE_UNSAT) {
        sl_resp_header_add(req, "content-range",
                           sl_pool_printf(&req->pool, "bytes */%llu", (unsigned long long)n));
        req->cbs = &sl_req_discard_cbs;
        req->res.status = 416;
        req->res.content_length = 0;
        sl_resp_send(req, NULL, 0, 1);
        return;
    }
    if (k != SL_HTTP_RANGE_ONE) {
        first = 0;
        last = n - 1;
    } else {
        sl_resp_header_add(req, "content-range",
                           sl_pool_printf(&req->pool, "bytes %llu-%llu/%llu",
                                          (unsigned long long)first, (unsigned long long)last,
                                          (unsigned long long)n));
    }
    req->res.status = k == SL_HTTP_RANGE_ONE ? 206 : 200;
    req->res.content_length = (int64_t)(last - first + 1);
    sl_resp_header_add(req, "content-type", "application/octet-stream");
    sl_harness_pump_t *p = sl_harness_pump_new(req, 16384, fill_alpha);
    p->offset = first;
    p->total = last + 1;
    sl_harness_pump_start(p);
}

/* ---- response-headers ---- */

void sl_harness_hb_response_headers(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    json_t *doc = json_object();
    json_object_set_new(doc, "Content-Type", json_string("application/json"));
    for (size_t i = 0; i < cx->q.n; i++) {
        sl_str_t n = cx->q.v[i].name, v = cx->q.v[i].value;
        char *lower = sl_pool_printf(&req->pool, "%.*s", (int)n.n, n.p);
        for (char *c = lower; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        sl_str_t ln = {lower, n.n};
        if (!sl_str_is_token(n) || !sl_harness_is_field_value(v) ||
            sl_field_is_connection_specific(ln) || sl_str_eq(ln, "content-length") ||
            sl_str_eq(ln, "trailer") || sl_str_eq(ln, "http2-settings")) {
            json_decref(doc);
            sl_harness_bad_request(req, "response-headers: a field name must be a token, not "
                                        "framing or hop-by-hop");
            return;
        }
        sl_resp_header_addn(req, lower, n.n, v.p, v.n); /* content-type too: it wins */
        if (sl_str_eq(ln, "content-type") && json_object_get(doc, "Content-Type"))
            json_object_del(doc, "Content-Type");
        sl_harness_json_add_multi(doc, &req->pool, n, v);
    }
    sl_harness_json(req, 200, doc);
}
