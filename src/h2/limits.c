/* sluice - SPDX-License-Identifier: MIT
 *
 * HTTP/2 abuse accounting. nghttp2 1.52 caps SETTINGS entries, queued
 * ACKs, CONTINUATION frames and the client reset rate, but has no general
 * "glitch" limiter, so we count the frames that cost work without serving
 * a request in a per-connection token bucket, and client RST_STREAMs in a
 * second one. Either running dry ends only this connection, with
 * GOAWAY(ENHANCE_YOUR_CALM) and one INFO line. See docs/h2.md.
 */
#include "h2_int.h"
#include "../metrics.h"

static double mono_s(void)
{
    return (double)sl_now_ns() / 1e9;
}

void sl_h2_limits_init(sl_h2_limits_t *l, const sl_limits_t *cfg)
{
    double now = mono_s();
    uint32_t window = cfg->h2_glitch_window_s ? cfg->h2_glitch_window_s : 1;
    memset(l, 0, sizeof(*l));
    l->glitch_burst = l->glitch_tokens = (double)cfg->h2_glitch_limit;
    l->glitch_rate = (double)cfg->h2_glitch_limit / (double)window;
    l->reset_burst = l->reset_tokens = (double)cfg->h2_reset_burst;
    l->reset_rate = (double)cfg->h2_reset_rate;
    l->glitch_stamp = l->reset_stamp = now;
}

/* Refill a bucket for the time since its last refill, then take one
 * token. Returns 0, or -1 when the bucket was empty. */
static int take(double *tokens, double burst, double rate, double *stamp)
{
    double now = mono_s();
    if (now > *stamp) {
        *tokens = SL_MIN(burst, *tokens + (now - *stamp) * rate);
        *stamp = now;
    }
    if (*tokens < 1.0)
        return -1;
    *tokens -= 1.0;
    return 0;
}

/* Past a limit: GOAWAY(ENHANCE_YOUR_CALM) and one log line. nghttp2 then
 * stops reading and reports want_read/want_write 0 once it is sent. */
static void trip(sl_h2_session_t *s, const char *what, sl_metrics_abuse_t kind)
{
    s->lim.tripped = 1;
    sl_metrics_abuse(kind);
    sl_log(SL_LOG_INFO, s->conn, "client sent too many %s, closing the connection", what);
    nghttp2_session_terminate_session(s->ng, NGHTTP2_ENHANCE_YOUR_CALM);
    s->want_close = 1;
}

int sl_h2_glitch(sl_h2_session_t *s, const char *what)
{
    sl_h2_limits_t *l = &s->lim;
    if (l->tripped)
        return 1;
    l->glitches++;
    if (take(&l->glitch_tokens, l->glitch_burst, l->glitch_rate, &l->glitch_stamp) == 0)
        return 0;
    trip(s, what, SL_M_ABUSE_FLOOD);
    return 1;
}

/* Client RST_STREAM (rapid reset, CVE-2023-44487). nghttp2 runs its own
 * bucket right after our callback; ours is given fewer tokens (see
 * sl_h2_session_new) so that it trips first and the client gets
 * ENHANCE_YOUR_CALM rather than nghttp2's INTERNAL_ERROR. */
static void on_client_reset(sl_h2_session_t *s)
{
    sl_h2_limits_t *l = &s->lim;
    if (l->tripped)
        return;
    if (take(&l->reset_tokens, l->reset_burst, l->reset_rate, &l->reset_stamp) != 0)
        trip(s, "RST_STREAM frames (rapid reset)", SL_M_ABUSE_RAPID_RESET);
}

void sl_h2_limits_on_recv(sl_h2_session_t *s, const nghttp2_frame *f)
{
    switch (f->hd.type) {
    case NGHTTP2_DATA:
        /* A zero-length DATA without END_STREAM moves nothing. */
        if (f->hd.length == 0 && !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            sl_h2_glitch(s, "empty DATA frames");
        break;
    case NGHTTP2_PING:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK))
            sl_h2_glitch(s, "PING frames");
        break;
    case NGHTTP2_SETTINGS:
        /* The first SETTINGS is the preface; every later one costs an ACK. */
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && s->lim.settings_seen++ > 0)
            sl_h2_glitch(s, "SETTINGS frames");
        break;
    case NGHTTP2_RST_STREAM: on_client_reset(s); break;
    default: break;
    }
}

void sl_h2_limits_on_frame_begin(sl_h2_session_t *s, const nghttp2_frame_hd *hd)
{
    /* With RFC 7540 priorities off nghttp2 drops PRIORITY frames (and it
     * always drops unknown types) without any other callback: count them
     * here, before the payload is even read. */
    if (hd->type == NGHTTP2_PRIORITY)
        sl_h2_glitch(s, "PRIORITY frames");
    else if (hd->type > NGHTTP2_CONTINUATION)
        sl_h2_glitch(s, "unknown frames");
}

void sl_h2_limits_on_rst_sent(sl_h2_session_t *s, const nghttp2_frame *f)
{
    uint32_t code = f->rst_stream.error_code;
    sl_h2_stream_t *st;
    /* NO_ERROR / CANCEL are ours (response done early, idle stream). */
    if (code == NGHTTP2_NO_ERROR || code == NGHTTP2_CANCEL)
        return;
    /* A reset the handler asked for (harness "reset", a failed upstream)
     * is not the client's doing. */
    st = nghttp2_session_get_stream_user_data(s->ng, f->hd.stream_id);
    if (st && st->app_reset)
        return;
    sl_h2_glitch(s, code == NGHTTP2_REFUSED_STREAM ? "streams over the concurrency limit"
                                                   : "frames we had to reset streams for");
}
