/* sluice - SPDX-License-Identifier: MIT
 *
 * The request model (sl_req_t) and the response sink shared by HTTP/1.1 and
 * HTTP/2. A protocol adapter builds an sl_req_t, hands it to the router and
 * never learns which handler answered; the handler answers through the
 * sl_resp_* calls below, which dispatch to the protocol's sl_req_ops_t.
 * Handlers never see the protocol.
 *
 * Ownership: the protocol owns the sl_req_t (one per HTTP/2 stream or
 * HTTP/1.1 exchange) and its pool. The handler owns req->hdata and must
 * release it in its on_close callback, which the protocol calls exactly
 * once when the request is finished or aborted; after on_close returns the
 * req is gone.
 *
 * Response flow (a pull, as in h2o's generator contract):
 *   req->res.status = 200; sl_resp_header_add(...);
 *   sl_resp_send(req, data, len, final)   first call sends the head
 *   ... wait for cbs->on_proceed before the next sl_resp_send ...
 * The bytes passed to sl_resp_send must stay valid until on_proceed (or
 * on_close) is called: the protocol copies them at its own pace (flow
 * control). At most one send is outstanding per request.
 *
 * Request body flow (credit): the protocol calls cbs->on_body with bytes
 * valid only during the call; the handler calls sl_req_consume(req, n) once
 * it has really dealt with n bytes (sent them on, hashed them). Unconsumed
 * bytes are bounded by the protocol (HTTP/2 stream window, HTTP/1.1 body
 * window): past that it stops reading. on_body(..., fin=1) marks the end.
 */
#ifndef SL_REQ_H
#define SL_REQ_H

#include "sl.h"
#include "pool.h"

typedef struct sl_req sl_req_t;
typedef struct sl_conn sl_conn_t;
typedef struct sl_route sl_route_t;

typedef enum sl_proto_kind {
    SL_PROTO_H1 = 1,
    SL_PROTO_H2 = 2,
    SL_PROTO_H3 = 3,
} sl_proto_kind_t;

typedef struct sl_header {
    sl_str_t name; /* lower-case */
    sl_str_t value;
} sl_header_t;

typedef struct sl_headers {
    sl_header_t *v;
    size_t n, cap;
} sl_headers_t;

/* What a handler may be told. Each pointer may be NULL. */
typedef struct sl_handler_cbs {
    /* Request body bytes; data valid only during the call. fin=1 on the
     * last call (len may be 0). Never called after on_close. */
    void (*on_body)(sl_req_t *req, const uint8_t *data, size_t len, int fin);
    /* The last sl_resp_send has been taken; the handler may send again. */
    void (*on_proceed)(sl_req_t *req);
    /* The request is over: err 0 after a complete response, SL_ECANCELED
     * when the client went away or the stream was reset. Release hdata. */
    void (*on_close)(sl_req_t *req, int err);
    /* Optional: the route's auth withdrew the client's access while the
     * response streams (docs/auth.md). End it the way its protocol does
     * (SSE: a last "event: error"; WebSocket: close 1008). NULL: the
     * stream is reset (HTTP/1.1: the connection is closed). */
    void (*on_revoke)(sl_req_t *req, const char *why);
} sl_handler_cbs_t;

/* A connection-level misbehaviour a test endpoint asks of the protocol
 * (the harness's fault endpoints, docs/harness.md): never used to answer
 * real traffic. */
typedef enum sl_fault_kind {
    SL_FAULT_GOAWAY = 1, /* HTTP/2: GOAWAY(code, last_stream_id); immediate: then close */
    SL_FAULT_SETTINGS,   /* HTTP/2: a SETTINGS frame with settings[] now */
    SL_FAULT_RAW,        /* HTTP/1.1: bytes written as they are, no response framing */
    SL_FAULT_PADDING,    /* HTTP/2: code bytes of padding on this stream's frames */
    SL_FAULT_PING_ACK,   /* HTTP/2: the next count PING ACKs dropped, or delay_ms late */
} sl_fault_kind_t;

typedef struct sl_fault {
    sl_fault_kind_t kind;
    uint32_t code;
    int32_t last_stream_id; /* < 0: the last stream the server took */
    int immediate;
    const void *data; /* RAW */
    size_t len;
    const uint32_t (*settings)[2]; /* SETTINGS: (id, value) pairs */
    size_t nsettings;
    uint32_t count, delay_ms; /* PING_ACK: how many; 0 ms: dropped */
} sl_fault_t;

/* Filled in by each protocol. Called only through the sl_resp_* wrappers. */
typedef struct sl_req_ops {
    int (*send)(sl_req_t *req, const uint8_t *data, size_t len, int final);
    int (*informational)(sl_req_t *req, int status, const sl_headers_t *hdrs);
    void (*reset)(sl_req_t *req, uint32_t h2_error_code);
    void (*consume)(sl_req_t *req, size_t n);
    /* Optional: request that the protocol no longer delivers body (sink
     * finished early); may be NULL. */
    /* Optional zero-copy body (cleartext HTTP/1.1; NULL elsewhere): like
     * send() for len bytes of fd from off, which the handler keeps open
     * until on_proceed / on_close. Only with a known res.content_length,
     * not for HEAD. Returns SL_EINVAL, taking nothing, when this exchange
     * cannot (TLS, no length): the handler then uses send(). */
    int (*sendfile)(sl_req_t *req, int fd, int64_t off, size_t len, int final);
    /* Optional: carry out f (sl_fault_t). 0, SL_EINVAL when this protocol
     * has no such thing (the caller answers), SL_ECLOSED when gone. After
     * RAW the response is the handler's bytes: it ends it with
     * sl_resp_reset (the connection closes once they are out). */
    int (*fault)(sl_req_t *req, const sl_fault_t *f);
} sl_req_ops_t;

typedef struct sl_req_tls_info {
    const char *version; /* "TLSv1.3" or NULL for cleartext */
    const char *alpn;    /* "h2", "http/1.1" or NULL */
    const char *sni;     /* server name sent by the client or NULL */
    /* A verified client certificate (listener tls.verify_client): SHA-256
     * of its DER (hex) and its subject (RFC 2253), else NULL. */
    const char *client_fp, *client_subject;
} sl_req_tls_info_t;

struct sl_req {
    sl_pool_t pool; /* per-request arena, disposed after on_close */

    /* --- request, filled by the protocol, read-only for handlers --- */
    sl_proto_kind_t proto;
    int version_minor; /* HTTP/1.x minor version; 0 for HTTP/2 */
    int32_t stream_id; /* HTTP/2 stream id; HTTP/1.1 exchange number */
    int worker_id;
    sl_str_t method;
    sl_str_t target;    /* raw request-target as received (path + query) */
    sl_str_t path;      /* target up to '?', normalised by the router (uri.h) */
    sl_str_t raw_path;  /* the path as received, before normalisation */
    sl_str_t query;     /* after '?', without it; empty when none */
    sl_str_t authority; /* :authority or Host */
    sl_str_t scheme;    /* "http" or "https" */
    sl_str_t protocol;  /* HTTP/2 extended CONNECT :protocol, else empty */
    sl_headers_t headers;
    /* Request trailers (HTTP/2 trailing HEADERS, HTTP/1.1 chunked trailer
     * section), complete once body_done is set; pseudo-fields never. */
    sl_headers_t trailers;
    int64_t content_length; /* -1 when unknown (chunked / HTTP/2 without it) */
    /* Request-body bytes the protocol may deliver before the handler
     * consumes any (the HTTP/2 or HTTP/3 stream window, HTTP/1.1's
     * limits.body_window_bytes), set by the protocol: what a handler that
     * buffers the body sizes its buffer by (sl_req_body_chunks). */
    size_t body_window;
    unsigned is_head : 1;
    unsigned expect_continue : 1;
    unsigned body_done : 1; /* the whole request body has been delivered */
    sl_req_tls_info_t tls;
    const char *peer; /* "ip:port" of the client */
    const sl_route_t *route;

    /* --- response, written by the handler --- */
    struct {
        int status;
        sl_headers_t headers;
        sl_headers_t trailers;  /* sent after final data when non-empty */
        int64_t content_length; /* -1: unknown (chunked / no length) */
        /* Set by a handler whose body buffers are its own (not shared
         * with another request): the protocol may overwrite the
         * SL_RESP_SCRATCH bytes before each pointer it is sent, and the
         * bytes already sent, until on_proceed. HTTP/2 over TLS writes a
         * DATA frame's header there and encrypts frame and data in one
         * piece, without copying the body first. */
        unsigned body_scratch : 1;
        /* Bit i: headers.v[i] came from SL_RESP_HEADER_PLAIN, so the
         * protocols send it as it is (fields.c checks the others). */
        uint32_t plain;
    } res;

    /* --- handler attachment --- */
    const sl_handler_cbs_t *cbs;
    void *hdata;

    /* --- protocol side --- */
    const sl_req_ops_t *ops;
    void *pdata; /* protocol's stream / exchange object */
    sl_conn_t *conn;
    /* A request no connection carries (a cache fill, src/cache/): the
     * config snapshot it runs on, held by its owner. NULL otherwise. */
    const struct sl_config *cfg;
    uint64_t start_ns;
    uint64_t bytes_in, bytes_out; /* body bytes, for the access log */
    /* Identifiers the access log shows when a handler knows them
     * (sl_req_note copies them into the pool). */
    sl_str_t log_request_id, log_trace_id, log_job_id;
    sl_str_t log_auth;  /* route auth's copied fields, "name=value ..." */
    sl_str_t log_cache; /* what the HTTP cache did: "hit", "miss", ... (static) */
    unsigned head_sent : 1;
    unsigned final_sent : 1;
};

#define SL_RESP_SCRATCH 16

/* Fill req->tls.client_fp / client_subject from c (protocols call it). */
void sl_req_set_client_cert(sl_req_t *req, const char *client_cert);

/* Copy s into req's pool as *field (one of the log_* fields). */
void sl_req_note(sl_req_t *req, sl_str_t *field, const char *s, size_t n);

/* The config snapshot req runs on: its connection's, or req->cfg. */
const struct sl_config *sl_req_config(const sl_req_t *req);

/* Called by protocols: set up / tear down the common parts of a req. */
void sl_req_init(sl_req_t *req, sl_proto_kind_t proto, sl_conn_t *conn);
void sl_req_dispose(sl_req_t *req);

/* RFC 9110 7.6.1 / RFC 9113 8.2.2: a field that describes one hop, not
 * the message (connection, keep-alive, proxy-connection, te,
 * transfer-encoding, upgrade, compared case-insensitively): dropped when a
 * message crosses to another connection or protocol. Callers add what
 * their hop also owns (content-length, fields named in Connection, ...). */
int sl_field_is_connection_specific(sl_str_t name);


/* Header list helpers (copies go into req->pool). */
void sl_headers_add(sl_pool_t *pool, sl_headers_t *h, const char *name, size_t nlen,
                    const char *value, size_t vlen);
/* The same without copies: name and value must live as long as pool. */
void sl_headers_add_ref(sl_pool_t *pool, sl_headers_t *h, sl_str_t name, sl_str_t value);
/* First header with this (lower-case) name, or NULL. */
const sl_header_t *sl_headers_find(const sl_headers_t *h, const char *name);
const sl_header_t *sl_req_header(const sl_req_t *req, const char *name);

/* Response side, for handlers. */
void sl_resp_header_add(sl_req_t *req, const char *name, const char *value);
void sl_resp_header_addn(sl_req_t *req, const char *name, size_t nlen, const char *value,
                         size_t vlen);
/* Like sl_resp_header_addn but without copying name or value: the caller
 * guarantees both stay valid and unchanged until the request ends (string
 * literals, route state, a cache entry the request holds a ref on). */
void sl_resp_header_add_ref(sl_req_t *req, const char *name, size_t nlen, const char *value,
                            size_t vlen);
/* sl_resp_header_add_ref for a field the response head sends without a
 * look: the name is a literal (the macro refuses anything else) in lower
 * case and is none of the fields the head adds or drops itself (date,
 * server, content-length, the connection-specific ones). A cached file's
 * validators and type, on every request. */
#define SL_RESP_HEADER_PLAIN(req, lit, ...) /* ...: value, its length */                           \
    sl_resp_header_add_plain((req), "" lit, sizeof(lit) - 1, __VA_ARGS__)
void sl_resp_header_add_plain(sl_req_t *req, const char *name, size_t nlen, const char *value,
                              size_t vlen);
static inline int sl_resp_header_is_plain(const sl_req_t *req, size_t i)
{
    return i < 32 && (req->res.plain >> i & 1);
}
void sl_resp_trailer_add(sl_req_t *req, const char *name, const char *value);

/* Send body bytes (see the flow above). The first call sends the response
 * head. final=1 ends the response (len may be 0). Returns 0 or SL_ECLOSED
 * when the stream is already gone (on_close will follow or has run). */
int sl_resp_send(sl_req_t *req, const void *data, size_t len, int final);
/* sl_req_ops_t.sendfile through the same rules as sl_resp_send; SL_EINVAL
 * (nothing taken, use sl_resp_send) where the protocol cannot. */
static inline int sl_resp_sendfile(sl_req_t *req, int fd, int64_t off, size_t len, int final)
{
    if (!req->ops->sendfile || req->final_sent)
        return SL_EINVAL;
    req->final_sent = final ? 1 : 0;
    int r = req->ops->sendfile(req, fd, off, len, final);
    if (r == SL_EINVAL)
        req->final_sent = 0;
    return r;
}
/* Why a response is aborted (sl_resp_reset): RFC 9113 error codes, sent
 * as such in RST_STREAM on HTTP/2; HTTP/1.1 closes the connection. */
#define SL_RESET_NO_ERROR 0x0
#define SL_RESET_PROTOCOL_ERROR 0x1
#define SL_RESET_INTERNAL_ERROR 0x2
#define SL_RESET_REFUSED_STREAM 0x7
#define SL_RESET_CANCEL 0x8
#define SL_RESET_ENHANCE_YOUR_CALM 0xb

/* sl_req_ops_t.fault, or SL_EINVAL where the protocol has none. */
static inline int sl_resp_fault(sl_req_t *req, const sl_fault_t *f)
{
    return req->ops->fault ? req->ops->fault(req, f) : SL_EINVAL;
}

/* A 1xx response (100 is handled by the protocol; use for 103). */
int sl_resp_informational(sl_req_t *req, int status, const sl_headers_t *hdrs);
/* Abort the response: RST_STREAM with h2_error_code (SL_RESET_*) on
 * HTTP/2, connection abort on HTTP/1.1. on_close(SL_ECANCELED) follows. */
void sl_resp_reset(sl_req_t *req, uint32_t h2_error_code);
/* Whole response in one go: status, content-type, body (copied into the
 * pool), content-length set. */
int sl_resp_simple(sl_req_t *req, int status, const char *content_type, const void *body,
                   size_t len);
/* JSON error body {"error": msg, "status": N}. */
int sl_resp_error(sl_req_t *req, int status, const char *msg);

/* "https" when the connection the request came on is TLS, else "http":
 * what forwarding fields say, whatever the client's :scheme claims. */
static inline sl_str_t sl_req_conn_scheme(const sl_req_t *req)
{
    return req->tls.version ? SL_STR("https") : SL_STR("http");
}

/* Buffer chunks (SL_BUF_CHUNK_SIZE) that hold req->body_window bytes
 * unconsumed, plus two of slack for a read that straddles the bound
 * (65536 bytes when the protocol set no window). */
size_t sl_req_body_chunks(const sl_req_t *req);

/* Give request-body credit back (see above). */
void sl_req_consume(sl_req_t *req, size_t n);
/* An on_body that reads and drops the request body (credit returned at
 * once; the protocols' body bounds still apply), and a callback set with
 * only that, for handlers that answer without reading it. */
void sl_req_discard_body(sl_req_t *req, const uint8_t *data, size_t len, int fin);
extern const sl_handler_cbs_t sl_req_discard_cbs;
/* The value of cookie name in the request's Cookie fields (RFC 6265
 * cookie-string "a=1; b=2"; HTTP/2 crumbs were joined with "; "): 0 and
 * *out, or SL_EINVAL when absent. */
int sl_req_cookie(const sl_req_t *req, const char *name, sl_str_t *out);

/* The address of a peer string ("ip:port" or "[v6]:port", req->peer)
 * without its port or brackets; a view into peer. */
sl_str_t sl_peer_ip(const char *peer);

/* Whether the request carries "Authorization: Bearer <token>" (compared
 * in constant time). */
int sl_req_bearer_is(const sl_req_t *req, const char *token);

/* "HTTP/1.0", "HTTP/1.1", "HTTP/2" or "HTTP/3": what the access log and
 * the harness report. */
const char *sl_req_proto_name(const sl_req_t *req);

/* Reason phrase for a status code ("OK"); "" when not known. */
const char *sl_status_reason(int status);

#endif
