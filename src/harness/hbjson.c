/* sluice - SPDX-License-Identifier: MIT
 *
 * The JSON shapes of httpbin (and go-httpbin) that client suites are
 * written against: "args" (the query, repeated names as arrays),
 * "headers" (Title-Case names, repeated fields joined with ","),
 * "origin" (the client address) and "url" (as the client asked), and the
 * one way every harness endpoint answers JSON: dumped with two-space
 * indent into the request pool and sent with its length.
 */
#include "harness_int.h"
#include "../router.h"
#include <ctype.h>

void sl_harness_json(sl_req_t *req, int status, json_t *doc)
{
    req->cbs = req->cbs ? req->cbs : &sl_req_discard_cbs;
    if (!doc) {
        sl_resp_error(req, 500, "could not build the answer");
        return;
    }
    size_t n = json_dumpb(doc, NULL, 0, JSON_INDENT(2));
    char *body = sl_pool_alloc(&req->pool, n + 1);
    json_dumpb(doc, body, n, JSON_INDENT(2));
    body[n++] = '\n';
    json_decref(doc);
    req->res.status = status;
    req->res.content_length = (int64_t)n;
    if (!sl_headers_find(&req->res.headers, "content-type")) /* response-headers may set one */
        sl_resp_header_add(req, "content-type", "application/json");
    sl_resp_send(req, body, n, 1);
}

json_t *sl_harness_jstr(sl_pool_t *pool, const char *p, size_t n)
{
    json_t *j = json_stringn(p, n);
    if (j)
        return j;
    /* Not UTF-8 (a header may carry obs-text): shown as Latin-1, each byte
     * one code point, the way Python's latin-1 codec reads it. */
    char *u = sl_pool_alloc(pool, 2 * n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x80) {
            u[o++] = (char)c;
        } else {
            u[o++] = (char)(0xc0 | c >> 6);
            u[o++] = (char)(0x80 | (c & 0x3f));
        }
    }
    return json_stringn(u, o);
}

void sl_harness_json_add_multi(json_t *obj, sl_pool_t *pool, sl_str_t name, sl_str_t value)
{
    json_t *key = sl_harness_jstr(pool, name.p, name.n);
    const char *k = json_string_value(key);
    json_t *v = sl_harness_jstr(pool, value.p, value.n);
    json_t *old = json_object_get(obj, k);
    if (!old) {
        json_object_set_new(obj, k, v);
    } else if (json_is_array(old)) {
        json_array_append_new(old, v);
    } else {
        json_t *arr = json_array();
        json_array_append(arr, old);
        json_array_append_new(arr, v);
        json_object_set_new(obj, k, arr);
    }
    json_decref(key);
}

json_t *sl_harness_hb_args(const sl_harness_ctx_t *cx)
{
    json_t *o = json_object();
    for (size_t i = 0; i < cx->q.n; i++)
        sl_harness_json_add_multi(o, &cx->req->pool, cx->q.v[i].name, cx->q.v[i].value);
    return o;
}

/* "content-type" -> "Content-Type" into the pool. */
static sl_str_t title_case(sl_pool_t *pool, sl_str_t n)
{
    char *t = sl_pool_alloc(pool, n.n + 1);
    int up = 1;
    for (size_t i = 0; i < n.n; i++) {
        t[i] = up ? (char)toupper((unsigned char)n.p[i]) : n.p[i];
        up = n.p[i] == '-';
    }
    t[n.n] = 0;
    return (sl_str_t){t, n.n};
}

json_t *sl_harness_hb_headers(sl_req_t *req)
{
    sl_pool_t *pool = &req->pool;
    json_t *o = json_object();
    int has_host = 0;
    for (size_t i = 0; i < req->headers.n; i++) {
        const sl_header_t *h = &req->headers.v[i];
        if (h->name.n && h->name.p[0] == ':')
            continue;
        has_host |= sl_str_eq(h->name, "host");
        sl_str_t t = title_case(pool, h->name);
        json_t *old = json_object_get(o, t.p);
        if (!old) {
            json_object_set_new(o, t.p, sl_harness_jstr(pool, h->value.p, h->value.n));
            continue;
        }
        /* Repeated fields are one list field (RFC 9110 5.3), joined with ",". */
        const char *prev = json_string_value(old);
        char *joined = sl_pool_printf(pool, "%s,%.*s", prev, (int)h->value.n, h->value.p);
        json_object_set_new(o, t.p, sl_harness_jstr(pool, joined, strlen(joined)));
    }
    if (!has_host && req->authority.n) /* HTTP/2: :authority stands for Host */
        json_object_set_new(o, "Host", sl_harness_jstr(pool, req->authority.p, req->authority.n));
    return o;
}

json_t *sl_harness_hb_origin(const sl_req_t *req)
{
    sl_str_t ip = sl_peer_ip(req->peer);
    return json_stringn(ip.p, ip.n);
}

json_t *sl_harness_hb_url(sl_req_t *req)
{
    sl_str_t s = sl_req_conn_scheme(req);
    char *u = sl_pool_printf(&req->pool, "%.*s://%.*s%.*s", (int)s.n, s.p, (int)req->authority.n,
                             req->authority.p, (int)req->target.n, req->target.p);
    return sl_harness_jstr(&req->pool, u, strlen(u));
}

json_t *sl_harness_hb_get_doc(sl_harness_ctx_t *cx)
{
    return json_pack("{s:o, s:o, s:o, s:o}", "args", sl_harness_hb_args(cx), "headers",
                     sl_harness_hb_headers(cx->req), "origin", sl_harness_hb_origin(cx->req), "url",
                     sl_harness_hb_url(cx->req));
}

int sl_harness_method_is(sl_harness_ctx_t *cx, const char *method, const char *allow)
{
    sl_req_t *req = cx->req;
    if (sl_str_eq(req->method, method) || (strcmp(method, "GET") == 0 && req->is_head))
        return 1;
    sl_resp_header_add(req, "allow", allow);
    req->cbs = &sl_req_discard_cbs;
    sl_resp_error(req, 405, "method not allowed on this endpoint");
    return 0;
}

const char *sl_harness_prefix(sl_req_t *req)
{
    const sl_route_t *r = req->route;
    int slash = r->path_len && r->path[r->path_len - 1] == '/';
    return sl_pool_printf(&req->pool, "%.*s%s", (int)r->path_len, r->path, slash ? "" : "/");
}
