/* sluice - SPDX-License-Identifier: MIT
 *
 * HTTP/3 internals shared by endpoint.c (the worker's UDP sockets,
 * connection IDs, new connections, Retry, Version Negotiation, stateless
 * resets), quic.c (one ngtcp2 connection and its TLS session), stream.c
 * (nghttp3 and one sl_req_t per request stream) and config.c (the "quic"
 * section). Not for use outside src/h3/.
 *
 * Ownership:
 *
 *   sl_h3_worker_t (thread-local) --eps--> sl_h3_ep_t (one UDP socket)
 *        | cids: connection ID -> sl_h3_conn_t
 *        v
 *   sl_conn_t (datagram conn, conn.c) --pdata--> sl_h3_conn_t
 *        | ngtcp2_conn, gnutls session, nghttp3_conn
 *        v
 *   sl_h3_stream_t (nghttp3 stream user data) embeds sl_req_t
 *
 * A connection lives from its first Initial packet to the end of its
 * closing or draining period (or an idle timeout); its sl_conn_t closes
 * with it. Its endpoint outlives it: an endpoint a reload dropped stops
 * taking new connections and closes when its last one is gone.
 */
#ifndef SL_H3_INT_H
#define SL_H3_INT_H

#include "h3.h"
#include "qmem.h"
#include "../config.h"
#include "../conn.h"
#include "../log.h"
#include "../req.h"
#include "../worker.h"
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nghttp3/nghttp3.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

typedef struct sl_h3_ep sl_h3_ep_t;
typedef struct sl_h3_conn sl_h3_conn_t;
typedef struct sl_h3_stream sl_h3_stream_t;

enum { SL_H3_RETRY_AUTO = 0, SL_H3_RETRY_ALWAYS, SL_H3_RETRY_NEVER };

/* The "quic" section (config.c). */
typedef struct sl_h3_cfg {
    int retry;                  /* SL_H3_RETRY_* */
    uint32_t retry_handshakes;  /* auto: Retry once a worker has this many handshakes open */
    double idle_timeout_s;      /* QUIC max_idle_timeout */
    uint32_t max_streams;       /* concurrent request streams per connection */
    uint32_t stream_window;     /* request body bytes a stream may send ahead */
    uint32_t conn_window;       /* ... all streams of a connection together */
    uint32_t response_buffer;   /* response bytes held per stream until acknowledged */
    uint32_t header_list_bytes; /* SETTINGS_MAX_FIELD_SECTION_SIZE */
    uint32_t qpack_table_bytes; /* QPACK dynamic table the client may use */
    uint32_t qpack_blocked;     /* streams the client may block on QPACK */
    uint32_t reset_burst;       /* client stream resets: token bucket burst */
    uint32_t reset_rate;        /* ... refilled per second */
} sl_h3_cfg_t;

/* The section's values for cfg (defaults when the section is absent). */
const sl_h3_cfg_t *sl_h3_cfg(const sl_config_t *cfg);
void sl_h3_config_register(void);

/* Certificates for QUIC: the listener's, loaded into GnuTLS (the TCP side
 * uses OpenSSL; Debian's ngtcp2 has only a GnuTLS backend). Counted: a
 * session keeps the set it started with across a reload. */
typedef struct sl_h3_creds {
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t prio;
    int refs;
} sl_h3_creds_t;

sl_h3_creds_t *sl_h3_creds_new(const sl_tls_cfg_t *tls, char *err, size_t errlen);
void sl_h3_creds_release(sl_h3_creds_t *cr);
/* hc's GnuTLS server session, tied to hc->qc. 0 or SL_ERROR. */
int sl_h3_tls_session(sl_h3_conn_t *hc);
/* The server name the client sent (sl_strdup'ed), or NULL. */
char *sl_h3_tls_sni(sl_h3_conn_t *hc);

/* One UDP socket of one worker, bound to a QUIC listener's address. */
struct sl_h3_ep {
    ev_io io;
    int fd;
    int wildcard; /* bound to 0.0.0.0 or [::]: the local address comes with each packet */
    struct sockaddr_storage addr; /* as bound (port included) */
    socklen_t addrlen;
    const sl_listener_cfg_t *lcfg; /* in the worker's current snapshot; NULL: dropped by a reload */
    sl_h3_creds_t *creds;          /* for new connections */
    size_t nconns;
    unsigned blocked : 1; /* sendmsg said EAGAIN: writers wait for EV_WRITE */
    unsigned no_gso : 1;  /* the kernel refused UDP_SEGMENT */
};

/* A connection ID table entry (open addressing, linear probing). */
typedef struct sl_h3_cid_slot {
    uint8_t len; /* 0: empty */
    uint8_t tomb;
    uint8_t id[NGTCP2_MAX_CIDLEN];
    sl_h3_conn_t *hc;
} sl_h3_cid_slot_t;

typedef struct sl_h3_worker {
    sl_worker_t *w;
    sl_h3_ep_t **eps;
    size_t neps;
    sl_h3_cid_slot_t *cids;
    size_t ncids, cap, used; /* live entries, slots, live + tombstones */
    size_t handshaking;      /* connections still in their handshake */
    size_t nconns;
    int draining;
    uint64_t resets_sent; /* stateless resets this second (bounded) */
    double resets_stamp;
} sl_h3_worker_t;

/* The calling worker's HTTP/3 state. */
sl_h3_worker_t *sl_h3_worker(void);
/* A process-wide secret for Retry tokens and stateless reset tokens, so
 * that any worker recognises another's. */
const uint8_t *sl_h3_secret(size_t *len);

/* Server connection IDs: 18 bytes, the first the worker's id and the
 * rest random, so that a packet that reaches another worker (the client's
 * address changed) can be handed to the one that owns its connection. */
#define SL_H3_SCIDLEN 18

/* A fresh connection ID of this worker's, unused in its table. */
void sl_h3_cid_new(sl_h3_worker_t *hw, uint8_t *data, size_t len);

int sl_h3_cid_add(sl_h3_worker_t *hw, const ngtcp2_cid *cid, sl_h3_conn_t *hc);
/* Remove cid if it names hc (a client's first DCID may have been taken
 * again by a later connection after hc's setup failed). */
void sl_h3_cid_remove(sl_h3_worker_t *hw, const ngtcp2_cid *cid, const sl_h3_conn_t *hc);
sl_h3_conn_t *sl_h3_cid_find(sl_h3_worker_t *hw, const uint8_t *id, size_t len);

/* Send data from ep: one datagram, or with seg > 0 several of seg bytes
 * (the last may be shorter) in one call (UDP GSO; one at a time where the
 * kernel has none). 0, or SL_EAGAIN when the socket is full (ep->blocked
 * is set until it drains; its connections are then told), SL_ERROR. */
int sl_h3_ep_send(sl_h3_ep_t *ep, const ngtcp2_path *path, const uint8_t *data, size_t len,
                  size_t seg);
/* One datagram as it came in on ep. */
typedef struct sl_h3_pkt {
    sl_h3_ep_t *ep;
    const uint8_t *p;
    size_t n;
    struct sockaddr_storage local, remote;
    socklen_t locallen, remotelen;
} sl_h3_pkt_t;

/* What the worker does with a datagram (endpoint.c). */
void sl_h3_ep_packet(sl_h3_worker_t *hw, sl_h3_pkt_t *k);
/* The endpoint of hw bound where k->local is (a wildcard one matching by
 * port), or NULL. */
sl_h3_ep_t *sl_h3_ep_for(sl_h3_worker_t *hw, const struct sockaddr_storage *local);

/* ---- forward.c ---- */

/* Workers by id, for handing packets over (set as each starts). */
void sl_h3_forward_register(sl_worker_t *w);
/* A short-header packet whose connection ID names another worker: hand it
 * to that worker (bounded; 1 when taken or dropped), else 0 (not ours to
 * route: the caller answers with a stateless reset). */
int sl_h3_forward(sl_h3_worker_t *hw, const sl_h3_pkt_t *k, const uint8_t *dcid, size_t dcidlen);

/* Write readiness wanted: the socket was full (sl_h3_ep_send said
 * SL_EAGAIN); the ep's connections are told when it drains. */
void sl_h3_ep_wait_writable(sl_h3_ep_t *ep);
/* A connection on ep ended. */
void sl_h3_ep_conn_gone(sl_h3_ep_t *ep);

/* ---- quic.c ---- */

struct sl_h3_conn {
    sl_conn_t *c;
    sl_h3_ep_t *ep;
    sl_h3_worker_t *hw;
    sl_h3_creds_t *creds;
    const sl_h3_cfg_t *qcfg;
    ngtcp2_conn *qc;
    sl_h3_qmem_t qmem; /* qc's allocator: its blocks, freed after it */
    nghttp3_conn *h3;
    gnutls_session_t tls;
    ngtcp2_crypto_conn_ref ref;
    ngtcp2_connection_close_error err;
    struct sockaddr_storage local, remote;
    socklen_t locallen, remotelen;
    ngtcp2_cid scid, odcid; /* ours; the client's first DCID */
    uint8_t *closebuf;      /* CONNECTION_CLOSE, resent during the closing period */
    size_t closelen;
    sl_h3_stream_t *proceed, *proceed_tail; /* streams whose handler may send again */
    size_t nproceed;
    sl_h3_stream_t *streams; /* open request streams */
    size_t nstreams;
    double reset_tokens, reset_stamp;
    uint8_t close_resends;
    double goaway_at; /* ev_now when the final GOAWAY is due */
    double sweep_due; /* ev_now of the next idle-stream sweep; 0: none */
    unsigned handshake_done : 1;
    unsigned counted_handshake : 1;
    unsigned closing : 1;  /* CONNECTION_CLOSE sent: closing period */
    unsigned draining : 1; /* the peer closed: draining period */
    unsigned goaway : 2;   /* 1: GOAWAY notice sent (drain, retire), 2: the final one */
    unsigned dead : 1;
};

/* A new connection from its first Initial packet hd (already accepted by
 * ngtcp2_accept); ocid is the DCID before a Retry (NULL: none). Returns
 * NULL when it could not be created (logged, limits). */
sl_h3_conn_t *sl_h3_conn_new(sl_h3_worker_t *hw, sl_h3_ep_t *ep, const ngtcp2_pkt_hd *hd,
                             const ngtcp2_cid *ocid, const ngtcp2_path *path);
/* One packet for hc. */
void sl_h3_conn_read(sl_h3_conn_t *hc, const ngtcp2_path *path, const uint8_t *pkt, size_t len);
/* Close the connection with an application error (HTTP/3 code) now. */
void sl_h3_conn_fail(sl_h3_conn_t *hc, uint64_t h3_code, const char *why);
/* Ask for a write pass at the end of this loop iteration. */
void sl_h3_conn_want_write(sl_h3_conn_t *hc);
/* Monotonic ns, the clock ngtcp2 runs on. */
ngtcp2_tstamp sl_h3_now(void);

/* ---- stream.c ---- */

struct sl_h3_stream {
    sl_req_t req; /* req.pdata points back here */
    sl_h3_conn_t *hc;
    sl_h3_stream_t *prev, *next; /* connection's open streams */
    sl_h3_stream_t *pnext;       /* proceed list */
    int64_t id;
    sl_buf_t out;        /* response body, kept until the peer acknowledges it */
    size_t out_given;    /* bytes of out handed to nghttp3 (sent or in flight) */
    const uint8_t *pend; /* what the handler's send still has to copy */
    size_t pend_len;
    size_t hdr_bytes;
    size_t unconsumed; /* body bytes given to on_body, not consumed yet */
    double last_active; /* ev_now of the last byte either way */
    unsigned pend_final : 1;
    unsigned eof_queued : 1; /* the last byte of the body is in out */
    unsigned submitted : 1;  /* response HEADERS submitted */
    unsigned dispatched : 1;
    unsigned closed : 1;
    unsigned blocked : 1; /* read_data said WOULDBLOCK */
    unsigned in_proceed : 1;
    unsigned hdrs_too_big : 1;
    unsigned app_reset : 1;  /* we reset it */
    unsigned discarding : 1; /* response done, request body dropped */
    unsigned ncookies : 2;
    char status[4];
    char clen[24];
};

/* nghttp3 for hc (once 1-RTT keys are in place): callbacks, settings, the
 * control and QPACK streams. 0 or SL_ERROR. */
int sl_h3_http_start(sl_h3_conn_t *hc);
/* Handlers waiting to send again are told (outside every library
 * callback). */
void sl_h3_run_proceed(sl_h3_conn_t *hc);
/* Abort every open stream (the connection is going away). */
void sl_h3_streams_abort(sl_h3_conn_t *hc);
/* Reset the streams with no bytes either way for timeouts.stream_idle_s
 * (as HTTP/2 does); returns when the next sweep is due (0: no streams). */
double sl_h3_streams_sweep(sl_h3_conn_t *hc, double now);
/* An HTTP/3 GOAWAY: stop taking requests, finish those open. */
void sl_h3_http_goaway(sl_h3_conn_t *hc);
/* The final GOAWAY once its time has come; 1 when the connection has
 * nothing left to do and may close. */
int sl_h3_http_goaway_step(sl_h3_conn_t *hc);

#endif
