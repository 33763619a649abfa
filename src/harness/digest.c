/* sluice - SPDX-License-Identifier: MIT
 *
 * SHA-256 over a request body as it streams in (anything, sink): OpenSSL
 * EVP with the digest fetched once per route, hex output for the JSON.
 */
#include "harness_int.h"

int sl_harness_sha_init(sl_harness_sha_t *s, const EVP_MD *md)
{
    s->n = 0;
    s->ctx = EVP_MD_CTX_new();
    if (!s->ctx)
        return SL_ENOMEM;
    if (EVP_DigestInit_ex(s->ctx, md, NULL) != 1) {
        EVP_MD_CTX_free(s->ctx);
        s->ctx = NULL;
        return SL_ENOMEM;
    }
    return 0;
}

void sl_harness_sha_update(sl_harness_sha_t *s, const void *data, size_t len)
{
    if (len == 0)
        return;
    /* EVP_DigestUpdate on an initialised SHA-256 context cannot fail. */
    (void)EVP_DigestUpdate(s->ctx, data, len);
    s->n += len;
}

int sl_harness_sha_final_hex(sl_harness_sha_t *s, char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_DigestFinal_ex(s->ctx, md, &mdlen) != 1 || mdlen != 32)
        return SL_ERROR;
    for (unsigned i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
    return 0;
}

void sl_harness_sha_dispose(sl_harness_sha_t *s)
{
    EVP_MD_CTX_free(s->ctx);
    s->ctx = NULL;
}
