/* sluice - SPDX-License-Identifier: MIT
 *
 * WebSockets (RFC 6455 over HTTP/1.1, RFC 8441 over HTTP/2) as a
 * handler-level layer on top of sl_req: the handshake is checked here, the
 * accepted request becomes a byte stream both ways (HTTP/1.1 after the 101,
 * HTTP/2 in the extended CONNECT stream's DATA), and a session (sl_ws_t)
 * turns it into messages for an app (echo, broadcast, reply/'s job
 * subscriptions). Framing is wslay's frame layer; messages, UTF-8 checks,
 * limits, permessage-deflate, keepalive and the close handshake are here.
 * See docs/ws.md.
 *
 * Ownership: the session belongs to its request; it is freed when the
 * request closes, after app->on_close. Apps keep their state in
 * sl_ws_set_data() and release it in on_close.
 */
#ifndef SL_WS_H
#define SL_WS_H

#include "../sl.h"
#include "../req.h"
#include "../router.h"

typedef struct sl_ws sl_ws_t;

/* Close codes (RFC 6455 7.4.1). */
#define SL_WS_CLOSE_NORMAL 1000
#define SL_WS_CLOSE_GOING_AWAY 1001
#define SL_WS_CLOSE_PROTOCOL 1002
#define SL_WS_CLOSE_BAD_DATA 1007
#define SL_WS_CLOSE_POLICY 1008
#define SL_WS_CLOSE_TOO_BIG 1009
#define SL_WS_CLOSE_INTERNAL 1011
#define SL_WS_CLOSE_TRY_AGAIN 1013

typedef struct sl_ws_opts {
    size_t max_message_bytes; /* bigger incoming message (also inflated) -> 1009 */
    size_t send_queue_bytes;  /* outgoing bytes queued before sends are refused */
    int ping_interval_s;      /* server ping after this much silence (0 = off) */
    int idle_timeout_s;       /* close a peer silent this long (0 = off) */
    int deflate;              /* accept permessage-deflate offers */
} sl_ws_opts_t;

typedef struct sl_ws_app {
    const char *name;
    /* The handshake is answered; the session is open. Return 0, or a close
     * code (>= 1000) to close at once. */
    int (*on_open)(sl_ws_t *ws);
    /* A complete, validated message (text is valid UTF-8). data is valid
     * only during the call. */
    void (*on_message)(sl_ws_t *ws, int binary, const uint8_t *data, size_t len);
    /* The session is over (closed, aborted or the client went away);
     * release the app data. Called once if on_open was called. */
    void (*on_close)(sl_ws_t *ws);
    /* Optional: the protocol has taken a piece of the queued output. Apps
     * that produce at the reader's pace (reply/'s job subscriptions) check
     * sl_ws_queued here and send more. May be NULL. */
    void (*on_drain)(sl_ws_t *ws);
} sl_ws_app_t;

/* Check the WebSocket handshake on req (HTTP/1.1 Upgrade or HTTP/2
 * extended CONNECT). A bad one is answered here (400, or 426 with
 * Sec-WebSocket-Version: 13) and SL_EINVAL returned. On success answer
 * it (101 / 200), start a session running app, and return 0; the session
 * then owns req->cbs and req->hdata. */
int sl_ws_accept(sl_req_t *req, const sl_ws_opts_t *opts, const sl_ws_app_t *app, void *data);

/* Check only: 0 when req is a valid WebSocket handshake, else the status
 * sl_ws_accept would answer (400 or 426). */
int sl_ws_check(const sl_req_t *req);

/* Queue one message. Returns 0; SL_EAGAIN when send_queue_bytes are
 * already queued (nothing queued: a broadcast closes a subscriber that
 * cannot keep up, with 1013); SL_ECLOSED once a close was sent or queued. */
int sl_ws_send(sl_ws_t *ws, int binary, const void *data, size_t len);

/* Start the close handshake with code and a short reason (<= 123 bytes,
 * UTF-8). Never calls back into the app. */
void sl_ws_close(sl_ws_t *ws, uint16_t code, const char *reason);

void sl_ws_set_data(sl_ws_t *ws, void *data);
void *sl_ws_data(const sl_ws_t *ws);
sl_req_t *sl_ws_req(const sl_ws_t *ws);
size_t sl_ws_queued(const sl_ws_t *ws);

/* The "ws" route handler: {"handler": "ws", "app": "echo" | "broadcast",
 * options as in sl_ws_opts_t plus max_channels, max_subscribers}. */
extern const sl_handler_def_t sl_ws_handler;

/* Sec-WebSocket-Accept for a key (RFC 6455 4.2.2: base64 of SHA-1 over the
 * key and the GUID): 28 characters and a NUL. The proxy checks an
 * upstream's 101 with it. */
void sl_ws_accept_value(const char *key, size_t n, char out[29]);

#endif
