/* sluice - SPDX-License-Identifier: MIT
 *
 * Field blocks shared by HTTP/2 and HTTP/3 (fields.h).
 */
#include "fields.h"
#include "config.h"
#include "conn.h"
#include "http.h"
#include "log.h"

static void join_cookies(sl_req_t *req)
{
    sl_headers_t *h = &req->headers;
    size_t total = 0, first = SIZE_MAX, w = 0, o = 0;
    for (size_t i = 0; i < h->n; i++)
        if (sl_str_eq(h->v[i].name, "cookie"))
            total += h->v[i].value.n + 2;
    char *buf = sl_pool_alloc(&req->pool, total + 1);
    for (size_t i = 0; i < h->n; i++) {
        if (!sl_str_eq(h->v[i].name, "cookie")) {
            h->v[w++] = h->v[i];
            continue;
        }
        if (o) {
            memcpy(buf + o, "; ", 2);
            o += 2;
        }
        memcpy(buf + o, h->v[i].value.p, h->v[i].value.n);
        o += h->v[i].value.n;
        if (first == SIZE_MAX) {
            first = w;
            h->v[w++] = h->v[i];
        }
    }
    buf[o] = '\0';
    h->v[first].value = (sl_str_t){buf, o};
    h->n = w;
}

void sl_fields_request_done(sl_req_t *req, unsigned ncookies)
{
    const char *q = req->target.n ? memchr(req->target.p, '?', req->target.n) : NULL;
    req->path = req->target;
    req->query = (sl_str_t){"", 0};
    if (q) {
        req->path.n = (size_t)(q - req->target.p);
        req->query = (sl_str_t){q + 1, req->target.n - req->path.n - 1};
    }
    if (!req->authority.n) {
        const sl_header_t *host = sl_req_header(req, "host");
        if (host)
            req->authority = host->value;
    }
    if (!req->scheme.n)
        req->scheme = req->tls.version ? SL_STR("https") : SL_STR("http");
    req->is_head = sl_str_eq(req->method, "HEAD");
    if (ncookies > 1)
        join_cookies(req);
}

void sl_fields_status(char out[4], int code)
{
    out[0] = (char)('0' + code / 100);
    out[1] = (char)('0' + code / 10 % 10);
    out[2] = (char)('0' + code % 10);
    out[3] = '\0';
}

sl_str_t sl_fields_lower(sl_req_t *req, sl_str_t name)
{
    if (!sl_has_upper(name.p, name.n))
        return name;
    char *low = sl_pool_strndup(&req->pool, name.p, name.n);
    for (size_t k = 0; k < name.n; k++)
        if (low[k] >= 'A' && low[k] <= 'Z')
            low[k] = (char)(low[k] - 'A' + 'a');
    return (sl_str_t){low, name.n};
}

/* The strings are only read: the libraries' nv members are not const. */
static sl_nv_t nv(const char *name, size_t nlen, const char *value, size_t vlen, uint8_t flags)
{
    return (sl_nv_t){(uint8_t *)(uintptr_t)name, (uint8_t *)(uintptr_t)value, nlen, vlen, flags};
}

#define NV_LIT(lit, value, vlen, flags) nv(lit, sizeof(lit) - 1, value, vlen, flags)

size_t sl_fields_response(sl_req_t *req, double now, sl_nv_t *out, uint8_t flags, char status[4],
                          char clen[24])
{
    const sl_config_t *cfg = sl_req_config(req);
    const sl_headers_t *hs = &req->res.headers;
    int have_server = 0, have_date = 0;
    size_t n = 0;
    if (req->res.status < 200 || req->res.status > 999) {
        sl_log_stream(SL_LOG_ERROR, req->conn, req->stream_id, "handler set status %d; sending 500",
                      req->res.status);
        req->res.status = 500;
    }
    sl_fields_status(status, req->res.status);
    out[n++] = NV_LIT(":status", status, 3, flags);
    for (size_t i = 0; i < hs->n; i++) {
        const sl_header_t *h = &hs->v[i];
        if (sl_resp_header_is_plain(req, i)) {
            out[n++] = nv(h->name.p, h->name.n, h->value.p, h->value.n, flags);
            continue;
        }
        /* Lower-cased first, so the names below compare as bytes. */
        sl_str_t name = sl_fields_lower(req, h->name);
        if (sl_field_is_connection_specific(name))
            continue;
        switch (name.n) {
        case 4: have_date |= memcmp(name.p, "date", 4) == 0; break;
        case 6: have_server |= memcmp(name.p, "server", 6) == 0; break;
        case 14:
            if (req->res.content_length >= 0 && memcmp(name.p, "content-length", 14) == 0)
                continue;
            break;
        default: break;
        }
        out[n++] = nv(name.p, name.n, h->value.p, h->value.n, flags);
    }
    if (!have_date) {
        size_t dlen;
        const char *date = sl_http_date_now(now, &dlen);
        out[n++] = NV_LIT("date", date, dlen, flags);
    }
    if (req->res.content_length >= 0) {
        size_t len = sl_u64_format(clen, (uint64_t)req->res.content_length);
        out[n++] = NV_LIT("content-length", clen, len, flags);
    }
    /* The connection holds its config (conn.c) for its whole life, so the
     * name outlives the head, reload or not. */
    if (!have_server && cfg->server_name)
        out[n++] = NV_LIT("server", cfg->server_name, strlen(cfg->server_name), flags);
    return n;
}

/* hs without its connection-specific fields, lower-cased, after out[n). */
static size_t add_checked(sl_req_t *req, const sl_headers_t *hs, sl_nv_t *out, size_t n,
                          uint8_t flags)
{
    for (size_t i = 0; hs && i < hs->n; i++) {
        sl_str_t name = sl_fields_lower(req, hs->v[i].name);
        if (!sl_field_is_connection_specific(name))
            out[n++] = nv(name.p, name.n, hs->v[i].value.p, hs->v[i].value.n, flags);
    }
    return n;
}

size_t sl_fields_informational(sl_req_t *req, int status, const sl_headers_t *hdrs, sl_nv_t *out,
                               uint8_t flags, char code[4])
{
    sl_fields_status(code, status);
    out[0] = NV_LIT(":status", code, 3, flags);
    return add_checked(req, hdrs, out, 1, flags);
}

size_t sl_fields_trailers(sl_req_t *req, sl_nv_t *out, uint8_t flags)
{
    return add_checked(req, &req->res.trailers, out, 0, flags);
}
