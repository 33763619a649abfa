/* sluice - SPDX-License-Identifier: MIT
 *
 * httpbin's request echoes: get, post, put, patch, delete, headers, ip,
 * user-agent, uuid. The body-carrying ones read the request body whole
 * (at most the route's max_body_bytes, else 413) and answer
 *   {"args", "data", "files", "form", "headers", "json", "origin", "url"}
 * with data the body as text (a data: URL in base64 when it is not
 * UTF-8), form the fields of an application/x-www-form-urlencoded body
 * (data is then ""), json the body parsed when it is JSON, else null.
 * multipart/form-data is not taken apart: it stays in data.
 */
#include "harness_int.h"
#include "../log.h"
#include <openssl/rand.h>
#include <stdio.h>
#include <strings.h>

typedef struct body {
    sl_harness_ctx_t cx; /* copied: the query lives in the pool */
    uint8_t *p;
    size_t n, cap;
    unsigned done : 1;
} body_t;

static json_t *data_field(sl_req_t *req, const uint8_t *p, size_t n)
{
    json_t *j = json_stringn((const char *)p, n);
    if (j)
        return j;
    char *b64 = sl_base64_encode(p, n);
    char *u = sl_pool_printf(&req->pool, "data:application/octet-stream;base64,%s", b64);
    sl_free(b64);
    return json_string(u);
}

static json_t *form_field(body_t *b, int *is_form)
{
    sl_req_t *req = b->cx.req;
    json_t *form = json_object();
    const sl_header_t *ct = sl_req_header(req, "content-type");
    *is_form = ct && ct->value.n >= 33 &&
               strncasecmp(ct->value.p, "application/x-www-form-urlencoded", 33) == 0;
    if (!*is_form || !b->n)
        return form;
    size_t max = (size_t)b->cx.opts->max_query_params;
    sl_query_param_t *v = sl_pool_alloc(&req->pool, max * sizeof(*v));
    char *scratch = sl_pool_alloc(&req->pool, b->n + 1);
    size_t n = 0;
    const char *why;
    if (sl_query_parse((sl_str_t){(const char *)b->p, b->n}, v, max, scratch, b->n + 1, &n, &why) !=
        0) {
        *is_form = 0; /* not a form after all: the body stays in data */
        return form;
    }
    for (size_t i = 0; i < n; i++)
        sl_harness_json_add_multi(form, &req->pool, v[i].name, v[i].value);
    return form;
}

static void answer(body_t *b)
{
    sl_req_t *req = b->cx.req;
    int is_form;
    json_t *form = form_field(b, &is_form);
    json_t *js = b->n ? json_loadb((const char *)b->p, b->n, JSON_DECODE_ANY, NULL) : NULL;
    json_t *doc =
        json_pack("{s:o, s:o, s:{}, s:o, s:o, s:o, s:o, s:o}", "args", sl_harness_hb_args(&b->cx),
                  "data", is_form ? json_string("") : data_field(req, b->p, b->n), "files", "form",
                  form, "headers", sl_harness_hb_headers(req), "json", js ? js : json_null(),
                  "origin", sl_harness_hb_origin(req), "url", sl_harness_hb_url(req));
    sl_harness_json(req, 200, doc);
}

static void on_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    body_t *b = req->hdata;
    if (len)
        sl_req_consume(req, len); /* copied below, within max_body_bytes */
    if (b->done)
        return;
    if (b->n + len > (size_t)b->cx.opts->max_body_bytes) {
        b->done = 1;
        sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id,
                      "client sent a harness body past max_body_bytes %lld",
                      (long long)b->cx.opts->max_body_bytes);
        sl_resp_error(req, 413, "request body larger than max_body_bytes");
        return;
    }
    if (b->n + len > b->cap) {
        b->cap = SL_MAX(b->cap * 2, b->n + len);
        b->p = sl_realloc(b->p, b->cap);
    }
    if (len)
        memcpy(b->p + b->n, data, len);
    b->n += len;
    if (fin) {
        b->done = 1;
        answer(b);
    }
}

static void on_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    body_t *b = req->hdata;
    sl_free(b->p);
}

static const sl_handler_cbs_t body_cbs = {.on_body = on_body, .on_close = on_close};

void sl_harness_hb_body(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    char method[8];
    snprintf(method, sizeof(method), "%.*s", (int)cx->name.n, cx->name.p);
    for (char *c = method; *c; c++)
        *c = (char)(*c - 'a' + 'A'); /* the endpoint names its method */
    if (!sl_harness_method_is(cx, method, method))
        return;
    body_t *b = sl_pool_alloc(&req->pool, sizeof(*b));
    memset(b, 0, sizeof(*b));
    b->cx = *cx;
    req->hdata = b;
    req->cbs = &body_cbs;
    if (req->body_done) {
        b->done = 1;
        answer(b);
    }
}

void sl_harness_hb_get(sl_harness_ctx_t *cx)
{
    if (sl_harness_method_is(cx, "GET", "GET, HEAD"))
        sl_harness_json(cx->req, 200, sl_harness_hb_get_doc(cx));
}

void sl_harness_hb_headers_ep(sl_harness_ctx_t *cx)
{
    sl_harness_json(cx->req, 200, json_pack("{s:o}", "headers", sl_harness_hb_headers(cx->req)));
}

void sl_harness_hb_ip(sl_harness_ctx_t *cx)
{
    sl_harness_json(cx->req, 200, json_pack("{s:o}", "origin", sl_harness_hb_origin(cx->req)));
}

void sl_harness_hb_user_agent(sl_harness_ctx_t *cx)
{
    const sl_header_t *ua = sl_req_header(cx->req, "user-agent");
    json_t *v = ua ? sl_harness_jstr(&cx->req->pool, ua->value.p, ua->value.n) : json_null();
    sl_harness_json(cx->req, 200, json_pack("{s:o}", "user-agent", v));
}

void sl_harness_hb_uuid(sl_harness_ctx_t *cx)
{
    uint8_t u[16];
    if (RAND_bytes(u, sizeof(u)) != 1)
        sl_rand_fast(u, sizeof(u));
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* version 4 (RFC 9562) */
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80); /* variant 10 */
    char s[37];
    snprintf(s, sizeof(s), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
             u[14], u[15]);
    sl_harness_json(cx->req, 200, json_pack("{s:s}", "uuid", s));
}
