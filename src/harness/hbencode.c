/* sluice - SPDX-License-Identifier: MIT
 *
 * httpbin's gzip, deflate and brotli: a JSON body ({"gzipped": true,
 * "headers", "method", "origin"}, "deflated" or "brotli" instead)
 * compressed with zlib (gzip wrapper, or the zlib wrapper RFC 9110 calls
 * "deflate") or libbrotli, with Content-Encoding saying which, whatever
 * the client's Accept-Encoding: a client under test must cope.
 */
#include "harness_int.h"
#include <brotli/encode.h>
#include <zlib.h>

static size_t zlib_pack(const uint8_t *in, size_t n, uint8_t *out, size_t cap, int gzip)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 6, Z_DEFLATED, gzip ? 31 : 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t len = rc == Z_STREAM_END ? cap - z.avail_out : 0;
    deflateEnd(&z);
    return len;
}

void sl_harness_hb_compressed(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    int gzip = sl_str_eq(cx->name, "gzip"), br = sl_str_eq(cx->name, "brotli");
    const char *flag = gzip ? "gzipped" : br ? "brotli" : "deflated";
    json_t *doc = json_pack("{s:b, s:o, s:o, s:o}", flag, 1, "headers", sl_harness_hb_headers(req),
                            "method", sl_harness_jstr(&req->pool, req->method.p, req->method.n),
                            "origin", sl_harness_hb_origin(req));
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    if (!text) {
        req->cbs = &sl_req_discard_cbs;
        sl_resp_error(req, 500, "could not build the answer");
        return;
    }
    size_t n = strlen(text), cap = n + 1024;
    uint8_t *out = sl_pool_alloc(&req->pool, cap);
    size_t len = cap;
    if (br)
        len = BrotliEncoderCompress(5, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_TEXT, n,
                                    (const uint8_t *)text, &len, out)
                  ? len
                  : 0;
    else
        len = zlib_pack((const uint8_t *)text, n, out, cap, gzip);
    free(text); /* jansson's allocator */
    req->cbs = &sl_req_discard_cbs;
    if (!len) {
        sl_resp_error(req, 500, "compression failed");
        return;
    }
    req->res.status = 200;
    req->res.content_length = (int64_t)len;
    sl_resp_header_add(req, "content-type", "application/json");
    sl_resp_header_add(req, "content-encoding", gzip ? "gzip" : br ? "br" : "deflate");
    sl_resp_send(req, out, len, 1);
}
