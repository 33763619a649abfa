/* sluice - SPDX-License-Identifier: MIT
 *
 * Private to the HTTP/1.1 server connection, shared by its four files:
 *   conn.c     the connection: states, input buffer, the exchange's life
 *              (head parsed -> handler -> response queued -> next), and
 *              sl_h1_proto, the callbacks the sl_conn calls;
 *   respond.c  the response serializer: heads, body framing, sendfile, the
 *              send side of the request ops;
 *   body.c     the request body: framing (length, chunked, raw after 101)
 *              and the credit that bounds what a handler holds;
 *   upgrade.c  leaving for HTTP/2 (prior-knowledge preface, Upgrade: h2c).
 *
 * Three state machines, each in one field:
 *   h1_conn_t.state   IDLE -> HEAD -> ACTIVE -> (DISCARD ->) IDLE or HEAD;
 *                     sl_h1_set_state is the only writer and asserts the
 *                     legal moves.
 *   h1_conn_t.body    which request-body framing is being read (NONE when
 *                     the body is complete or there is none).
 *   h1_exch_t.resp    the handler's send: WAITING -> SENDING -> PROCEED
 *                     (non-final send copied; on_proceed due) or DONE (the
 *                     final byte is queued).
 * The remaining bits are facts about the connection or the response head,
 * not states.
 */
#ifndef SL_H1_SERVER_INT_H
#define SL_H1_SERVER_INT_H

#include "h1_int.h"
#include "../config.h"

#define SL_H1_HEAD_MAX 32768 /* a bigger response head is a handler bug */

/* Internal results besides 0 / SL_ECLOSED: the conn now speaks HTTP/2 and
 * the h1 state is gone (SWITCHED) or gone and the conn must close. */
#define H1_INCOMPLETE 1
#define H1_SWITCHED 2
#define H1_SWITCHED_CLOSE 3

typedef enum h1_state {
    H1_IDLE,    /* between requests, nothing buffered: keep-alive timer */
    H1_HEAD,    /* part of a head has arrived: header timer */
    H1_ACTIVE,  /* an exchange is live */
    H1_DISCARD, /* response done; reading and dropping the rest of the body */
} h1_state_t;

/* BODY_RAW: after a 101 (WebSocket) every byte either way is the
 * handler's, with no framing, until the connection closes. */
typedef enum body_mode { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_RAW } body_mode_t;

typedef enum resp_state {
    RESP_WAITING, /* no send outstanding */
    RESP_SENDING, /* a send is being copied (or sent from a file) */
    RESP_PROCEED, /* a non-final send went out; the handler's on_proceed is due */
    RESP_DONE,    /* the final byte is queued */
} resp_state_t;

typedef struct h1_conn h1_conn_t;

/* One request/response exchange. Lives inside the conn: one at a time. */
typedef struct h1_exch {
    sl_req_t req;
    h1_conn_t *hc;
    resp_state_t resp;
    const uint8_t *snd_p; /* handler bytes not yet copied (valid until on_proceed) */
    size_t snd_left;
    int64_t res_left; /* declared content-length still to send; -1 unknown */
    uint64_t delivered, consumed;
    int sf_fd; /* sendfile: the source fd (snd_left bytes from sf_off) */
    int64_t sf_off;
    unsigned snd_file : 1;  /* the outstanding send is a sendfile */
    unsigned snd_final : 1; /* ... and ends the response */
    unsigned head_written : 1;
    unsigned chunked_out : 1;
    unsigned chunk_open : 1; /* chunk-size line written, data/CRLF pending */
    unsigned no_body : 1;    /* HEAD, 204, 304 */
    unsigned closed : 1;     /* handler's on_close has run */
    unsigned continue_sent : 1;
    unsigned got_body : 1;
    unsigned len_warned : 1;
} h1_exch_t;

struct h1_conn {
    sl_conn_t *c;
    const sl_config_t *cfg;
    h1_state_t state;
    body_mode_t body;
    uint32_t nreq;
    uint8_t *in; /* unparsed input: partial head, pipelined requests */
    size_t in_len, in_cap;
    uint64_t body_left; /* BODY_LENGTH */
    uint64_t body_seen;
    uint64_t discard_left; /* H1_DISCARD budget */
    sl_h1_chunked_t chunk;
    const uint8_t *run_p; /* chunked: the last decoded run, held back for fin */
    size_t run_n;
    unsigned live : 1; /* x holds a request */
    unsigned keep_alive : 1;
    unsigned close_after : 1;
    unsigned draining : 1;
    unsigned eof : 1;
    unsigned paused_body : 1;  /* reads stopped: handler has not consumed */
    unsigned paused_input : 1; /* reads stopped: pipelined bytes waiting */
    unsigned reset_pending : 1;
    unsigned not_preface : 1;
    unsigned too_big : 1;
    unsigned discard_over : 1;
    unsigned kick : 1;        /* credit came back: held body bytes wait in `in` */
    unsigned upgrade_req : 1; /* the live request asked to Upgrade (101 allowed) */
    h1_exch_t x;
};

/* ---- conn.c ---- */
void sl_h1_set_state(h1_conn_t *hc, h1_state_t to);
/* The one conn timer. Once a reset is pending it belongs to the reset. */
void sl_h1_set_timer(h1_conn_t *hc, double secs);
void sl_h1_arm_reset(h1_conn_t *hc);
int sl_h1_in_append(h1_conn_t *hc, const uint8_t *p, size_t n);
void sl_h1_update_read(h1_conn_t *hc);
void sl_h1_next_request(h1_conn_t *hc);
int sl_h1_after_handler(h1_conn_t *hc);
void sl_h1_build_req(h1_conn_t *hc, const sl_h1_head_t *head);

/* ---- respond.c ---- */
int sl_h1_send_error(h1_conn_t *hc, int status);
int sl_h1_fail_exchange(h1_conn_t *hc, int status);
int sl_h1_pump(h1_conn_t *hc);
int sl_h1_op_send(sl_req_t *req, const uint8_t *data, size_t len, int final);
int sl_h1_op_sendfile(sl_req_t *req, int fd, int64_t off, size_t len, int final);
int sl_h1_op_informational(sl_req_t *req, int status, const sl_headers_t *hdrs);
void sl_h1_op_reset(sl_req_t *req, uint32_t h2_error_code);
int sl_h1_op_fault(sl_req_t *req, const sl_fault_t *f);

/* ---- body.c ---- */
double sl_h1_body_timeout(const h1_conn_t *hc);
ssize_t sl_h1_feed_body(h1_conn_t *hc, const uint8_t *p, size_t len);
void sl_h1_op_consume(sl_req_t *req, size_t n);

/* ---- upgrade.c ---- */
int sl_h1_can_h2c(const h1_conn_t *hc);
int sl_h1_try_upgrade(h1_conn_t *hc, const sl_h1_head_t *head, const uint8_t *rest, size_t restlen);
int sl_h1_check_preface(h1_conn_t *hc, const uint8_t *data, size_t len);

#endif
