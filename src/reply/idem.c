/* sluice - SPDX-License-Identifier: MIT
 *
 * What an Idempotency-Key is bound to (draft-ietf-httpapi-idempotency-
 * key-header): the request's fingerprint, known when the job is made, and
 * the digest of its body, known once the body has all arrived (bodies
 * stream to the job, so they are hashed on the way, never buffered).
 */
#include "reply_int.h"
#include <openssl/evp.h>
#include <stdio.h>

/* Known when the job is made: method, path and query, and the body's
 * type, length and Content-Digest / Repr-Digest (RFC 9530). The body
 * bytes themselves are compared once they have arrived (route.c). */
void sl_reply_idem_fingerprint(const sl_req_t *req, char *out)
{
    static const char *const fields[] = {"content-type", "content-digest", "repr-digest"};
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t h[EVP_MAX_MD_SIZE];
    unsigned hn = 0;
    char cl[24];
    int cln = snprintf(cl, sizeof(cl), "%lld", (long long)req->content_length);
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
        sl_assert_fail("SHA-256 for an Idempotency-Key", __FILE__, __LINE__);
    EVP_DigestUpdate(md, req->method.p, req->method.n);
    EVP_DigestUpdate(md, "\n", 1);
    EVP_DigestUpdate(md, req->path.p, req->path.n);
    EVP_DigestUpdate(md, "?", 1);
    EVP_DigestUpdate(md, req->query.p, req->query.n);
    EVP_DigestUpdate(md, "\n", 1);
    EVP_DigestUpdate(md, cl, (size_t)cln);
    for (size_t i = 0; i < SL_ARRAY_LEN(fields); i++) {
        const sl_header_t *f = sl_req_header(req, fields[i]);
        EVP_DigestUpdate(md, "\n", 1);
        if (f)
            EVP_DigestUpdate(md, f->value.p, f->value.n);
    }
    EVP_DigestFinal_ex(md, h, &hn);
    EVP_MD_CTX_free(md);
    sl_hex_encode(h, SL_MIN((size_t)SL_JOBS_FP_LEN / 2, (size_t)hn), out);
}

EVP_MD_CTX *sl_reply_body_hash_begin(void)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md && !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        md = NULL;
    }
    return md;
}

void sl_reply_body_hash_feed(EVP_MD_CTX *md, const uint8_t *p, size_t n)
{
    if (n)
        EVP_DigestUpdate(md, p, n);
}

void sl_reply_body_hash_free(EVP_MD_CTX *md)
{
    EVP_MD_CTX_free(md);
}

void sl_reply_body_hash_end(EVP_MD_CTX *md, char *out)
{
    uint8_t h[EVP_MAX_MD_SIZE];
    unsigned hn = 0;
    EVP_DigestFinal_ex(md, h, &hn);
    EVP_MD_CTX_free(md);
    sl_hex_encode(h, SL_MIN((size_t)SL_JOBS_FP_LEN / 2, (size_t)hn), out);
}
