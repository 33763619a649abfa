/* sluice - SPDX-License-Identifier: MIT
 *
 * Private to src/proxy/: the parsed "upstreams" section and route options
 * (config.c), the per-worker upstream state with its keep-alive pools,
 * balancing and passive health (balance.c, upconn.c), active health checks
 * (hcheck.c), the upstream request head builder (headers.c), the request
 * state machine (handler.c) and WebSocket tunnels (tunnel.c).
 *
 * Ownership:
 *   sl_config_t --sections--> px_upstreams_t --> px_upstream_t[] (immutable)
 *   px_upstream_t.ws[worker id] --> px_wstate_t (created and used only by
 *       that worker's thread; freed with the config after the workers end)
 *   px_wstate_t.srv[i].idle --> px_uconn_t (idle keep-alive connections)
 *   a request (px_req_t, in the req pool) --> one px_uconn_t while it runs;
 *       the connection goes back to the idle list or is closed at the end.
 */
#ifndef SL_PROXY_INT_H
#define SL_PROXY_INT_H

#include "../sl.h"
#include "../buf.h"
#include "../req.h"
#include "../h1/h1.h"
#include "../metrics.h"
#include "../cache/cache.h"
#include <ev.h>
#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#define PX_MAX_WORKERS 256            /* config.c caps workers at 256 too */
#define PX_SLOT_THREAD PX_MAX_WORKERS /* ws[] slot of the one non-worker thread (jobs) */
#define PX_MAX_SERVERS 256
#define PX_IN_CAP 65536   /* upstream read buffer per request */
#define PX_HEAD_MAX 32768 /* upstream response head bound */
#define PX_REQ_HEAD_MAX 65536
#define PX_MAX_RESP_HEADERS 128

typedef enum px_balance { PX_RR = 0, PX_LEAST_CONN, PX_HASH } px_balance_t;
/* What the group speaks: HTTP/1.1, or HTTP/2 by prior knowledge (h2c) or
 * over TLS (h2), or over TLS whatever ALPN picks per server (auto). */
typedef enum px_proto { PX_PROTO_H1 = 0, PX_PROTO_H2C, PX_PROTO_H2, PX_PROTO_AUTO } px_proto_t;

typedef struct px_server {
    char *name; /* as written: "127.0.0.1:9000", "unix:/p.sock" */
    char *host; /* for "host": "upstream": "127.0.0.1:9000" or "localhost" */
    struct sockaddr_storage ss;
    socklen_t sslen;
    int weight;
    char *tls_name; /* TLS upstreams: SNI and certificate host check */
} px_server_t;

typedef struct px_timeouts {
    double connect_s, first_byte_s, read_idle_s, send_idle_s, keepalive_idle_s;
} px_timeouts_t;

typedef struct px_health_cfg {
    char *path; /* NULL: active checks off */
    double interval_s, timeout_s;
    int expect; /* status a healthy server answers */
} px_health_cfg_t;

typedef struct px_upstream px_upstream_t;
typedef struct px_wstate px_wstate_t;
typedef struct px_uconn px_uconn_t;

struct px_upstream {
    char *name;
    px_server_t *servers;
    size_t nservers;
    px_balance_t balance;
    px_proto_t proto;
    char *hash_header; /* lower-case; NULL = client address */
    int64_t keepalive; /* idle connections kept per worker (all servers) */
    int64_t max_conns; /* per server per worker */
    int64_t retries;
    int64_t fail_threshold; /* 0 = passive health off */
    double down_s;
    px_timeouts_t to;
    px_health_cfg_t health;
    int total_weight;
    SSL_CTX *tls_ctx; /* NULL: plain TCP (tls.c) */
    int tls_verify;
    px_wstate_t *ws[PX_MAX_WORKERS + 1]; /* per worker, then PX_SLOT_THREAD */
};

typedef struct px_upstreams {
    px_upstream_t *v;
    size_t n;
} px_upstreams_t;

typedef struct px_cidr {
    int family;
    uint8_t addr[16];
    int bits;
} px_cidr_t;

typedef enum px_host_mode { PX_HOST_PASS = 0, PX_HOST_UPSTREAM, PX_HOST_FIXED } px_host_mode_t;

typedef struct px_route {
    px_upstream_t *up;
    char *strip_prefix, *replace_prefix; /* NULL = none */
    px_host_mode_t host_mode;
    char *host_value;
    sl_header_t *set_headers; /* names lower-case */
    size_t nset;
    char **remove_headers; /* lower-case */
    size_t nremove;
    sl_header_t *set_resp_headers;
    size_t nset_resp;
    char **remove_resp_headers;
    size_t nremove_resp;
    px_cidr_t *trusted;
    size_t ntrusted;
    int retry_non_idempotent; /* re-send POST/bodies after a failure (opt-in) */
    int forward_raw_path;     /* upstream gets the path as received, not normalised */
    int request_id;           /* X-Request-Id passed on or made (default on) */
    int traceparent;          /* traceparent passed on or started (default on) */
    sl_cache_route_t *cache;  /* "cache": answered from a zone first, or NULL */
    sl_cache_upstream_t cache_up; /* how the cache reaches this route's upstream */
} px_route_t;

/* ---- per-worker state (balance.c) ---- */

typedef struct px_srvstate {
    px_uconn_t *idle; /* idle keep-alive connections (singly linked) */
    size_t nidle;
    size_t nconns;         /* open connections: busy + idle */
    size_t active;         /* busy connections (least_conn) */
    int64_t fails;         /* consecutive failures */
    double down_until;     /* ev_now() until which the server is skipped */
    int cur_weight;        /* smooth weighted round robin */
    int hc_down;           /* the last active check failed: skipped until one passes */
    struct px_hcheck *hc;  /* the check in flight, or NULL (hcheck.c) */
    struct px_h2conn *h2;  /* HTTP/2 connections to the server (h2up.c) */
    int alpn_h1;           /* "auto": the server chose http/1.1 (learned once) */
    SSL_SESSION *tls_sess; /* offered by the next TLS connection (tls.c) */
    /* Published for a scrape on another worker (metrics.c): written by
     * this worker only, read with sl_counter_get. */
    sl_counter_t m_attempts, m_failures, m_conns, m_idle, m_down;
    sl_counter_t m_lat[SL_M_BUCKETS]; /* response head latency, per bucket */
    sl_counter_t m_lat_ns;
} px_srvstate_t;

struct px_wstate {
    struct ev_loop *loop;
    sl_buf_pool_t *bufpool;
    px_upstream_t *up;
    size_t nidle;      /* across servers, bounded by keep_bound() (upconn.c) */
    size_t busy;       /* busy connections across servers */
    size_t busy_peak;  /* the most busy at once lately ... */
    double peak_at;    /* ... (ev_now when it was reached) */
    ev_timer hc_timer; /* active health checks (hcheck.c) */
    void *in_spare;    /* PX_IN_CAP buffers between requests (px_inbuf_get) */
    size_t nin_spare;
    px_srvstate_t srv[];
};

/* The calling thread's state for up (created on first use): a worker's,
 * or the one bound with sl_proxy_client_bind. */
px_wstate_t *px_wstate_get(px_upstream_t *up);
/* The upstream families of a scrape (metrics.c). */
void px_metrics_source(sl_metrics_text_t *t, const struct sl_config *cfg);
/* Publish a server's pool size and health for the metrics source. */
void px_srv_publish(px_wstate_t *ws, int idx);
void px_wstate_free(px_wstate_t *ws, int live);

/* Pick a server: not in tried[] (bitmap of nservers bits), not down, below
 * max_conns. key/keylen feed the hash policy. Returns the index or -1;
 * *all_down is set when every untried server is marked down (503). */
int px_balance_pick(px_wstate_t *ws, const uint8_t *tried, const char *key, size_t keylen,
                    double now, int *all_down);
/* Passive health: a failure (connect, reset before the response, timeout)
 * or a success (a response head arrived). A failure that marks the server
 * down says so in the log. */
void px_health_fail(px_wstate_t *ws, int idx, double now);
void px_health_ok(px_wstate_t *ws, int idx);
/* Seconds until the first down server comes back (for Retry-After). */
double px_health_retry_after(px_wstate_t *ws, double now);

/* ---- active health checks (hcheck.c) ---- */

/* Start this worker's checks of ws->up (when it has "health"): the first
 * round at once, then every interval_s. Stopped when the worker drains. */
void px_hcheck_start(px_wstate_t *ws);
/* Release checks in flight; the loop may be gone already. */
void px_hcheck_free(px_wstate_t *ws, int live);

/* ---- one HTTP/2 health check (probe.c) ---- */

typedef struct px_probe px_probe_t;
/* status: the final status, 0 with error set on failure. */
typedef void (*px_probe_done_fn)(void *arg, int status, const char *error);
/* GET health.path to server idx of an h2c / h2 / auto group on a new
 * connection; done is called once (maybe before this returns NULL, when
 * the connect cannot start). */
px_probe_t *px_probe_start(px_wstate_t *ws, int idx, px_probe_done_fn done, void *arg);
/* Free without calling done, from px_wstate_free (no loop any more). */
void px_probe_discard(px_probe_t *p, int live);

/* ---- upstream connections (upconn.c) ---- */

struct px_uconn {
    int fd;
    SSL *ssl;    /* TLS upstream, else NULL */
    int hs_want; /* events the TLS handshake waits for (0: the TCP connect) */
    int idx;     /* server index */
    px_wstate_t *ws;
    ev_io io;
    ev_timer timer;
    px_uconn_t *next; /* idle list */
    void *owner;      /* px_req_t while busy, NULL while idle */
    unsigned reused : 1;
    unsigned connecting : 1; /* TCP connect or TLS handshake under way */
    unsigned busy : 1;       /* owned by a request (else on the idle list) */
};

/* An idle connection to server idx, or NULL. The caller owns it. */
px_uconn_t *px_uconn_take_idle(px_wstate_t *ws, int idx);
/* Start a non-blocking connect to server idx. Returns the connection
 * (connecting set, or already connected) or NULL with errno set. */
px_uconn_t *px_uconn_connect(px_wstate_t *ws, int idx);
/* Called on an io event while connecting: finishes the TCP connect, then
 * steps the TLS handshake. 1: ready (connecting cleared); 0: in progress,
 * wait for px_uconn_events(); -1: failed, cause written. */
int px_uconn_progress(px_uconn_t *u, char *cause, size_t cap);
/* The io events a connecting connection waits for. */
int px_uconn_events(const px_uconn_t *u);
/* Give a finished connection back: kept idle when the pool has room,
 * else closed. The io/timer watchers must be stopped by the caller. */
void px_uconn_release(px_uconn_t *u, int reusable);
/* A PX_IN_CAP response buffer from the worker's spares, and back. A
 * malloc/free per request would have glibc give the 64 KiB back to the
 * kernel (madvise) and fault it in again on the next request; spares are
 * kept up to the idle-connection bound. */
uint8_t *px_inbuf_get(px_wstate_t *ws);
void px_inbuf_put(px_wstate_t *ws, uint8_t *p);
/* Close and free without pooling. */
void px_uconn_close(px_uconn_t *u);
/* The same once the loop is gone (no watcher is touched). */
void px_uconn_discard(px_uconn_t *u);

/* ---- attempts (attempt.c): the engine's server choice, shared ---- */

/* One request's way to a server of its upstream group, the same for every
 * user (the proxy handler, WebSocket tunnels): the balance key, the
 * servers already tried, the count of attempts, passive health, and the
 * current attempt's connection with its io and timer watchers. */
typedef struct px_attempt {
    const sl_req_t *req; /* log lines (conn, stream) and the balance key; NULL off the workers */
    const char *key;     /* without a req: the hash policy's key */
    px_upstream_t *up;
    px_wstate_t *ws;
    px_uconn_t *u;    /* the current attempt's connection, or NULL */
    const char *what; /* said after the server in log lines: "" or "websocket: " */
    int attempts;
    int io_events;
    double sent_at; /* ev_now() when the current attempt began */
    uint8_t tried[PX_MAX_SERVERS / 8];
    char cause[128]; /* the last failure, for an answer that has to say why */
} px_attempt_t;

/* req may be NULL (a client off the workers): then key feeds the hash
 * policy and log lines name no connection. */
void px_attempt_init(px_attempt_t *a, const sl_req_t *req, px_upstream_t *up, const char *what);
/* "proxy: upstream "g" server s: <what><cause>" at WARN. */
void px_attempt_log(const px_attempt_t *a, const char *cause);
void px_attempt_set_io(px_attempt_t *a, int events);
void px_attempt_set_timer(px_attempt_t *a, double secs);
/* Close the current connection (not pooled). */
void px_attempt_drop(px_attempt_t *a);
/* A response head came from server idx: its passive health is reset and
 * the time since the attempt began goes to its latency histogram. */
void px_attempt_ok(px_attempt_t *a, int idx);
/* The current server failed this attempt: cause logged, the server
 * marked tried and, when health is set and the connection was not a
 * reused keep-alive one (a stale connection says nothing of the server),
 * counted against its passive health. The caller drops the connection. */
void px_attempt_failed(px_attempt_t *a, const char *cause, int health);
/* Start the next attempt: pick a server by the group's policy and the
 * request's balance key, take an idle connection to it (use_idle) or
 * connect; a connect that fails at once counts as px_attempt_failed and
 * the next server is tried, within up->retries more attempts. Returns 0
 * with a->u set and its watchers initialised (io_cb/timer_cb with data,
 * not started), or the status to answer: 503 (no server up, or every one
 * at max_conns before any attempt) or 502. */
int px_attempt_next(px_attempt_t *a, int use_idle, void (*io_cb)(struct ev_loop *, ev_io *, int),
                    void (*timer_cb)(struct ev_loop *, ev_timer *, int), void *data);
/* A connect to server idx failed at once (errno err): logged, counted
 * for passive health, marked tried. */
void px_attempt_connect_failed(px_attempt_t *a, int idx, int err);
/* Only the choice: a server index, or -503 / -502 as px_attempt_next
 * would answer. The caller counts the attempt. */
int px_attempt_pick(px_attempt_t *a);
/* The same to server idx, chosen by the caller (a health check): one
 * fresh connection, nothing counted against passive health. 0, or 502
 * with a->cause set. */
int px_attempt_to(px_attempt_t *a, int idx, void (*io_cb)(struct ev_loop *, ev_io *, int),
                  void (*timer_cb)(struct ev_loop *, ev_timer *, int), void *data);

/* ---- the client (client.c, public part in proxy.h) ---- */

/* Start an exchange on ws: server >= 0 talks to that server only, with
 * no retry and nothing counted for passive health or logged (a health
 * check); deadline_s > 0 bounds the whole exchange instead of the
 * group's per-phase timeouts. */
typedef struct sl_proxy_client sl_proxy_client_t;
struct sl_proxy_client_cbs;
sl_proxy_client_t *px_client_start(px_wstate_t *ws, int server, double deadline_s, const char *key,
                                   int head_request, const char *log_prefix,
                                   const struct sl_proxy_client_cbs *cbs, void *arg);
/* Free once the loop is gone (worker exit); no callback follows. */
void px_client_discard(sl_proxy_client_t *c);

/* ---- the response reader (reader.c) ---- */

/* Feed it the bytes read; it calls on_head once for the final head (1xx
 * skipped; fields valid only during the call) and on_data for each run of
 * body bytes (content-length, chunked or until EOF). */
/* How a response body is delimited (RFC 9112 6.3): none (HEAD, 204,
 * 304), Content-Length, chunked, or the connection's close. */
typedef enum { PX_BODY_NONE, PX_BODY_LENGTH, PX_BODY_CHUNKED, PX_BODY_CLOSE } px_body_t;
px_body_t px_resp_body(int head_request, const sl_h1_head_t *h);

typedef struct px_reader px_reader_t;
typedef struct px_reader_cbs {
    void (*on_head)(void *arg, int status, const sl_header_t *fields, size_t n);
    void (*on_data)(void *arg, const uint8_t *p, size_t n);
} px_reader_cbs_t;
px_reader_t *px_reader_new(int head_request, const px_reader_cbs_t *cbs, void *arg);
/* Returns 1 when the response is complete, 0 for more, SL_EINVAL with
 * *err set on a bad head or body. */
int px_reader_feed(px_reader_t *r, const uint8_t *p, size_t n, const char **err);
/* At EOF: 1 when the response is complete (a body delimited by the close
 * counts), else 0. */
int px_reader_eof(const px_reader_t *r);
void px_reader_free(px_reader_t *r);

/* ---- upstream TLS (tls.c) ---- */

/* Parse "tls" of an upstream (servers already parsed): builds tls_ctx and
 * every server's tls_name. */
int px_tls_parse(json_t *obj, const char *path, px_upstream_t *u, char *err, size_t errlen);
void px_tls_dispose(px_upstream_t *u);
/* An SSL in connect state on fd for server idx (SNI, host check, session
 * to resume), or NULL. */
SSL *px_tls_new(px_wstate_t *ws, int idx, int fd);
/* 1 done; 0 wait for *events; -1 failed with the OpenSSL / verify reason. */
int px_tls_handshake(SSL *ssl, int *events, char *cause, size_t cap);
/* read(2) / write(2) over ssl when not NULL: -1 with errno EAGAIN means
 * try again on the next event. */
ssize_t px_io_read(int fd, SSL *ssl, void *p, size_t n);
ssize_t px_io_write(int fd, SSL *ssl, const void *p, size_t n);
/* Decrypted bytes wait inside ssl: no socket event will announce them. */
int px_io_pending(SSL *ssl);

/* ---- the upstream request head (headers.c) ---- */

/* The calling thread's scratch of PX_REQ_HEAD_MAX bytes to build a request
 * head in (valid until the thread's next build): callers copy what they
 * keep, instead of a 64 KiB allocation per request. */
char *px_head_scratch(void);
/* Replace *head with a copy of buf[0..n) (built in the scratch) to be
 * written from offset 0. */
void px_head_set(char **head, size_t *len, size_t *off, const char *buf, size_t n);
/* What a request head is built from. body: 0 none, 1 content-length,
 * 2 chunked (HTTP/1.1) or DATA frames (HTTP/2). */
typedef struct px_head_in {
    const sl_req_t *req;
    const px_route_t *rt;
    const px_server_t *srv;
    int body;
    const char *request_id, *traceparent;
} px_head_in_t;
/* Where HTTP/2 fields go: nv has room for cap (px_build_request_nv_max)
 * entries; tls picks :scheme; protocol, when set, is the extended
 * CONNECT :protocol. */
typedef struct px_nv_out {
    nghttp2_nv *nv;
    size_t cap;
    int tls;
    sl_str_t protocol;
} px_nv_out_t;
/* "METHOD target HTTP/1.1\r\n...\r\n\r\n" into out (cap bytes). Returns
 * the length, or SL_ETOOBIG when it does not fit. */
ssize_t px_build_request(const px_head_in_t *in, char *out, size_t cap);
/* The same request as HTTP/2 fields into h2->nv, without the HTTP/1.1
 * framing fields; values put together here (the path, forwarding fields)
 * go into buf. Returns the field count or SL_ETOOBIG. nghttp2 copies
 * everything at submit; until then req and buf must stay as they are. */
ssize_t px_build_request_nv(const px_head_in_t *in, const px_nv_out_t *h2, char *buf, size_t cap);
size_t px_build_request_nv_max(const px_head_in_t *in);
/* The target sent upstream (prefix rules applied) into out; returns the
 * length or SL_ETOOBIG. */
ssize_t px_rewrite_target(const sl_req_t *req, const px_route_t *rt, char *out, size_t cap);
/* Trailer fields that never cross the proxy (hop-by-hop, framing, host). */
int px_trailer_dropped(sl_str_t name);
/* The last chunk and the trailer section of a chunked HTTP/1.1 body
 * ("0\r\n" fields "\r\n") into out; the length or SL_ETOOBIG. */
ssize_t px_build_trailers(const sl_headers_t *t, char *out, size_t cap);
/* Response header filter: 1 when the field must not be passed to the
 * client (hop-by-hop, named in connection, removed by the route). */
int px_resp_header_dropped(const px_route_t *rt, sl_str_t name, sl_str_t connection);
/* Request hop-by-hop test, including fields named in connection. */
int px_is_hop_header(sl_str_t name, sl_str_t connection);
/* Client IP ("1.2.3.4" or "::1") from an "ip:port" / "[v6]:port" peer
 * string into out. */
void px_peer_ip(const char *peer, char *out, size_t cap);
int px_cidr_parse(const char *s, px_cidr_t *c);
int px_ip_trusted(const px_route_t *rt, const char *ip);

/* ---- HTTP/2 upstreams (h2up.c) ---- */

/* Forward req over one of the worker's multiplexed HTTP/2 connections to
 * a server of rt's group (its protocol is h2c or h2). */
void px_h2_start(sl_req_t *req, const px_route_t *rt);
/* Close the worker's HTTP/2 connections to every server of ws (the loop is
 * gone: no watcher is touched). */
void px_h2_discard(px_wstate_t *ws, int live);

/* ---- the request handler (handler.c) and WebSocket tunnels (tunnel.c) ---- */

/* Forward req to rt's upstream (HTTP/1.1 or HTTP/2): a request the
 * cache does not answer, and the cache's fills. */
void px_forward(sl_req_t *req, void *rt);
/* Forward req over HTTP/1.1: on_req's path, also taken by an "auto"
 * request that learned its server speaks only HTTP/1.1; pending holds the
 * body bytes that arrived meanwhile (moved, may be NULL), fin whether the
 * body is complete. */
void px_h1_start(sl_req_t *req, const px_route_t *rt, sl_buf_t *pending, int fin);

/* X-Request-Id passed on or made; traceparent passed on or started; each
 * left empty when the route turns it off (the client's then passes as an
 * ordinary field). Both buffers must live as long as req: the access log
 * reads them (req->log_request_id, log_trace_id). */
void px_make_ids(sl_req_t *req, const px_route_t *rt, char request_id[33],
                 char traceparent[64]);
/* Request-body chunks to buffer: the protocol's body window plus slack. */
size_t px_body_chunks(const sl_req_t *req);
/* A WebSocket handshake attempt (h1 Upgrade: websocket, h2 CONNECT with a
 * :protocol), valid or not: tunnel.c answers it. */
int px_is_ws_request(const sl_req_t *req);
void px_tunnel_start(sl_req_t *req, const px_route_t *rt);

/* ---- config (config.c) ---- */

px_upstream_t *px_upstream_find(const px_upstreams_t *ups, const char *name);
int px_route_configure(json_t *route, const char *path, void **state, char *err, size_t errlen);
void px_route_free(void *state);

#endif
