/* sluice - SPDX-License-Identifier: MIT
 *
 * The protocol-neutral parts of the request model: header lists in the
 * request pool, the sl_resp_* wrappers that dispatch to the protocol's
 * sl_req_ops_t, and a few response helpers handlers share.
 */
#include "req.h"
#include "conn.h"
#include <openssl/crypto.h>
#include <stdio.h>
#include <strings.h>

int sl_field_is_connection_specific(sl_str_t n)
{
    switch (n.n) {
    case 2: return sl_str_caseeq(n, "te");
    case 7: return sl_str_caseeq(n, "upgrade");
    case 10: return sl_str_caseeq(n, "connection") || sl_str_caseeq(n, "keep-alive");
    case 16: return sl_str_caseeq(n, "proxy-connection");
    case 17: return sl_str_caseeq(n, "transfer-encoding");
    default: return 0;
    }
}

void sl_req_discard_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    SL_UNUSED(data);
    SL_UNUSED(fin);
    if (len)
        sl_req_consume(req, len);
}

const sl_handler_cbs_t sl_req_discard_cbs = {.on_body = sl_req_discard_body};

void sl_req_note(sl_req_t *req, sl_str_t *field, const char *s, size_t n)
{
    field->p = sl_pool_strndup(&req->pool, s, n);
    field->n = n;
}

void sl_req_set_client_cert(sl_req_t *req, const char *client_cert)
{
    if (!client_cert)
        return;
    req->tls.client_fp = client_cert;
    req->tls.client_subject = client_cert + strlen(client_cert) + 1;
}

void sl_req_init(sl_req_t *req, sl_proto_kind_t proto, sl_conn_t *conn)
{
    /* The pool comes first and sets its own fields: clearing its 1 KiB
     * inline block on every request would be wasted work. */
    _Static_assert(offsetof(sl_req_t, pool) == 0, "pool must be the first member");
    memset((char *)req + sizeof(req->pool), 0, sizeof(*req) - sizeof(req->pool));
    sl_pool_init(&req->pool);
    req->proto = proto;
    req->conn = conn;
    req->content_length = -1;
    req->res.content_length = -1;
    req->res.status = 200;
    req->start_ns = sl_clock_ns();
}

const struct sl_config *sl_req_config(const sl_req_t *req)
{
    return req->conn ? sl_conn_config(req->conn) : req->cfg;
}

void sl_req_dispose(sl_req_t *req)
{
    sl_pool_dispose(&req->pool);
}

/* The next free slot of h, grown (doubling, in the pool) when full. */
static sl_header_t *headers_slot(sl_pool_t *pool, sl_headers_t *h)
{
    if (h->n == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 16;
        sl_header_t *nv = sl_pool_alloc(pool, ncap * sizeof(*nv));
        if (h->n)
            memcpy(nv, h->v, h->n * sizeof(*nv));
        h->v = nv;
        h->cap = ncap;
    }
    return &h->v[h->n++];
}

void sl_headers_add_ref(sl_pool_t *pool, sl_headers_t *h, sl_str_t name, sl_str_t value)
{
    sl_header_t *e = headers_slot(pool, h);
    e->name = name;
    e->value = value;
}

void sl_headers_add(sl_pool_t *pool, sl_headers_t *h, const char *name, size_t nlen,
                    const char *value, size_t vlen)
{
    sl_header_t *e = headers_slot(pool, h);
    e->name.p = sl_pool_strndup(pool, name, nlen);
    e->name.n = nlen;
    e->value.p = sl_pool_strndup(pool, value, vlen);
    e->value.n = vlen;
}

const sl_header_t *sl_headers_find(const sl_headers_t *h, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->n; i++)
        if (h->v[i].name.n == n && memcmp(h->v[i].name.p, name, n) == 0)
            return &h->v[i];
    return NULL;
}

const sl_header_t *sl_req_header(const sl_req_t *req, const char *name)
{
    return sl_headers_find(&req->headers, name);
}

void sl_resp_header_addn(sl_req_t *req, const char *name, size_t nlen, const char *value,
                         size_t vlen)
{
    sl_headers_add(&req->pool, &req->res.headers, name, nlen, value, vlen);
}

void sl_resp_header_add_ref(sl_req_t *req, const char *name, size_t nlen, const char *value,
                            size_t vlen)
{
    sl_header_t *e = headers_slot(&req->pool, &req->res.headers);
    e->name = (sl_str_t){name, nlen};
    e->value = (sl_str_t){value, vlen};
}

void sl_resp_header_add_plain(sl_req_t *req, const char *name, size_t nlen, const char *value,
                              size_t vlen)
{
    size_t i = req->res.headers.n;
    sl_resp_header_add_ref(req, name, nlen, value, vlen);
    if (i < 32)
        req->res.plain |= (uint32_t)1 << i;
}

void sl_resp_header_add(sl_req_t *req, const char *name, const char *value)
{
    sl_resp_header_addn(req, name, strlen(name), value, strlen(value));
}

void sl_resp_trailer_add(sl_req_t *req, const char *name, const char *value)
{
    sl_headers_add(&req->pool, &req->res.trailers, name, strlen(name), value, strlen(value));
}

int sl_resp_send(sl_req_t *req, const void *data, size_t len, int final)
{
    if (req->final_sent)
        return SL_ECLOSED;
    if (final)
        req->final_sent = 1;
    return req->ops->send(req, data, len, final);
}

int sl_resp_informational(sl_req_t *req, int status, const sl_headers_t *hdrs)
{
    if (req->head_sent || status < 100 || status > 199)
        return SL_EINVAL;
    return req->ops->informational(req, status, hdrs);
}

void sl_resp_reset(sl_req_t *req, uint32_t h2_error_code)
{
    req->ops->reset(req, h2_error_code);
}

void sl_req_consume(sl_req_t *req, size_t n)
{
    if (n)
        req->ops->consume(req, n);
}

int sl_resp_simple(sl_req_t *req, int status, const char *content_type, const void *body,
                   size_t len)
{
    void *copy = NULL;
    if (len) {
        copy = sl_pool_alloc(&req->pool, len);
        memcpy(copy, body, len);
    }
    req->res.status = status;
    if (content_type)
        sl_resp_header_add(req, "content-type", content_type);
    req->res.content_length = (int64_t)len;
    return sl_resp_send(req, copy, len, 1);
}

/* msg as a JSON string body: quotes, backslashes and controls escaped. */
static char *json_quote(sl_pool_t *pool, const char *msg)
{
    size_t n = strlen(msg);
    char *out = sl_pool_alloc(pool, n * 6 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p == '"' || *p == '\\') {
            *o++ = '\\';
            *o++ = (char)*p;
        } else if (*p < 0x20) {
            o += sprintf(o, "\\u%04x", *p);
        } else {
            *o++ = (char)*p;
        }
    }
    *o = '\0';
    return out;
}

int sl_resp_error(sl_req_t *req, int status, const char *msg)
{
    char *body = sl_pool_printf(&req->pool, "{\"error\":\"%s\",\"status\":%d}\n",
                                json_quote(&req->pool, msg), status);
    return sl_resp_simple(req, status, "application/json", body, strlen(body));
}

const char *sl_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    default: return ""; /* RFC 9112 allows an empty reason-phrase */
    }
}

int sl_req_cookie(const sl_req_t *req, const char *name, sl_str_t *out)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < req->headers.n; i++) {
        const sl_header_t *h = &req->headers.v[i];
        if (!sl_str_eq(h->name, "cookie"))
            continue;
        const char *p = h->value.p, *end = p + h->value.n;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *e = memchr(p, ';', (size_t)(end - p));
            if (!e)
                e = end;
            if ((size_t)(e - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
                *out = (sl_str_t){p + nl + 1, (size_t)(e - p) - nl - 1};
                return 0;
            }
            p = e;
        }
    }
    return SL_EINVAL;
}

int sl_req_bearer_is(const sl_req_t *req, const char *token)
{
    const sl_header_t *h = sl_req_header(req, "authorization");
    if (!token || !h || h->value.n < 7 || strncasecmp(h->value.p, "bearer ", 7) != 0)
        return 0;
    size_t n = strlen(token);
    sl_str_t t = {h->value.p + 7, h->value.n - 7};
    /* Constant time in the token's content; its length is no secret. */
    return t.n == n && CRYPTO_memcmp(t.p, token, n) == 0;
}

sl_str_t sl_peer_ip(const char *peer)
{
    if (!peer)
        return (sl_str_t){"", 0};
    if (peer[0] == '[') {
        const char *rb = strchr(peer, ']');
        return (sl_str_t){peer + 1, rb ? (size_t)(rb - peer - 1) : strlen(peer + 1)};
    }
    const char *colon = strrchr(peer, ':');
    return (sl_str_t){peer, colon ? (size_t)(colon - peer) : strlen(peer)};
}

const char *sl_req_proto_name(const sl_req_t *req)
{
    switch (req->proto) {
    case SL_PROTO_H2: return "HTTP/2";
    case SL_PROTO_H3: return "HTTP/3";
    default: return req->version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
    }
}

size_t sl_req_body_chunks(const sl_req_t *req)
{
    size_t w = req->body_window ? req->body_window : 65536;
    return SL_MAX(w, (size_t)SL_BUF_CHUNK_SIZE) / SL_BUF_CHUNK_SIZE + 2;
}
