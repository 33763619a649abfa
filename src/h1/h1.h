/* sluice - SPDX-License-Identifier: MIT
 *
 * HTTP/1.1 (RFC 9112): a strict, resumable, socket-free message parser for
 * requests and responses (shared with the proxy's upstream client) and the
 * server-side connection protocol (keep-alive, pipelining, chunked bodies,
 * 100-continue, h2c upgrade and prior-knowledge hand-off to HTTP/2).
 */
#ifndef SL_H1_H
#define SL_H1_H

#include "../sl.h"
#include "../req.h"
#include "../conn.h"

/* Start serving HTTP/1.1 on c; data/len are bytes already read (may be 0).
 * A cleartext conn whose first bytes are the HTTP/2 preface is handed to
 * HTTP/2 when the listener allows h2c. */
int sl_h1_conn_start(sl_conn_t *c, const uint8_t *data, size_t len);

extern const sl_proto_t sl_h1_proto;

/* ---- parser ---- */

typedef enum sl_h1_parse_status {
    SL_H1_OK = 0,         /* head complete; *consumed set */
    SL_H1_INCOMPLETE = 1, /* need more bytes */
    SL_H1_NOT_HTTP = 2,   /* the request line names no HTTP version: not HTTP/1.x at all */
    SL_H1_BAD = 400,      /* malformed / smuggling attempt */
    SL_H1_URI_TOO_LONG = 414,
    SL_H1_HEADERS_TOO_LARGE = 431,
    SL_H1_BAD_VERSION = 505,
    SL_H1_NOT_IMPLEMENTED = 501, /* unknown transfer-coding */
} sl_h1_parse_status_t;

typedef struct sl_h1_limits {
    size_t max_uri;     /* request-target bytes */
    size_t max_head;    /* start line + headers */
    size_t max_headers; /* header field count */
} sl_h1_limits_t;

/* A parsed message head. Strings point into the input buffer. */
typedef struct sl_h1_head {
    sl_str_t method, target; /* requests */
    int status;              /* responses */
    sl_str_t reason;
    int version_minor;    /* 0 or 1 */
    sl_header_t *headers; /* caller-provided array */
    size_t nheaders, max_headers;
    int64_t content_length;  /* -1 when absent */
    unsigned chunked : 1;    /* Transfer-Encoding: chunked (final coding) */
    unsigned keep_alive : 1; /* per version and Connection */
    unsigned expect_continue : 1;
    unsigned upgrade : 1;   /* Connection: upgrade + Upgrade present */
    sl_str_t host;          /* Host header value */
    sl_str_t upgrade_proto; /* Upgrade header value */
    const char *error;      /* reason on failure, for the log */
} sl_h1_head_t;

/* Parse one request head from buf[0..len). Returns SL_H1_OK with
 * *consumed = head length, SL_H1_INCOMPLETE, or an error status. Refuses:
 * Content-Length with Transfer-Encoding, duplicate/invalid Content-Length,
 * obs-fold, bare CR, bare LF in the start line, invalid token characters,
 * whitespace before ':', missing Host on HTTP/1.1, versions other than 1.0/1.1. */
sl_h1_parse_status_t sl_h1_parse_request(const uint8_t *buf, size_t len, const sl_h1_limits_t *lim,
                                         sl_h1_head_t *head, size_t *consumed);
/* Same for a response head (upstream side). */
sl_h1_parse_status_t sl_h1_parse_response(const uint8_t *buf, size_t len, const sl_h1_limits_t *lim,
                                          sl_h1_head_t *head, size_t *consumed);

/* Resumable chunked-body decoder. */
typedef struct sl_h1_chunked {
    int state;
    uint64_t remaining; /* bytes left in the current chunk */
    size_t ext_bytes;   /* bytes of chunk-ext / trailer seen (bounded) */
    size_t max_ext;
    /* Set by the caller to keep the trailer fields (names lower-cased,
     * values without OWS, NUL-terminated) in *trailers, with memory from
     * pool; left NULL they are validated and dropped. */
    sl_headers_t *trailers;
    sl_pool_t *pool;
    char *tr;      /* the trailer section so far: max_ext bytes from pool */
    size_t tr_len, tr_line;
    unsigned done : 1;
} sl_h1_chunked_t;

void sl_h1_chunked_init(sl_h1_chunked_t *d, size_t max_ext_bytes);
/* Decode from in[0..len): calls out(arg, data, n) for each run of body
 * bytes (pointing into in). Returns bytes consumed (>= 0; stops after the
 * terminating chunk and trailers, setting d->done) or SL_EINVAL on bad
 * syntax / SL_ETOOBIG when extensions or trailers exceed the bound. */
ssize_t sl_h1_chunked_decode(sl_h1_chunked_t *d, const uint8_t *in, size_t len,
                             void (*out)(void *arg, const uint8_t *p, size_t n), void *arg);

#endif
