/* sluice - SPDX-License-Identifier: MIT
 *
 * Public keys for JWT verification (jwt.c), from a JWKS file (RFC 7517:
 * RSA n/e, EC P-256 x/y, OKP Ed25519 x) or a PEM file of public keys.
 * Read when the configuration loads, so a reload reads them again. Only
 * what RS256, ES256 and EdDSA can use is taken; a key for anything else
 * is an error, not silently skipped, so a JWKS that cannot verify a
 * token is found at load time.
 */
#include "auth_int.h"
#include "../conf.h"
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdio.h>

#define JWK_FIELD_MAX 1024 /* decoded bytes of n (8192-bit RSA) and friends */

void sl_auth_jwks_free(sl_auth_jwk_t *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        EVP_PKEY_free(k[i].pkey);
    sl_free(k);
}

static int b64_field(json_t *o, const char *name, uint8_t *out, size_t cap, size_t *len)
{
    const char *s = json_string_value(json_object_get(o, name));
    ssize_t n = s ? sl_base64url_decode(s, strlen(s), out, cap) : -1;
    if (n <= 0)
        return SL_EINVAL;
    *len = (size_t)n;
    return 0;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *rsa_key(json_t *o)
{
    uint8_t n[JWK_FIELD_MAX], e[16];
    size_t nl, el;
    if (b64_field(o, "n", n, sizeof(n), &nl) || b64_field(o, "e", e, sizeof(e), &el))
        return NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    EVP_PKEY *k = NULL;
    if (bld && bn && be && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        k = from_params("RSA", bld);
    BN_free(bn);
    BN_free(be);
    OSSL_PARAM_BLD_free(bld);
    return k;
}

static EVP_PKEY *ec_key(json_t *o)
{
    uint8_t pt[65], x[40], y[40];
    size_t xl, yl;
    const char *crv = json_string_value(json_object_get(o, "crv"));
    if (!crv || strcmp(crv, "P-256") != 0 || b64_field(o, "x", x, sizeof(x), &xl) ||
        b64_field(o, "y", y, sizeof(y), &yl) || xl != 32 || yl != 32)
        return NULL;
    pt[0] = 4; /* uncompressed point */
    memcpy(pt + 1, x, 32);
    memcpy(pt + 33, y, 32);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *k = NULL;
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)))
        k = from_params("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    return k;
}

static EVP_PKEY *okp_key(json_t *o)
{
    uint8_t x[40];
    size_t xl;
    const char *crv = json_string_value(json_object_get(o, "crv"));
    if (!crv || strcmp(crv, "Ed25519") != 0 || b64_field(o, "x", x, sizeof(x), &xl) || xl != 32)
        return NULL;
    return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, xl);
}

/* What a key can verify, from its type (and, for EC, its curve). */
static sl_auth_alg_t alg_of(EVP_PKEY *k)
{
    char group[64] = "";
    if (EVP_PKEY_is_a(k, "RSA"))
        return EVP_PKEY_get_bits(k) >= 2048 ? SL_AUTH_RS256 : 0;
    if (EVP_PKEY_is_a(k, "ED25519"))
        return SL_AUTH_EDDSA;
    if (EVP_PKEY_is_a(k, "EC") &&
        EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) &&
        strcmp(group, "prime256v1") == 0)
        return SL_AUTH_ES256;
    return 0;
}

static int add_key(sl_auth_jwk_t **v, size_t *n, EVP_PKEY *k, const char *kid, const char *what,
                   char *err, size_t errlen)
{
    sl_auth_alg_t alg = k ? alg_of(k) : 0;
    if (!alg) {
        EVP_PKEY_free(k);
        return sl_conf_fail(err, errlen,
                            "%s: not a usable key (RSA of 2048 bits or more, EC P-256 or Ed25519)",
                            what);
    }
    if (*n == SL_AUTH_MAX_KEYS) {
        EVP_PKEY_free(k);
        return sl_conf_fail(err, errlen, "%s: more than %d keys", what, SL_AUTH_MAX_KEYS);
    }
    *v = sl_realloc(*v, (*n + 1) * sizeof(**v));
    sl_auth_jwk_t *e = &(*v)[(*n)++];
    memset(e, 0, sizeof(*e));
    e->pkey = k;
    e->alg = alg;
    snprintf(e->kid, sizeof(e->kid), "%s", kid ? kid : "");
    return 0;
}

static int load_jwks(json_t *doc, const char *p, sl_auth_jwk_t **v, size_t *n, char *err,
                     size_t errlen)
{
    json_t *keys = json_object_get(doc, "keys");
    if (!json_is_array(keys) || json_array_size(keys) == 0)
        return sl_conf_fail(err, errlen, "%s: a JWKS needs a non-empty \"keys\" array", p);
    for (size_t i = 0; i < json_array_size(keys); i++) {
        json_t *o = json_array_get(keys, i);
        const char *kty = json_string_value(json_object_get(o, "kty"));
        const char *use = json_string_value(json_object_get(o, "use"));
        char what[SL_CONF_PATH_LEN + 32];
        snprintf(what, sizeof(what), "%s: keys[%zu]", p, i);
        if (use && strcmp(use, "sig") != 0)
            continue; /* an encryption key has nothing to do here */
        EVP_PKEY *k = !kty                      ? NULL
                      : strcmp(kty, "RSA") == 0 ? rsa_key(o)
                      : strcmp(kty, "EC") == 0  ? ec_key(o)
                      : strcmp(kty, "OKP") == 0 ? okp_key(o)
                                                : NULL;
        if (add_key(v, n, k, json_string_value(json_object_get(o, "kid")), what, err, errlen))
            return SL_EINVAL;
    }
    return *n ? 0 : sl_conf_fail(err, errlen, "%s: no signing key", p);
}

static int load_pem(const char *file, const char *p, sl_auth_jwk_t **v, size_t *n, char *err,
                    size_t errlen)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return sl_conf_fail(err, errlen, "%s: cannot open %s", p, file);
    EVP_PKEY *k;
    int rv = 0;
    while (rv == 0 && (k = PEM_read_PUBKEY(f, NULL, NULL, NULL)))
        rv = add_key(v, n, k, NULL, p, err, errlen);
    fclose(f);
    ERR_clear_error(); /* the end of the file reads as an error */
    if (rv == 0 && *n == 0)
        rv = sl_conf_fail(err, errlen, "%s: no PEM public key in %s", p, file);
    return rv;
}

int sl_auth_jwks_load(const char *file, const char *p, sl_auth_jwk_t **v, size_t *n, char *err,
                      size_t errlen)
{
    json_error_t je;
    *v = NULL;
    *n = 0;
    json_t *doc = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
    int rv = doc ? load_jwks(doc, p, v, n, err, errlen) : load_pem(file, p, v, n, err, errlen);
    json_decref(doc);
    if (rv != 0) {
        sl_auth_jwks_free(*v, *n);
        *v = NULL;
        *n = 0;
    }
    return rv;
}
