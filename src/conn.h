/* sluice - SPDX-License-Identifier: MIT
 *
 * sl_conn: one accepted client connection, owned by its worker. The conn
 * does the socket and TLS I/O and the timers; a protocol (HTTP/1.1 or
 * HTTP/2, sl_proto_t) turns bytes into requests. Input is handed to the
 * protocol as it is read; output is queued in c->out (an sl_buf bounded by
 * config) and flushed with writev / SSL_write when the socket is writable.
 *
 * Lifetime: a protocol never frees the conn. It returns SL_ECLOSED from a
 * callback, or calls sl_conn_close(), and the conn frees itself (after the
 * protocol's on_close) at a safe point in the event loop.
 */
#ifndef SL_CONN_H
#define SL_CONN_H

#include "sl.h"
#include "buf.h"
#include "log.h"
#include "climit.h"
#include "tls_bio.h"
#include <ev.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

typedef struct sl_conn sl_conn_t;
typedef struct sl_listener_cfg sl_listener_cfg_t;
struct sl_config;

/* A worker's connections and what they share. The worker embeds one
 * (w->conns) and points it at its loop, config and buffer pool; conn code
 * needs nothing else of the worker, so conn stays below it. */
typedef struct sl_conn_table {
    struct ev_loop *loop;
    const struct sl_config *cfg; /* current: new connections take it */
    sl_buf_pool_t *bufpool;
    int worker_id;
    int draining; /* set by the worker: finish gracefully, accept nothing */
    uint64_t next_id;
    sl_conn_t *live; /* doubly linked */
    size_t nlive;
    sl_conn_t *closing;  /* freed at the next safe point */
    sl_conn_t *flushing; /* flushed before the loop blocks */
} sl_conn_table_t;

/* What a protocol adapter provides. Return values: 0 to go on, SL_ECLOSED
 * when the conn must close now (the conn then calls on_close). */
typedef struct sl_proto {
    const char *name; /* "h1", "h2" */
    /* Bytes read from the peer (already decrypted). Must consume all. */
    int (*on_read)(sl_conn_t *c, const uint8_t *data, size_t len);
    /* The output queue drained below its low mark (or emptied): produce
     * more output if there is any. */
    int (*on_writable)(sl_conn_t *c);
    /* The peer closed its side (EOF) while no error happened. */
    int (*on_eof)(sl_conn_t *c);
    /* The conn's protocol timer (sl_conn_timer_set) fired. */
    int (*on_timeout)(sl_conn_t *c);
    /* The worker is draining: finish gracefully (GOAWAY, Connection: close). */
    int (*on_drain)(sl_conn_t *c);
    /* Optional: timeouts.reload_drain_s after a reload made the conn's
     * config old. Stop taking new requests without ending those open
     * (HTTP/2: GOAWAY). HTTP/1.1 needs none: it asks sl_conn_is_retiring
     * before keeping a connection open, so it closes after its next
     * response (race-free for keep-alive clients). */
    int (*on_retire)(sl_conn_t *c);
    /* The conn is going away; free protocol state (abort open requests). */
    void (*on_close)(sl_conn_t *c);
} sl_proto_t;

struct sl_conn {
    sl_log_tag_t tag; /* first: sl_log names the conn through it (id, "ip:port") */
    int fd;
    SSL *ssl;
    sl_conn_table_t *table; /* its worker's */
    const struct sl_config *cfg; /* the snapshot it was accepted on (held) */
    const sl_listener_cfg_t *lcfg;
    ev_io rio, wio;
    ev_timer timer;
    sl_buf_t out;        /* bounded by limits.conn_out_bytes */
    sl_tls_bio_io_t tls; /* TLS only: the socket and the encrypted records for writev */
    const sl_proto_t *proto;
    void *pdata;
    struct sockaddr_storage peer_addr;
    const char *alpn; /* negotiated ALPN or NULL (static string) */
    const char *tls_version;
    char *sni;
    char *client_cert; /* sl_tls_client_identity: "fp\0subject\0", NULL = none */
    struct conn_pp *pp; /* PROXY protocol header still being read, or NULL */
    sl_climit_key_t climit; /* counted against limits.conns_per_ip (climit_held) */
    unsigned handshaking : 1;
    unsigned read_paused : 1; /* protocol asked to stop reading */
    unsigned close_after_flush : 1;
    unsigned closing : 1; /* freed at the next safe point */
    unsigned eof : 1;
    unsigned in_callback : 1;
    unsigned in_flush_list : 1;
    unsigned lingering : 1;    /* closed with flush: only output remains */
    unsigned proto_closed : 1; /* proto->on_close has run */
    unsigned want_write : 1;   /* TLS wants the socket writable */
    unsigned discarding : 1;   /* lingering close: output done, reading to EOF */
    unsigned retired : 1;      /* sl_conn_retire has run */
    unsigned climit_held : 1;
    double timer_secs;
    struct sl_conn *next_closing;
    struct sl_conn *next_flush;
    struct sl_conn *prev, *next; /* table->live */
};

/* Queue output. Returns 0, or SL_EAGAIN when the whole of len does not fit
 * (nothing queued): wait for on_writable. */
int sl_conn_write(sl_conn_t *c, const void *data, size_t len);
/* The same bytes, queued without the plaintext copy when it can be: on a
 * TLS connection with nothing plaintext queued ahead, p is encrypted
 * straight from the caller's buffer into the record queue; what that does
 * not take is queued as sl_conn_write does. The caller has checked
 * sl_conn_out_space. Returns 0, SL_EAGAIN (nothing queued: the socket is
 * full, wait for on_writable) or SL_ECLOSED. */
int sl_conn_write_direct(sl_conn_t *c, const void *p, size_t len);
/* Bytes that may still be queued. */
size_t sl_conn_out_space(const sl_conn_t *c);
/* True when the protocol should stop producing until on_writable. While it
 * is false at least SL_CONN_OUT_SLACK bytes can still be queued, so a
 * protocol may queue one whole frame (<= 32 KiB) after checking it. */
#define SL_CONN_OUT_SLACK (2 * SL_BUF_CHUNK_SIZE)
int sl_conn_out_is_high(const sl_conn_t *c);
/* Arrange a flush at the end of the current loop iteration. Cheap. */
void sl_conn_flush_soon(sl_conn_t *c);

/* Stop / restart reading from the peer (backpressure on input). */
void sl_conn_pause_read(sl_conn_t *c);
void sl_conn_resume_read(sl_conn_t *c);

/* (Re)arm the protocol timer to fire after secs (0 stops it). Uses
 * ev_timer_again, so re-arming on every byte is cheap. */
void sl_conn_timer_set(sl_conn_t *c, double secs);

/* Close: with flush=1, queued output is written first (bounded by the
 * linger timeout); the proto's on_close runs once, then the conn is freed
 * at a safe point. Safe to call from any callback. */
void sl_conn_close(sl_conn_t *c, int flush);

/* Protocol entry points, set once by main.c (core cannot include h1/h2):
 * called after the TLS handshake (by ALPN) or on accept for cleartext. */
typedef int (*sl_conn_start_fn)(sl_conn_t *c, const uint8_t *data, size_t len);
void sl_conn_set_starters(sl_conn_start_fn h1, sl_conn_start_fn h2);

/* Called by the worker: take ownership of an accepted fd. ssl_ctx NULL for
 * cleartext. Returns the conn or NULL (fd closed). */
sl_conn_t *sl_conn_new(sl_conn_table_t *t, int fd, const sl_listener_cfg_t *lcfg, SSL_CTX *ssl_ctx,
                       const struct sockaddr *peer, socklen_t plen);
/* A connection that owns no socket: a QUIC connection, whose packets its
 * protocol receives and sends through the worker's UDP socket (src/h3/).
 * It is counted, limited (limits.conns_per_ip), drained and retired like
 * any other; the protocol is set with sl_conn_set_proto and closes it with
 * sl_conn_close(c, 0). NULL when the client is over its limit. */
sl_conn_t *sl_conn_new_datagram(sl_conn_table_t *t, const sl_listener_cfg_t *lcfg,
                                const struct sockaddr *peer, socklen_t plen);
/* Worker internals: flush queued output of listed conns; free closed conns. */
void sl_conn_flush_pending(sl_conn_table_t *t);
void sl_conn_reap(sl_conn_table_t *t);
/* Begin a graceful close for the worker's drain (proto->on_drain). */
void sl_conn_drain(sl_conn_t *c);
/* A reload made the conn's snapshot old and its grace is over
 * (proto->on_retire, once). A conn still in its handshake is skipped. */
void sl_conn_retire(sl_conn_t *c);

/* Switch the protocol (h1 -> h2 on "Upgrade: h2c" or a preface). The old
 * protocol's state must already be released by the caller. */
void sl_conn_set_proto(sl_conn_t *c, const sl_proto_t *p, void *pdata);

/* The conn's configuration snapshot (limits, timeouts, routes): the one
 * current when it was accepted, for its whole life. */
const struct sl_config *sl_conn_config(const sl_conn_t *c);
/* True once a reload made that snapshot old: keep no connection open
 * past the exchange in progress. */
int sl_conn_is_retiring(const sl_conn_t *c);
int sl_conn_worker_id(const sl_conn_t *c);
int sl_conn_is_draining(const sl_conn_t *c);
/* The process starts draining (main thread, before the workers hear it). */
void sl_conn_process_drain(void);
int sl_conn_is_tls(const sl_conn_t *c);

#endif
