/* sluice - SPDX-License-Identifier: MIT
 *
 * HTTP/2 internals shared by session.c (nghttp2 glue and I/O driving),
 * stream.c (one sl_req_t per stream, the response sink, the data source)
 * and limits.c (abuse accounting). Not for use outside src/h2/ except by
 * the unit tests.
 *
 * Ownership:
 *
 *   sl_conn_t --pdata--> sl_h2_session_t --ng--> nghttp2_session
 *                             |  streams (open, doubly linked)
 *                             v
 *                        sl_h2_stream_t  (nghttp2 stream user data)
 *                             |  embeds
 *                             v
 *                        sl_req_t + its pool (headers, nva arrays)
 *
 * A stream lives from on_begin_headers to on_stream_close (or the
 * session's teardown); the handler's on_close runs exactly once, just
 * before the stream is freed.
 */
#ifndef SL_H2_INT_H
#define SL_H2_INT_H

#include "h2.h"
#include "../config.h"
#include "../log.h"
#include <nghttp2/nghttp2.h>

typedef struct sl_h2_session sl_h2_session_t;
typedef struct sl_h2_stream sl_h2_stream_t;

/* Abuse accounting for one connection (limits.c). Two token buckets:
 * "glitches" (frames that cost us work and serve no request: empty DATA,
 * PING/SETTINGS/PRIORITY floods, invalid frames, resets we send because
 * the client misbehaved, refused streams, oversized header lists) and
 * client RST_STREAMs (rapid reset). Either running dry ends the
 * connection with GOAWAY(ENHANCE_YOUR_CALM). */
typedef struct sl_h2_limits {
    double glitch_tokens, glitch_burst, glitch_rate; /* rate per second */
    double reset_tokens, reset_burst, reset_rate;
    double glitch_stamp, reset_stamp; /* monotonic seconds of last refill */
    uint64_t glitches;                /* total, for the log line */
    uint32_t settings_seen;           /* non-ACK SETTINGS received */
    unsigned tripped : 1;             /* GOAWAY(ENHANCE_YOUR_CALM) submitted */
} sl_h2_limits_t;

/* Where the client's byte stream stands between frames (scan.c). */
enum { SL_H2_SCAN_PREFACE, SL_H2_SCAN_HEAD, SL_H2_SCAN_PAYLOAD };
enum { SL_H2_SCAN_EV_NONE, SL_H2_SCAN_EV_DATA, SL_H2_SCAN_EV_PRIORITY };

typedef struct sl_h2_scan {
    double started;  /* ev_now of the first byte of the unfinished frame or
                        header block; 0 at a boundary */
    uint32_t left;   /* bytes left in the current preface/header/payload */
    uint32_t length; /* the current frame's payload length */
    int32_t sid;     /* the current frame's stream id */
    uint8_t hd[9], hd_got;
    uint8_t pri[4], pri_got; /* PRIORITY payload: the dependency */
    uint8_t phase, type, flags;
    unsigned in_block : 1; /* inside a header block (CONTINUATION expected) */
} sl_h2_scan_t;

struct sl_h2_stream {
    sl_req_t req; /* req.pdata points back here */
    sl_h2_session_t *sess;
    sl_h2_stream_t *prev, *next;   /* session's open streams */
    sl_h2_stream_t *pprev, *pnext; /* session's proceed queue */
    const uint8_t *pend;           /* handler's outstanding send (req.h) */
    size_t pend_len;
    size_t hdr_bytes;   /* decoded header list size (RFC 9113 6.5.2 rule) */
    size_t unconsumed;  /* body bytes handed to on_body, not consumed yet */
    double last_active; /* ev_now of the last byte either way */
    int32_t id;
    unsigned pend_final : 1;
    unsigned submitted : 1;    /* response HEADERS submitted */
    unsigned no_body : 1;      /* HEAD, or response ended on HEADERS */
    unsigned deferred : 1;     /* the data source returned DEFERRED */
    unsigned in_proceed : 1;   /* on the proceed queue */
    unsigned dispatched : 1;   /* request handed to the router */
    unsigned hdrs_too_big : 1; /* header list over h2_header_list_bytes */
    unsigned app_reset : 1;    /* we reset it for our own reasons */
    unsigned discarding : 1;   /* response done: request body read and dropped */
    unsigned closed : 1;       /* stream gone; on_close has run or runs now */
    unsigned ncookies : 2;     /* cookie crumbs seen, saturating (joined at END_HEADERS) */
    uint8_t pad;               /* harness fault: padding bytes per frame (0: none) */
    char status[4];            /* ":status" value */
    char clen[24];             /* "content-length" value */
};

struct sl_h2_session {
    nghttp2_session *ng;
    sl_conn_t *conn;
    const sl_config_t *cfg;
    struct ev_loop *loop;
    sl_h2_stream_t *streams; /* open streams */
    /* The stream the last callback looked up: a request's callbacks all
     * name one stream, and nghttp2's lookup is a hash probe each time
     * (~8 per request). Cleared when that stream is unlinked. */
    sl_h2_stream_t *last;
    size_t nstreams;
    sl_h2_stream_t *proceed_head, *proceed_tail;
    size_t nproceed;
    const uint8_t *hold; /* mem_send bytes that did not fit into c->out */
    size_t hold_len;
    sl_h2_limits_t lim;
    sl_h2_scan_t scan;
    int depth;                  /* > 0 while inside one of our entry points */
    double idle_since;          /* ev_now when the last stream closed */
    double timer_due;           /* ev_now when the conn timer fires; 0 = not armed */
    int32_t max_sid;            /* highest client stream id seen in a HEADERS */
    uint64_t sid_seen;          /* bit k: stream max_sid - 2k was opened (RFC 9113 5.1.1) */
    uint64_t sid_reset;         /* bit k: we sent RST_STREAM on stream max_sid - 2k */
    unsigned padded : 1;        /* a stream asked for padding (fault): look up per frame */
    /* PING ACKs are ours to send (a harness fault may drop or delay some). */
    uint32_t ping_faults;       /* the next this many PINGs get the fault */
    uint32_t ping_delay_ms;     /* 0: their ACKs are dropped */
    uint8_t ping_held[4][8];    /* delayed ACKs' payloads */
    uint8_t nping_held;
    ev_timer ping_timer;
    /* nghttp2 allocates through mem (its user pointer is this session) so
     * that framebuf, its frame buffer, and streamtab, its first stream
     * table, are known: while the connection idles, no frame is in the one
     * and the other holds zeros, and their pages go back (trim_idle). */
    nghttp2_mem mem;
    void *framebuf;
    void *streamtab;
    unsigned capture : 1;       /* while nghttp2 creates the session */
    unsigned trimmed : 1;       /* framebuf's pages were given back */
    unsigned want_close : 1;    /* close (after flush) at the end of the entry */
    unsigned await_preface : 1; /* h2c upgrade: no output before the client's SETTINGS */
    unsigned dead : 1;          /* torn down: ops answer SL_ECLOSED */
    unsigned drain : 2;         /* 0, 1 shutdown notice sent, 2 final GOAWAY */
    unsigned read_paused : 1;   /* we paused input (output backlog) */
    unsigned logged_invalid : 1;
    unsigned logged_hdrs : 1;
    unsigned fatal : 1;         /* nghttp2 reported a fatal error: no more I/O */
    unsigned idle_armed : 1;    /* the conn timer counts h2_idle_s from idle_since */
    unsigned settings_sent : 1; /* our first SETTINGS went out (and was patched) */
};

/* Bytes that must stay free in c->out after a DATA frame is queued
 * without copying, so that the next frame nghttp2 packs (at most one
 * frame buffer chunk) always fits. */
#define SL_H2_FRAME_HDLEN 9
#define SL_H2_TLS_RECORD 16384 /* a full TLS record's plaintext */

/* nghttp2 treats a stream over its acknowledged MAX_CONCURRENT_STREAMS as
 * a connection error; we refuse such streams (REFUSED_STREAM) ourselves
 * and give nghttp2 this much larger limit as a backstop. */
#define SL_H2_STREAMS_BACKSTOP(n) ((n) > (1u << 29) ? (1u << 30) : 2 * (n) + 16)
#define SL_H2_OUT_RESERVE (16384 + SL_H2_FRAME_HDLEN + 64)

/* ---- session.c ---- */

/* Ask for an output pass: now if inside an entry point (it pumps on the
 * way out), else at the end of this loop iteration (conn flush calls
 * on_writable). Never sends from inside the caller. */
void sl_h2_session_want_pump(sl_h2_session_t *s);
/* Count a stream in/out of the session's open list (timers, sweep). */
void sl_h2_session_link(sl_h2_session_t *s, sl_h2_stream_t *st);
void sl_h2_session_unlink(sl_h2_session_t *s, sl_h2_stream_t *st);
/* Queue st for on_proceed after the current mem_send pass. */
void sl_h2_session_queue_proceed(sl_h2_session_t *s, sl_h2_stream_t *st);
/* Create the nghttp2 server session for c and submit our SETTINGS;
 * installs sl_h2_proto on c. Returns the session or NULL (logged). */
sl_h2_session_t *sl_h2_session_new(sl_conn_t *c);

/* ---- stream.c ---- */

/* A new stream for a request HEADERS; never fails (aborts on OOM). */
sl_h2_stream_t *sl_h2_stream_new(sl_h2_session_t *s, int32_t id);
/* One decoded header field (pseudo-headers included); trailer=1 for the
 * fields of a trailing HEADERS (size-checked, not stored). */
void sl_h2_stream_on_header(sl_h2_stream_t *st, nghttp2_rcbuf *name, nghttp2_rcbuf *value,
                            int trailer);
/* The request head is complete: finish the model and dispatch it. */
void sl_h2_stream_on_request(sl_h2_stream_t *st, int end_stream);
/* Body bytes (valid during the call) and the end of the body. */
void sl_h2_stream_on_data(sl_h2_stream_t *st, const uint8_t *data, size_t len);
void sl_h2_stream_on_body_end(sl_h2_stream_t *st);
/* The response is complete but the request body is not: read and drop the
 * rest (still bounded by max_body_bytes and the stream idle timeout). */
void sl_h2_stream_discard_body(sl_h2_stream_t *st);
/* nghttp2 closed the stream (or the session is torn down): access log,
 * handler on_close exactly once, dispose and free. */
void sl_h2_stream_close(sl_h2_stream_t *st, uint32_t error_code);
/* Build stream 1 from the HTTP/1.1 request that asked for h2c. */
void sl_h2_stream_from_h1(sl_h2_stream_t *st, const sl_req_t *h1req);
/* The DATA frame sender for NGHTTP2_DATA_FLAG_NO_COPY (session callback). */
/* Harness fault: the next count PINGs' ACKs dropped (delay_ms 0) or sent
 * delay_ms late. */
void sl_h2_session_ping_fault(sl_h2_session_t *s, uint32_t count, uint32_t delay_ms);
ssize_t sl_h2_select_padding(nghttp2_session *ng, const nghttp2_frame *frame,
                             size_t max_payloadlen, void *user_data);
int sl_h2_stream_send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                           size_t length, nghttp2_data_source *source, void *user_data);

/* ---- scan.c ---- */

void sl_h2_scan_init(sl_h2_scan_t *sc);
/* Walk p[0..len) and return how many bytes were taken: all of them, or
 * fewer when *ev reports an event that ends at the last byte taken.
 * SL_H2_SCAN_EV_DATA: a DATA frame header just completed (sc->sid, length);
 * a caller that has fed nghttp2 every byte before it has nghttp2's state
 * as of the frame before. SL_H2_SCAN_EV_PRIORITY: a PRIORITY frame ended
 * (sc->sid; sl_h2_scan_priority_dep). now stamps sc->started. */
size_t sl_h2_scan(sl_h2_scan_t *sc, const uint8_t *p, size_t len, double now, int *ev);
/* The stream a complete PRIORITY payload depends on, or -1. */
int32_t sl_h2_scan_priority_dep(const sl_h2_scan_t *sc);

/* ---- limits.c ---- */

void sl_h2_limits_init(sl_h2_limits_t *l, const sl_limits_t *cfg);
/* Count one glitch of kind what ("PING frames"). Returns 1 when the limit
 * tripped: the session is being terminated with ENHANCE_YOUR_CALM. */
int sl_h2_glitch(sl_h2_session_t *s, const char *what);
/* Classify a received frame (floods, client resets). */
void sl_h2_limits_on_recv(sl_h2_session_t *s, const nghttp2_frame *f);
/* Every received frame header: PRIORITY and unknown frames, which nghttp2
 * discards silently. */
void sl_h2_limits_on_frame_begin(sl_h2_session_t *s, const nghttp2_frame_hd *hd);
/* A RST_STREAM we sent (or dropped): counts when the client caused it
 * (MadeYouReset, CVE-2025-8671) and when we refused a stream. */
void sl_h2_limits_on_rst_sent(sl_h2_session_t *s, const nghttp2_frame *f);

#endif
