/* sluice - SPDX-License-Identifier: MIT
 *
 * The opening handshake. HTTP/1.1 (RFC 6455 4.2.1): GET, HTTP/1.1,
 * Upgrade: websocket, Connection: upgrade, a Sec-WebSocket-Key of 16
 * base64 bytes, Sec-WebSocket-Version: 13; the answer is 101 with
 * Sec-WebSocket-Accept. HTTP/2 (RFC 8441 4, 5): extended CONNECT with
 * :protocol websocket and version 13; the answer is 200. A bad handshake
 * gets 400, a wrong or missing version 426 with Sec-WebSocket-Version: 13,
 * a plain request with no Upgrade at all 426 with Upgrade: websocket.
 */
#include "ws_int.h"
#include "../log.h"
#include <openssl/evp.h>

#define GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* Any field called name (there may be several lines) holding tok. */
static int field_has_token(const sl_req_t *req, const char *name, const char *tok)
{
    for (size_t i = 0; i < req->headers.n; i++)
        if (sl_str_eq(req->headers.v[i].name, name) &&
            sl_str_has_token(req->headers.v[i].value, tok))
            return 1;
    return 0;
}

static size_t field_count(const sl_req_t *req, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < req->headers.n; i++)
        n += sl_str_eq(req->headers.v[i].name, name);
    return n;
}

static int is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* 16 bytes in base64: 22 characters and "==". */
static int key_is_valid(sl_str_t k)
{
    if (k.n != 24 || k.p[22] != '=' || k.p[23] != '=')
        return 0;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64(k.p[i]))
            return 0;
    return 1;
}

static int version_ok(const sl_req_t *req)
{
    const sl_header_t *v = sl_req_header(req, "sec-websocket-version");
    return v && field_count(req, "sec-websocket-version") == 1 && sl_str_eq(v->value, "13");
}

int sl_ws_check(const sl_req_t *req)
{
    if (req->proto == SL_PROTO_H2) {
        if (!sl_str_eq(req->method, "CONNECT") || !sl_str_eq(req->protocol, "websocket"))
            return req->protocol.n || sl_str_eq(req->method, "CONNECT") ? 400 : 426;
        return version_ok(req) ? 0 : 426;
    }
    if (!sl_req_header(req, "upgrade"))
        return 426;
    if (!sl_str_eq(req->method, "GET") || req->version_minor != 1 ||
        !field_has_token(req, "upgrade", "websocket") ||
        !field_has_token(req, "connection", "upgrade") || req->content_length > 0)
        return 400;
    const sl_header_t *key = sl_req_header(req, "sec-websocket-key");
    if (!key || field_count(req, "sec-websocket-key") != 1 || !key_is_valid(key->value))
        return 400;
    return version_ok(req) ? 0 : 426;
}

void sl_ws_accept_value(const char *key, size_t n, char out[29])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char in[64 + sizeof(GUID)];
    n = SL_MIN(n, (size_t)64);
    memcpy(in, key, n);
    memcpy(in + n, GUID, sizeof(GUID) - 1);
    EVP_Digest(in, n + sizeof(GUID) - 1, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen); /* 20 bytes -> 28 chars + NUL */
}
