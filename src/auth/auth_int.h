/* sluice - SPDX-License-Identifier: MIT
 *
 * Private to src/auth/: the parsed route option (config.c), decisions and
 * the per-worker cache with its checks in flight (check.c), and the
 * request's side (gate.c).
 */
#ifndef SL_AUTH_INT_H
#define SL_AUTH_INT_H

#include "auth.h"
#include "../config.h"

#define SL_AUTH_MAX_WORKERS 256 /* config.c caps workers at 256 */
#define SL_AUTH_MAX_NAMES 16    /* forward_headers, copy_headers */
#define SL_AUTH_BODY_MAX 65536  /* a denial's body passed on */
#define SL_AUTH_FIELD_MAX 8192  /* a copied or WWW-Authenticate value */

#define SL_AUTH_MAX_KEYS 32 /* keys in a JWKS or PEM file */

typedef struct sl_auth_cache sl_auth_cache_t;

/* ---- JWT (jwt.c, jwk.c) ---- */
typedef enum sl_auth_alg { SL_AUTH_RS256 = 1, SL_AUTH_ES256, SL_AUTH_EDDSA } sl_auth_alg_t;

typedef struct sl_auth_jwk {
    struct evp_pkey_st *pkey;
    sl_auth_alg_t alg; /* the one algorithm this key verifies */
    char kid[128];     /* "" when the key has none */
} sl_auth_jwk_t;

/* Load a JWKS or PEM file; p names the option in errors. */
int sl_auth_jwks_load(const char *file, const char *p, sl_auth_jwk_t **v, size_t *n, char *err,
                      size_t errlen);
void sl_auth_jwks_free(sl_auth_jwk_t *k, size_t n);

typedef struct sl_auth_jwt {
    sl_auth_jwk_t *keys;
    size_t nkeys;
    char *issuer, *audience; /* NULL: not checked */
    double leeway_s;
    int require_exp;
    char *claims[SL_AUTH_MAX_NAMES]; /* claims_to_headers: claim i -> the route's copy[i] */
} sl_auth_jwt_t;

struct sl_auth {
    char *route; /* its path, for log lines */
    char *upstream, *path;
    double timeout_s, cache_s, reauth_s;
    char *fwd[SL_AUTH_MAX_NAMES]; /* lower-case */
    size_t nfwd;
    char *copy[SL_AUTH_MAX_NAMES];
    size_t ncopy;
    int64_t cache_entries, cache_bytes; /* per worker */
    sl_auth_jwt_t *jwt;                 /* set: tokens are verified here, no service is asked */
    sl_auth_cache_t *caches[SL_AUTH_MAX_WORKERS]; /* each touched by its worker only */
};

typedef enum sl_auth_kind { SL_AUTH_ALLOW = 1, SL_AUTH_DENY, SL_AUTH_ERROR } sl_auth_kind_t;

/* What the auth service said; shared by the cache and its users on one
 * worker (plain reference count), immutable once made. */
typedef struct sl_auth_decision {
    int refs;
    sl_auth_kind_t kind;
    int status;                            /* DENY: 401 or 403 */
    char *values[SL_AUTH_MAX_NAMES];       /* ALLOW: copy_headers' values, NULL = absent */
    char *www_authenticate, *content_type; /* DENY, NULL = none */
    uint8_t *body;                         /* DENY */
    size_t body_len;
    const char *error; /* ERROR: why (static) */
    double not_after;  /* ALLOW by a JWT: its exp + leeway (epoch s), 0 none */
    size_t bytes;      /* counted against cache_bytes */
} sl_auth_decision_t;

void sl_auth_decision_unref(sl_auth_decision_t *d);

/* A request waiting for a check (gate.c embeds one). */
typedef struct sl_auth_waiter {
    struct sl_auth_waiter *prev, *next;
    struct sl_auth_check *check;                                   /* NULL when not waiting */
    void (*done)(struct sl_auth_waiter *w, sl_auth_decision_t *d); /* d referenced for it */
} sl_auth_waiter_t;

/* The decision for req: from the cache (returned, referenced; w is not
 * used), or NULL: w joins the check for these credentials (one is started
 * when none is under way) and w->done runs later. */
sl_auth_decision_t *sl_auth_ask(sl_auth_t *a, const sl_req_t *req, sl_auth_waiter_t *w);
/* w stops waiting (its request is gone); the check goes on for others,
 * or is cancelled when w was the last. */
void sl_auth_unwait(sl_auth_waiter_t *w);
/* The route's JWT settings ("jwt": {...}); the claims' header names go
 * to a->copy. */
int sl_auth_jwt_parse(json_t *o, const char *p, sl_auth_t *a, char *err, size_t errlen);
void sl_auth_jwt_free(sl_auth_jwt_t *j);
/* Verify req's bearer token: ALLOW (claims as values), or DENY 401. */
sl_auth_decision_t *sl_auth_jwt_check(const sl_auth_t *a, const sl_req_t *req);

/* Free the worker caches (config free: no check is under way). */
void sl_auth_caches_free(sl_auth_t *a);

#endif
