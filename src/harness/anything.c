/* sluice - SPDX-License-Identifier: MIT
 *
 * anything and sink: read the whole request body, hashing it with SHA-256
 * as it arrives and giving its credit back at once (nothing is buffered),
 * then answer JSON. anything describes the request (method, path, decoded
 * query, headers, protocol, stream id, TLS, peer, body length and hash);
 * sink answers only {"bytes": n, "sha256": hex}.
 */
#include "harness_int.h"
#include <jansson.h>

typedef struct reader {
    sl_harness_sha_t sha;
    sl_query_t q;
    unsigned sink : 1;
    unsigned answered : 1;
} reader_t;

static json_t *describe_tls(const sl_req_t *req)
{
    if (!req->tls.version)
        return json_null();
    return json_pack("{s:s?, s:s?, s:s?}", "version", req->tls.version, "alpn", req->tls.alpn,
                     "sni", req->tls.sni);
}

static json_t *describe(sl_req_t *req, const reader_t *r, const char *hex)
{
    sl_pool_t *pool = &req->pool;
    json_t *query = json_object(), *headers = json_object();
    for (size_t i = 0; i < r->q.n; i++)
        sl_harness_json_add_multi(query, pool, r->q.v[i].name, r->q.v[i].value);
    for (size_t i = 0; i < req->headers.n; i++) {
        const sl_header_t *h = &req->headers.v[i];
        if (h->name.n && h->name.p[0] == ':')
            continue; /* pseudo-headers are reported as method, path, ... */
        sl_harness_json_add_multi(headers, pool, h->name, h->value);
    }
    const char *proto = sl_req_proto_name(req);
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:I, s:o, s:s?, s:I, s:s}", "method",
                     sl_harness_jstr(pool, req->method.p, req->method.n), "path",
                     sl_harness_jstr(pool, req->path.p, req->path.n), "query", query, "headers", headers,
                     "authority", sl_harness_jstr(pool, req->authority.p, req->authority.n), "scheme",
                     sl_harness_jstr(pool, req->scheme.p, req->scheme.n), "protocol", proto, "stream_id",
                     (json_int_t)req->stream_id, "tls", describe_tls(req), "peer", req->peer,
                     "body_length", (json_int_t)r->sha.n, "body_sha256", hex);
}

static void answer(sl_req_t *req, reader_t *r)
{
    char hex[65];
    r->answered = 1;
    if (sl_harness_sha_final_hex(&r->sha, hex) != 0)
        goto fail_digest;
    sl_harness_json(req, 200,
                    r->sink ? json_pack("{s:I, s:s}", "bytes", (json_int_t)r->sha.n, "sha256", hex)
                            : describe(req, r, hex));
    return;

fail_digest:
    sl_resp_error(req, 500, "could not describe the request");
}

static void on_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    reader_t *r = req->hdata;
    if (len)
        sl_req_consume(req, len);
    if (r->answered)
        return; /* the protocol repeated the end; the answer is out */
    sl_harness_sha_update(&r->sha, data, len);
    if (fin)
        answer(req, r);
}

static void on_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    reader_t *r = req->hdata;
    sl_harness_sha_dispose(&r->sha);
}

static const sl_handler_cbs_t reader_cbs = {.on_body = on_body, .on_close = on_close};

static void start(sl_harness_ctx_t *cx, int sink)
{
    sl_req_t *req = cx->req;
    reader_t *r = sl_pool_alloc(&req->pool, sizeof(*r));
    memset(r, 0, sizeof(*r));
    r->q = cx->q;
    r->sink = sink ? 1 : 0;
    if (sl_harness_sha_init(&r->sha, cx->opts->sha256) != 0) {
        req->cbs = &sl_req_discard_cbs;
        sl_resp_error(req, 503, "out of memory");
        return;
    }
    req->cbs = &reader_cbs;
    req->hdata = r;
    if (req->body_done)
        answer(req, r); /* no body to wait for */
}

void sl_harness_anything(sl_harness_ctx_t *cx)
{
    start(cx, 0);
}

void sl_harness_sink(sl_harness_ctx_t *cx)
{
    start(cx, 1);
}
