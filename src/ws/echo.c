/* sluice - SPDX-License-Identifier: MIT
 *
 * The echo app: every message goes back as it came (text as text, binary
 * as binary). Backpressure is the session's: while the echoes are not
 * read, input stops being parsed and credit stops flowing back, so the
 * send never finds the queue over its bound.
 */
#include "ws_int.h"
#include "../log.h"

static void on_message(sl_ws_t *ws, int binary, const uint8_t *data, size_t len)
{
    int r = sl_ws_send(ws, binary, data, len);
    if (r == SL_EAGAIN || r == SL_ENOMEM) {
        /* Cannot happen with the session's input bound; close, not grow. */
        sl_ws_close(ws, SL_WS_CLOSE_TRY_AGAIN, "send queue full");
    }
}

static const sl_ws_app_t echo_app = {
    .name = "echo",
    .on_message = on_message,
};

void sl_ws_echo_start(sl_req_t *req, const sl_ws_route_t *r)
{
    (void)sl_ws_accept(req, &r->opts, &echo_app, NULL);
}
