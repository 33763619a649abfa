/* sluice - SPDX-License-Identifier: MIT
 *
 * Private to src/ws/: the incremental UTF-8 validator, permessage-deflate
 * (RFC 7692 over zlib), handshake helpers, the route state of the "ws"
 * handler and the apps' entry points. Unit tests reach them through here.
 */
#ifndef SL_WS_INT_H
#define SL_WS_INT_H

#include "ws.h"
#include <zlib.h>

/* ---- UTF-8 (RFC 3629), fed in pieces; fails on the first bad byte ---- */

typedef struct sl_ws_utf8 {
    uint8_t need;   /* continuation bytes still expected */
    uint8_t lo, hi; /* allowed range of the next continuation byte */
} sl_ws_utf8_t;

void sl_ws_utf8_init(sl_ws_utf8_t *u);
/* 0 while p[0..n) continues valid UTF-8, -1 at the first invalid byte. */
int sl_ws_utf8_feed(sl_ws_utf8_t *u, const uint8_t *p, size_t n);
/* True when no sequence is left open. */
static inline int sl_ws_utf8_is_complete(const sl_ws_utf8_t *u)
{
    return u->need == 0;
}
/* Whole-buffer check. */
int sl_ws_utf8_is_valid(const uint8_t *p, size_t n);

/* ---- permessage-deflate ---- */

typedef struct sl_ws_pmd {
    int enabled;
    int server_no_context_takeover;
    int client_no_context_takeover;
    int server_max_window_bits; /* our deflate window, 9..15 */
    z_stream def, inf;
    unsigned def_ready : 1, inf_ready : 1;
} sl_ws_pmd_t;

/* Pick the first acceptable permessage-deflate offer in the request's
 * Sec-WebSocket-Extensions fields. Returns 1 and writes the response
 * value into resp when one is accepted, 0 when none is. */
int sl_ws_pmd_negotiate(const sl_req_t *req, sl_ws_pmd_t *pmd, char *resp, size_t cap);
/* Inflate a message whose compressed bytes are buf[0..len) with 4 bytes
 * of room behind them (the 00 00 ff ff tail goes there). On success *out
 * is a malloc'd buffer (caller frees) of *outlen <= max bytes. Returns 0,
 * SL_ETOOBIG (over max: a decompression bomb is cut there) or SL_EINVAL. */
int sl_ws_pmd_inflate(sl_ws_pmd_t *pmd, uint8_t *buf, size_t len, size_t max, uint8_t **out,
                      size_t *outlen);
/* Deflate one outgoing message into a malloc'd buffer. Returns 0 or
 * SL_ENOMEM. */
int sl_ws_pmd_deflate(sl_ws_pmd_t *pmd, const uint8_t *in, size_t len, uint8_t **out,
                      size_t *outlen);
void sl_ws_pmd_dispose(sl_ws_pmd_t *pmd);

/* ---- handshake ---- */

/* True when value (a comma-separated list) holds token, any case. */

/* ---- the "ws" handler's routes and its apps ---- */

#define SL_WS_MAX_WORKERS 256
#define SL_WS_MAX_CHANNEL 256 /* channel name bytes */

typedef struct sl_ws_route {
    sl_ws_opts_t opts;
    const char *app; /* "echo", "broadcast", "fault" */
    int faults;      /* "fault" needs "faults": true */
    size_t max_channels;
    size_t max_subscribers;
    size_t inbox_bytes; /* broadcast: bytes waiting per worker inbox */
} sl_ws_route_t;

void sl_ws_echo_start(sl_req_t *req, const sl_ws_route_t *r);
/* The fault app (fault.c): echo, and one misbehaviour the handshake's
 * query asks for. */
void sl_ws_fault_start(sl_req_t *req, const sl_ws_route_t *r);
/* Register sluice_ws_faults_total (at config load, once). */
void sl_ws_fault_metrics(void);
/* One frame as given (any opcode, fin or not, never compressed): for the
 * fault app. 0, SL_EAGAIN (queue full) or SL_ECLOSED. */
int sl_ws_send_frame(sl_ws_t *ws, int opcode, int fin, const void *data, size_t len);
void sl_ws_broadcast_start(sl_req_t *req, const sl_ws_route_t *r);

#endif
