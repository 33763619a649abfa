/* sluice - SPDX-License-Identifier: MIT
 *
 * Private to src/harness/: the route options, the pure helpers (query
 * parsing, bounded number parsing, the deterministic byte generator, the
 * SHA-256 glue, token checks), the generic paced body producer ("pump")
 * and one entry point per endpoint. Unit tests reach the pure helpers
 * through this header. See docs/harness.md for the endpoint reference.
 */
#ifndef SL_HARNESS_INT_H
#define SL_HARNESS_INT_H

#include "../sl.h"
#include "../query.h"
#include "../req.h"
#include <ev.h>
#include <jansson.h>
#include <openssl/evp.h>

/* Route options; every bound has a default (docs/harness.md). */
typedef struct sl_harness_opts {
    int64_t max_bytes;        /* body size of bytes/stream/reset (1 GiB) */
    int64_t max_chunks;       /* stream/N (100000) */
    int64_t max_chunk_bytes;  /* bytes?chunk=, stream?size= (1 MiB) */
    int64_t max_delay_ms;     /* delay/MS (60000) */
    int64_t max_interval_ms;  /* stream and sse interval_ms (60000) */
    int64_t max_sse_events;   /* sse?n= (100000) */
    int64_t max_trailers;     /* trailers?... (32) */
    int64_t max_query_params; /* parameters per query string (64) */
    int64_t max_body_bytes;   /* request bodies the httpbin endpoints read whole (1 MiB) */
    int faults;               /* fault/NAME allowed (off) */
    int fault_smuggling;      /* ... and fault/h1-cl-and-chunked (off) */
    EVP_MD *sha256;           /* fetched once per route, shared by workers */
} sl_harness_opts_t;

/* ---- header checks ---- */

/* Field value: VCHAR, SP, HTAB, obs-text; no CR, LF or NUL. */
int sl_harness_is_field_value(sl_str_t s);
/* Names a handler must not send as trailers (framing, routing, hop-by-hop). */
int sl_harness_is_forbidden_trailer(sl_str_t lower_name);

/* ---- deterministic bytes ---- */

/* Write bytes [offset, offset + n) of the stream for seed into dst. The
 * stream is splitmix64 in counter mode: 64-bit word k (k = 0, 1, ...) is
 * mix(seed + (k + 1) * 0x9E3779B97F4A7C15), stored little-endian; see
 * docs/harness.md for the mix and a Python version. */
void sl_harness_gen_fill(uint64_t seed, uint64_t offset, uint8_t *dst, size_t n);
uint64_t sl_harness_gen_word(uint64_t seed, uint64_t k);

/* ---- SHA-256 over a streamed body ---- */

typedef struct sl_harness_sha {
    EVP_MD_CTX *ctx;
    uint64_t n; /* bytes hashed */
} sl_harness_sha_t;

/* Returns 0 or SL_ENOMEM (OpenSSL could not allocate; nothing to dispose). */
int sl_harness_sha_init(sl_harness_sha_t *s, const EVP_MD *md);
void sl_harness_sha_update(sl_harness_sha_t *s, const void *data, size_t len);
/* Writes 64 lower-case hex digits and a NUL. Returns 0 or SL_ERROR. */
int sl_harness_sha_final_hex(sl_harness_sha_t *s, char hex[65]);
/* Accepts a disposed or zeroed struct. */
void sl_harness_sha_dispose(sl_harness_sha_t *s);

/* ---- per-request context and shared answers ---- */

typedef struct sl_harness_ctx {
    sl_req_t *req;
    const sl_harness_opts_t *opts;
    sl_str_t name; /* endpoint: "bytes" */
    sl_str_t arg;  /* the rest after "name/": "1024" (empty when none) */
    sl_query_t q;
} sl_harness_ctx_t;

/* 400 with a JSON error naming what was wrong, plus an INFO log line
 * "client sent ...". msg is copied. */
void sl_harness_bad_request(sl_req_t *req, const char *msg);
/* Same for a numeric parameter that failed sl_str_parse_u64 with rv. */
void sl_harness_bad_param(sl_req_t *req, const char *name, int rv, uint64_t min, uint64_t max);

/* ---- pump: a paced producer of response body pieces ---- */

typedef struct sl_harness_pump sl_harness_pump_t;

/* Write the next piece (at most cap bytes) into buf and return its length;
 * set *last on the final piece (which may be empty). */
typedef size_t (*sl_harness_fill_fn)(sl_harness_pump_t *p, uint8_t *buf, size_t cap, int *last);

struct sl_harness_pump {
    sl_req_t *req;
    sl_harness_fill_fn fill;
    uint8_t *buf; /* pool memory, cap bytes */
    size_t cap;
    double interval_s; /* pause between pieces (after the previous one is taken) */
    int reset_code;    /* >= 0: after the last piece, reset with this h2 code */
    /* endpoint state */
    uint64_t seed, offset, total; /* bytes, stream, reset */
    uint64_t next, end;           /* sse: next event id, last id */
    size_t piece;                 /* stream: bytes per piece */
    /* machinery */
    ev_timer timer;
    struct ev_loop *loop;
    uint64_t pieces;
    unsigned waiting : 1; /* a send is outstanding */
    unsigned in_send : 1; /* inside sl_resp_send (on_proceed may run in it) */
    unsigned timer_on : 1;
    unsigned paced : 1;    /* the interval for the next piece has passed */
    unsigned end_next : 1; /* the last piece was sent; reset on proceed */
};

/* Allocate a pump in req's pool with a buf of cap bytes. */
sl_harness_pump_t *sl_harness_pump_new(sl_req_t *req, size_t cap, sl_harness_fill_fn fill);
/* Install the pump's callbacks and send the first piece. The pump owns the
 * rest of the response; the response head must be set up before. */
void sl_harness_pump_start(sl_harness_pump_t *p);

/* ---- endpoints (each answers the request, at once or later) ---- */

void sl_harness_anything(sl_harness_ctx_t *cx);
void sl_harness_sink(sl_harness_ctx_t *cx);
void sl_harness_echo(sl_harness_ctx_t *cx);
void sl_harness_bytes(sl_harness_ctx_t *cx);
void sl_harness_stream(sl_harness_ctx_t *cx);
void sl_harness_reset(sl_harness_ctx_t *cx);
void sl_harness_sse(sl_harness_ctx_t *cx);
void sl_harness_delay(sl_harness_ctx_t *cx);
void sl_harness_status(sl_harness_ctx_t *cx);
void sl_harness_trailers(sl_harness_ctx_t *cx);
void sl_harness_trailers_only(sl_harness_ctx_t *cx); /* fault/trailers-only */
void sl_harness_early_hints(sl_harness_ctx_t *cx);

/* ---- JSON answers and httpbin's shapes (hbjson.c) ---- */

/* Send doc (taken) as the whole response: indented, a newline, its length. */
void sl_harness_json(sl_req_t *req, int status, json_t *doc);
/* A JSON string of p (not UTF-8: read as Latin-1). */
json_t *sl_harness_jstr(sl_pool_t *pool, const char *p, size_t n);
/* obj[name] = value; a repeated name becomes an array, in order. */
void sl_harness_json_add_multi(json_t *obj, sl_pool_t *pool, sl_str_t name, sl_str_t value);
json_t *sl_harness_hb_args(const sl_harness_ctx_t *cx);
json_t *sl_harness_hb_headers(sl_req_t *req);
json_t *sl_harness_hb_origin(const sl_req_t *req);
json_t *sl_harness_hb_url(sl_req_t *req);
/* {"args", "headers", "origin", "url"}: httpbin's /get. */
json_t *sl_harness_hb_get_doc(sl_harness_ctx_t *cx);
/* The route's path with one trailing '/' ("/_h/"): what the harness's
 * own links and Locations start with. */
const char *sl_harness_prefix(sl_req_t *req);
/* 1 when the request's method is method (GET also takes HEAD); else
 * answers 405 with Allow: allow and returns 0. */
int sl_harness_method_is(sl_harness_ctx_t *cx, const char *method, const char *allow);

/* ---- httpbin endpoints ---- */

void sl_harness_hb_get(sl_harness_ctx_t *cx);
void sl_harness_hb_body(sl_harness_ctx_t *cx); /* post, put, patch, delete */
void sl_harness_hb_headers_ep(sl_harness_ctx_t *cx);
void sl_harness_hb_ip(sl_harness_ctx_t *cx);
void sl_harness_hb_user_agent(sl_harness_ctx_t *cx);
void sl_harness_hb_uuid(sl_harness_ctx_t *cx);
void sl_harness_hb_basic_auth(sl_harness_ctx_t *cx);
void sl_harness_hb_bearer(sl_harness_ctx_t *cx);
void sl_harness_hb_cookies(sl_harness_ctx_t *cx);
void sl_harness_hb_cache(sl_harness_ctx_t *cx);
void sl_harness_hb_etag(sl_harness_ctx_t *cx);
void sl_harness_hb_range(sl_harness_ctx_t *cx);
void sl_harness_hb_response_headers(sl_harness_ctx_t *cx);
void sl_harness_hb_compressed(sl_harness_ctx_t *cx); /* gzip, deflate, brotli */
void sl_harness_hb_redirect(sl_harness_ctx_t *cx);  /* redirect, relative-, absolute- */
void sl_harness_hb_redirect_to(sl_harness_ctx_t *cx);
void sl_harness_hb_sample(sl_harness_ctx_t *cx); /* json, html, xml, encoding/utf8 */
void sl_harness_hb_base64(sl_harness_ctx_t *cx);
void sl_harness_hb_links(sl_harness_ctx_t *cx);
void sl_harness_hb_image(sl_harness_ctx_t *cx);
void sl_harness_hb_drip(sl_harness_ctx_t *cx);
void sl_harness_hb_stream_bytes(sl_harness_ctx_t *cx);

/* ---- faults (fault.c, fault_h1.c) ---- */

#define SL_HARNESS_FAULTS 17
#define SL_HARNESS_FAULT_H1_FIRST 10 /* h1-close-mid-headers .. */
#define SL_HARNESS_FAULT_H1_SMUGGLING 15
#define SL_HARNESS_FAULT_H1_SLOW 16
void sl_harness_fault(sl_harness_ctx_t *cx);
void sl_harness_fault_h1(sl_harness_ctx_t *cx, int kind);
/* Count and log fault kind for req. */
void sl_harness_fault_note(sl_req_t *req, int kind);
/* Register sluice_harness_faults_total (once, at config load). */
void sl_harness_faults_metrics(void);

/* HTTP/2 error code for a name ("CANCEL" -> 0x8), or -1. */
int sl_harness_h2_error_code(sl_str_t name);

#endif
