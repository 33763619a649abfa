/* sluice - SPDX-License-Identifier: MIT
 *
 * JWT bearer tokens verified here (RFC 7519, JWS compact form RFC 7515)
 * with OpenSSL's EVP API, not libjwt: Debian 12's libjwt (1.10) predates
 * the fix for its HMAC/public-key algorithm confusion (CVE-2024-54150),
 * and verification is a few dozen lines on EVP. The rules:
 * - algorithms RS256, ES256 and EdDSA (Ed25519) only; "none" and every
 *   HMAC algorithm are refused, and each key verifies the one algorithm
 *   its type allows (an RSA key never checks an HS256 MAC);
 * - a "kid" in the header picks the key with that kid (keys without a
 *   kid, from PEM, are tried for any); without one, the keys of the
 *   token's algorithm are tried;
 * - exp (required unless require_exp is false) and nbf with leeway_s,
 *   iss and aud when configured;
 * - claims_to_headers copies claim values onto the request, as an auth
 *   service's copy_headers would.
 * A refusal is a 401 with WWW-Authenticate: Bearer error="invalid_token"
 * (RFC 6750 3.1) and says why in the body.
 */
#include "auth_int.h"
#include "../conf.h"
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#define TOKEN_MAX 8192

static const char *const alg_names[] = {"", "RS256", "ES256", "EdDSA"};

void sl_auth_jwt_free(sl_auth_jwt_t *j)
{
    if (!j)
        return;
    sl_auth_jwks_free(j->keys, j->nkeys);
    for (size_t i = 0; i < SL_AUTH_MAX_NAMES; i++)
        sl_free(j->claims[i]);
    sl_free(j->issuer);
    sl_free(j->audience);
    sl_free(j);
}

static int parse_claims(json_t *map, const char *p, sl_auth_t *a, char *err, size_t errlen)
{
    const char *claim;
    json_t *v;
    if (!map)
        return 0;
    if (!json_is_object(map) || json_object_size(map) > SL_AUTH_MAX_NAMES)
        return sl_conf_fail(err, errlen,
                            "%s.claims_to_headers: must be an object of at most %d claims", p,
                            SL_AUTH_MAX_NAMES);
    json_object_foreach(map, claim, v)
    {
        const char *h = json_string_value(v);
        if (!h || !sl_str_is_token((sl_str_t){h, strlen(h)}))
            return sl_conf_fail(err, errlen, "%s.claims_to_headers.%s: must be a header name", p,
                                claim);
        char *l = sl_strdup(h);
        for (char *c = l; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        a->jwt->claims[a->ncopy] = sl_strdup(claim);
        a->copy[a->ncopy++] = l;
    }
    return 0;
}

int sl_auth_jwt_parse(json_t *o, const char *p, sl_auth_t *a, char *err, size_t errlen)
{
    static const char *const keys[] = {"keys_file", "issuer",      "audience",
                                       "leeway_s",  "require_exp", "claims_to_headers"};
    char *file = NULL;
    int64_t leeway;
    if (!json_is_object(o))
        return sl_conf_fail(err, errlen, "%s: must be an object", p);
    a->jwt = sl_calloc(1, sizeof(*a->jwt));
    sl_auth_jwt_t *j = a->jwt;
    if (sl_conf_check_keys(o, p, keys, SL_ARRAY_LEN(keys), err, errlen) ||
        sl_conf_get_req_str(o, p, "keys_file", &file, err, errlen) ||
        sl_conf_get_opt_str(o, p, "issuer", &j->issuer, err, errlen) ||
        sl_conf_get_opt_str(o, p, "audience", &j->audience, err, errlen) ||
        sl_conf_get_int(o, p, "leeway_s", 30, 0, 3600, &leeway, err, errlen) ||
        sl_conf_get_bool(o, p, "require_exp", 1, &j->require_exp, err, errlen) ||
        parse_claims(json_object_get(o, "claims_to_headers"), p, a, err, errlen)) {
        sl_free(file);
        return SL_EINVAL;
    }
    j->leeway_s = (double)leeway;
    char kp[SL_CONF_PATH_LEN];
    sl_conf_path(kp, p, "keys_file");
    int rv = sl_auth_jwks_load(file, kp, &j->keys, &j->nkeys, err, errlen);
    sl_free(file);
    return rv;
}

/* ---- verification ---- */

typedef struct token {
    const char *signing_input; /* header "." payload, as sent */
    size_t signing_len;
    json_t *header, *claims;
    uint8_t sig[1024];
    size_t sig_len;
} token_t;

static json_t *decode_json(const char *p, size_t n)
{
    uint8_t buf[TOKEN_MAX];
    ssize_t len = sl_base64url_decode(p, n, buf, sizeof(buf));
    return len > 0 ? json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL)
                   : NULL;
}

/* "h.p.s", each part base64url: 0, or why not. */
static const char *split(sl_str_t t, token_t *k)
{
    const char *d1 = memchr(t.p, '.', t.n);
    const char *d2 = d1 ? memchr(d1 + 1, '.', t.n - (size_t)(d1 + 1 - t.p)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', t.n - (size_t)(d2 + 1 - t.p)))
        return "not a JWS compact token";
    k->signing_input = t.p;
    k->signing_len = (size_t)(d2 - t.p);
    k->header = decode_json(t.p, (size_t)(d1 - t.p));
    k->claims = decode_json(d1 + 1, (size_t)(d2 - d1 - 1));
    ssize_t s = sl_base64url_decode(d2 + 1, t.n - (size_t)(d2 + 1 - t.p), k->sig, sizeof(k->sig));
    if (!json_is_object(k->header) || !json_is_object(k->claims) || s <= 0)
        return "a part of the token does not decode";
    k->sig_len = (size_t)s;
    return NULL;
}

/* JWS ES256 signatures are r || s (64 bytes); OpenSSL wants DER. */
static int es256_der(const uint8_t *sig, size_t n, uint8_t *out, size_t cap, size_t *len)
{
    if (n != 64)
        return SL_EINVAL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return SL_EINVAL;
    }
    int dl = i2d_ECDSA_SIG(es, NULL);
    if (dl > 0 && (size_t)dl <= cap) {
        uint8_t *o = out;
        i2d_ECDSA_SIG(es, &o);
    }
    ECDSA_SIG_free(es);
    if (dl <= 0 || (size_t)dl > cap)
        return SL_EINVAL;
    *len = (size_t)dl;
    return 0;
}

static int verify_with(const sl_auth_jwk_t *key, const token_t *k)
{
    uint8_t der[160];
    const uint8_t *sig = k->sig;
    size_t sig_len = k->sig_len;
    if (key->alg == SL_AUTH_ES256) {
        if (es256_der(k->sig, k->sig_len, der, sizeof(der), &sig_len) != 0)
            return 0;
        sig = der;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok =
        md &&
        EVP_DigestVerifyInit(md, NULL, key->alg == SL_AUTH_EDDSA ? NULL : EVP_sha256(), NULL,
                             key->pkey) == 1 &&
        EVP_DigestVerify(md, sig, sig_len, (const uint8_t *)k->signing_input, k->signing_len) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

static const char *verify_sig(const sl_auth_jwt_t *j, const token_t *k)
{
    const char *alg = json_string_value(json_object_get(k->header, "alg"));
    const char *kid = json_string_value(json_object_get(k->header, "kid"));
    sl_auth_alg_t want = 0;
    for (int i = SL_AUTH_RS256; i <= SL_AUTH_EDDSA; i++)
        if (alg && strcmp(alg, alg_names[i]) == 0)
            want = (sl_auth_alg_t)i;
    if (!want) /* none, HS256 and every other: never */
        return "the token's algorithm is not accepted";
    for (size_t i = 0; i < j->nkeys; i++) {
        const sl_auth_jwk_t *key = &j->keys[i];
        if (key->alg != want || (kid && key->kid[0] && strcmp(kid, key->kid) != 0))
            continue;
        if (verify_with(key, k))
            return NULL;
    }
    return "the signature does not verify";
}

static int aud_has(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    for (size_t i = 0; i < json_array_size(aud); i++) {
        const char *v = json_string_value(json_array_get(aud, i));
        if (v && strcmp(v, want) == 0)
            return 1;
    }
    return 0;
}

/* The claims: NULL when they hold, else why not; *exp (0: none). */
static const char *check_claims(const sl_auth_jwt_t *j, json_t *c, double now, double *exp)
{
    json_t *e = json_object_get(c, "exp"), *nbf = json_object_get(c, "nbf");
    *exp = json_is_number(e) ? json_number_value(e) : 0;
    if (e && !json_is_number(e))
        return "exp is not a number";
    if (!e && j->require_exp)
        return "the token has no exp";
    if (e && now > *exp + j->leeway_s)
        return "the token has expired";
    if (nbf && (!json_is_number(nbf) || now + j->leeway_s < json_number_value(nbf)))
        return "the token is not valid yet";
    const char *iss = json_string_value(json_object_get(c, "iss"));
    if (j->issuer && (!iss || strcmp(iss, j->issuer) != 0))
        return "the token's issuer is not the one expected";
    if (j->audience && !aud_has(json_object_get(c, "aud"), j->audience))
        return "the token is not for this audience";
    return NULL;
}

static sl_auth_decision_t *refuse(const char *why)
{
    sl_auth_decision_t *d = sl_calloc(1, sizeof(*d));
    char b[256];
    d->refs = 1;
    d->kind = SL_AUTH_DENY;
    d->status = 401;
    if (why) {
        snprintf(b, sizeof(b), "Bearer error=\"invalid_token\", error_description=\"%s\"", why);
        d->www_authenticate = sl_strdup(b);
        int n = snprintf(b, sizeof(b),
                         "{\"error\":\"invalid_token\",\"error_description\":\"%s\"}\n", why);
        d->body = (uint8_t *)sl_strndup(b, (size_t)n);
        d->body_len = (size_t)n;
    } else { /* no token at all: RFC 6750 3.1 says no error code */
        d->www_authenticate = sl_strdup("Bearer");
        d->body = (uint8_t *)sl_strdup("{\"error\":\"a bearer token is required\"}\n");
        d->body_len = strlen((char *)d->body);
    }
    d->content_type = sl_strdup("application/json");
    return d;
}

static char *claim_value(json_t *v)
{
    char num[32];
    if (json_is_string(v))
        return sl_strndup(json_string_value(v),
                          SL_MIN(json_string_length(v), (size_t)SL_AUTH_FIELD_MAX));
    if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
        return sl_strdup(num);
    }
    return NULL; /* objects, arrays, booleans: not a field value */
}

static sl_auth_decision_t *allow(const sl_auth_t *a, json_t *claims, double exp)
{
    sl_auth_decision_t *d = sl_calloc(1, sizeof(*d));
    d->refs = 1;
    d->kind = SL_AUTH_ALLOW;
    d->not_after = exp > 0 ? exp + a->jwt->leeway_s : 0;
    for (size_t i = 0; i < a->ncopy; i++) {
        char *v = claim_value(json_object_get(claims, a->jwt->claims[i]));
        /* A value with a control character would forge a field. */
        for (char *c = v; c && *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                sl_free(v);
                v = NULL;
                break;
            }
        d->values[i] = v;
    }
    return d;
}

sl_auth_decision_t *sl_auth_jwt_check(const sl_auth_t *a, const sl_req_t *req)
{
    const sl_header_t *h = sl_req_header(req, "authorization");
    if (!h || h->value.n < 7 || strncasecmp(h->value.p, "bearer ", 7) != 0)
        return refuse(NULL);
    sl_str_t t = sl_str_trim_ows((sl_str_t){h->value.p + 7, h->value.n - 7});
    if (t.n == 0 || t.n > TOKEN_MAX)
        return refuse("the token is empty or too long");
    token_t k = {0};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double exp = 0;
    const char *why = split(t, &k);
    if (!why)
        why = verify_sig(a->jwt, &k);
    if (!why)
        why = check_claims(a->jwt, k.claims, (double)ts.tv_sec, &exp);
    sl_auth_decision_t *d = why ? refuse(why) : allow(a, k.claims, exp);
    json_decref(k.header);
    json_decref(k.claims);
    return d;
}
