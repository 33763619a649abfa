/* sluice - SPDX-License-Identifier: MIT
 *
 * The HTTP/2 connection protocol (sl_h2_proto): an nghttp2 server session
 * driven with mem_recv / mem_send. Input goes to nghttp2 as the conn reads
 * it; output is pumped from nghttp2 into the conn's bounded output queue
 * while there is room, many frames per flush. Handler callbacks that may
 * send (on_proceed) run only between mem_send passes, never from inside
 * nghttp2. Also here: settings from config, connection and stream idle
 * timers, graceful GOAWAY on drain, and the h2c upgrade.
 */
#include "h2_int.h"
#include "../metrics.h"
#include "../slab.h"
#include "../worker.h"
#include <pthread.h>

#define PUMP_ROUNDS 16     /* mem_send / on_proceed rounds per pass */
#define DRAIN_NOTICE_S 1.0 /* shutdown notice -> final GOAWAY (about an RTT) */
#define MIN_SWEEP_S 1.0    /* finest stream-idle timer granularity */
/* How long a connection without streams keeps its frame buffer's pages
 * (trim_idle): a client that sends one request at a time should not pay a
 * madvise and a page fault per request; an idle one should cost little. */
#define IDLE_TRIM_S 0.5

/* ---- the open stream list and the proceed queue ---- */

void sl_h2_session_link(sl_h2_session_t *s, sl_h2_stream_t *st)
{
    st->prev = NULL;
    st->next = s->streams;
    if (s->streams)
        s->streams->prev = st;
    s->streams = st;
    s->nstreams++;
}

static void proceed_unlink(sl_h2_session_t *s, sl_h2_stream_t *st)
{
    if (st->pprev)
        st->pprev->pnext = st->pnext;
    else
        s->proceed_head = st->pnext;
    if (st->pnext)
        st->pnext->pprev = st->pprev;
    else
        s->proceed_tail = st->pprev;
    st->pprev = st->pnext = NULL;
    st->in_proceed = 0;
    s->nproceed--;
}

void sl_h2_session_unlink(sl_h2_session_t *s, sl_h2_stream_t *st)
{
    if (st->in_proceed)
        proceed_unlink(s, st);
    if (st->prev)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = st->next = NULL;
    s->nstreams--;
    if (s->last == st)
        s->last = NULL;
}

void sl_h2_session_queue_proceed(sl_h2_session_t *s, sl_h2_stream_t *st)
{
    if (st->in_proceed || st->closed)
        return;
    st->in_proceed = 1;
    st->pnext = NULL;
    st->pprev = s->proceed_tail;
    if (s->proceed_tail)
        s->proceed_tail->pnext = st;
    else
        s->proceed_head = st;
    s->proceed_tail = st;
    s->nproceed++;
}

void sl_h2_session_want_pump(sl_h2_session_t *s)
{
    /* Inside an entry point the pump runs on the way out. Otherwise the
     * conn's end-of-iteration flush calls our on_writable. */
    if (s->depth == 0 && !s->dead)
        sl_conn_flush_soon(s->conn);
}

/* ---- nghttp2 callbacks ---- */

static sl_h2_stream_t *stream_of(sl_h2_session_t *s, int32_t id)
{
    if (s->last && s->last->id == id)
        return s->last;
    sl_h2_stream_t *st = nghttp2_session_get_stream_user_data(s->ng, id);
    if (st)
        s->last = st;
    return st;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    sl_h2_session_t *s = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (s->nstreams >= s->cfg->limits.h2_max_concurrent_streams) {
        /* Over the advertised limit: refuse this stream only (RFC 9113
         * 5.1.2). nghttp2 still decodes the block to keep HPACK in step;
         * our RST goes first, so its own (INTERNAL_ERROR) is dropped. The
         * RST counts as a glitch when it is sent. */
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_REFUSED_STREAM);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    sl_h2_stream_t *st = sl_h2_stream_new(s, frame->hd.stream_id);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* out of memory: RST_STREAM */
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, st);
    s->last = st; /* its fields come next (stream_of) */
    return 0;
}

/* ---- closed streams (RFC 9113 5.1) ----
 *
 * nghttp2 keeps no closed streams (no_closed_streams, for memory), so it
 * cannot tell a closed id from one it never saw and ignores frames on
 * both. We remember, for the last 64 odd ids up to the highest one opened,
 * which were opened and which we reset: two bitmaps shifted as new ids
 * arrive. Below that window nothing is known and frames stay ignored. */

enum { SID_UNKNOWN, SID_NEVER_OPENED, SID_RESET_BY_US, SID_CLOSED };

static void sid_advance(sl_h2_session_t *s, int32_t id)
{
    uint32_t shift = (uint32_t)(id - s->max_sid) / 2;
    s->sid_seen = (shift >= 64 ? 0 : s->sid_seen << shift) | 1;
    s->sid_reset = shift >= 64 ? 0 : s->sid_reset << shift;
    s->max_sid = id;
}

/* What is known of client stream id (odd, <= max_sid) that nghttp2 no
 * longer holds. Ids above the last one nghttp2 processed were never
 * taken (after our GOAWAY): unknown, so ignored as nghttp2 does. */
static int closed_sid_state(sl_h2_session_t *s, int32_t id)
{
    uint32_t k = (uint32_t)(s->max_sid - id) / 2;
    if (k >= 64 || id > nghttp2_session_get_last_proc_stream_id(s->ng))
        return SID_UNKNOWN;
    if ((s->sid_reset >> k) & 1)
        return SID_RESET_BY_US; /* frames in flight: ignored (5.1 "closed") */
    return (s->sid_seen >> k) & 1 ? SID_CLOSED : SID_NEVER_OPENED;
}

/* A client id with no live stream that is neither new nor even (nghttp2
 * judges idle and even ids itself). */
static int is_forgotten_sid(sl_h2_session_t *s, int32_t id)
{
    return id > 0 && (id & 1) && id <= s->max_sid && !nghttp2_session_find_stream(s->ng, id);
}

static void note_reset_sent(sl_h2_session_t *s, int32_t id)
{
    uint32_t k = (uint32_t)(s->max_sid - id) / 2;
    if (id > 0 && (id & 1) && id <= s->max_sid && k < 64)
        s->sid_reset |= (uint64_t)1 << k;
}

static void connection_error(sl_h2_session_t *s, int32_t id, uint32_t code, const char *what)
{
    if (!s->logged_invalid) {
        s->logged_invalid = 1;
        sl_log_stream(SL_LOG_INFO, s->conn, id, "client sent %s", what);
    }
    nghttp2_session_terminate_session(s->ng, code);
    s->want_close = 1;
}

/* HEADERS (from on_begin_frame). RFC 9113 5.1.1: one that opens a stream
 * below an id already used is a connection error PROTOCOL_ERROR; 5.1: one
 * on a stream the client closed (END_STREAM both ways, or its RST_STREAM)
 * is STREAM_CLOSED. On a stream we reset it is a late trailer: ignored. */
static void check_headers_sid(sl_h2_session_t *s, int32_t id)
{
    if (id <= 0 || !(id & 1))
        return; /* nghttp2 rejects these itself */
    if (id > s->max_sid) {
        sid_advance(s, id);
        return;
    }
    if (!is_forgotten_sid(s, id))
        return;
    switch (closed_sid_state(s, id)) {
    case SID_NEVER_OPENED:
        connection_error(s, id, NGHTTP2_PROTOCOL_ERROR, "HEADERS on a stream id below the last");
        break;
    case SID_CLOSED:
        connection_error(s, id, NGHTTP2_STREAM_CLOSED, "HEADERS on a closed stream");
        break;
    default: break;
    }
}

/* A DATA header, checked before nghttp2 reads it (recv_input), which would
 * drop it silently: on a stream the client closed, or on an idle id it
 * skipped (implicitly closed, 5.1.1), it is STREAM_CLOSED. */
static void check_data_sid(sl_h2_session_t *s, int32_t id)
{
    if (!is_forgotten_sid(s, id))
        return;
    int st = closed_sid_state(s, id);
    if (st == SID_CLOSED || st == SID_NEVER_OPENED)
        connection_error(s, id, NGHTTP2_STREAM_CLOSED, "DATA on a closed stream");
}

/* RFC 9113 still makes these errors with RFC 7540 priorities off (5.3.1,
 * 6.3), and nghttp2 then drops PRIORITY frames unread. A stream that
 * depends on itself is a stream error, which 5.4.1 lets us widen: a
 * client that sends one is broken, and an idle stream cannot be reset. */
static void check_priority(sl_h2_session_t *s)
{
    const sl_h2_scan_t *sc = &s->scan;
    if (sc->sid == 0)
        connection_error(s, 0, NGHTTP2_PROTOCOL_ERROR, "PRIORITY on stream 0");
    else if (sc->length == 5 && sl_h2_scan_priority_dep(sc) == sc->sid)
        connection_error(s, sc->sid, NGHTTP2_PROTOCOL_ERROR, "PRIORITY depending on itself");
}

static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *user_data)
{
    (void)ng;
    if (hd->type == NGHTTP2_HEADERS)
        check_headers_sid(user_data, hd->stream_id);
    else if (hd->type == NGHTTP2_PRIORITY || hd->type > NGHTTP2_CONTINUATION)
        sl_h2_limits_on_frame_begin(user_data, hd);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, nghttp2_rcbuf *name,
                     nghttp2_rcbuf *value, uint8_t flags, void *user_data)
{
    sl_h2_stream_t *st;
    (void)ng;
    (void)flags;
    if (frame->hd.type != NGHTTP2_HEADERS || !(st = stream_of(user_data, frame->hd.stream_id)))
        return 0;
    sl_h2_stream_on_header(st, name, value, frame->headers.cat != NGHTTP2_HCAT_REQUEST);
    return 0;
}

/* ---- PING ACKs (sent by us: nghttp2's automatic ones are off) ---- */

static void on_ping_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    sl_h2_session_t *s = t->data;
    for (uint8_t i = 0; i < s->nping_held; i++)
        nghttp2_submit_ping(s->ng, NGHTTP2_FLAG_ACK, s->ping_held[i]);
    s->nping_held = 0;
    sl_h2_session_want_pump(s);
}

static void ping_received(sl_h2_session_t *s, const uint8_t data[8])
{
    if (s->ping_faults) {
        s->ping_faults--;
        if (!s->ping_delay_ms)
            return; /* dropped */
        if (s->nping_held < SL_ARRAY_LEN(s->ping_held)) {
            memcpy(s->ping_held[s->nping_held++], data, 8);
            if (!ev_is_active(&s->ping_timer)) {
                ev_timer_set(&s->ping_timer, s->ping_delay_ms / 1000.0, 0.);
                ev_timer_start(s->loop, &s->ping_timer);
            }
            return;
        }
    }
    nghttp2_submit_ping(s->ng, NGHTTP2_FLAG_ACK, data);
}

void sl_h2_session_ping_fault(sl_h2_session_t *s, uint32_t count, uint32_t delay_ms)
{
    s->ping_faults = count;
    s->ping_delay_ms = delay_ms;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    sl_h2_session_t *s = user_data;
    sl_h2_stream_t *st;
    int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    sl_h2_limits_on_recv(s, frame);
    switch (frame->hd.type) {
    case NGHTTP2_PING:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
            ping_received(s, frame->ping.opaque_data);
        break;
    case NGHTTP2_GOAWAY: sl_metrics_h2_frame(1, 1, frame->goaway.error_code); break;
    case NGHTTP2_RST_STREAM: sl_metrics_h2_frame(1, 0, frame->rst_stream.error_code); break;
    case NGHTTP2_HEADERS:
        if (!(st = stream_of(s, frame->hd.stream_id)))
            break;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
            sl_h2_stream_on_request(st, end);
        else if (end)
            sl_h2_stream_on_body_end(st); /* trailers end the body */
        break;
    case NGHTTP2_DATA:
        if (end && (st = stream_of(s, frame->hd.stream_id)))
            sl_h2_stream_on_body_end(st);
        break;
    default: break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user_data)
{
    sl_h2_stream_t *st = stream_of(user_data, id);
    (void)flags;
    if (!st) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    sl_h2_stream_on_data(st, data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user_data)
{
    sl_h2_stream_t *st = stream_of(user_data, id);
    (void)ng;
    if (st)
        sl_h2_stream_close(st, error_code);
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    sl_h2_session_t *s = user_data;
    sl_h2_stream_t *st;
    switch (frame->hd.type) {
    case NGHTTP2_GOAWAY: sl_metrics_h2_frame(0, 1, frame->goaway.error_code); break;
    case NGHTTP2_RST_STREAM:
        sl_metrics_h2_frame(0, 0, frame->rst_stream.error_code);
        note_reset_sent(s, frame->hd.stream_id);
        sl_h2_limits_on_rst_sent(s, frame);
        break;
    case NGHTTP2_DATA:
        /* The client's window ran out before the body did: the response
         * now waits for its WINDOW_UPDATE (a slow or stingy reader). */
        if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            if (nghttp2_session_get_remote_window_size(ng) <= 0)
                sl_metrics_h2_stall(1);
            else if (nghttp2_session_get_stream_remote_window_size(ng, frame->hd.stream_id) <= 0)
                sl_metrics_h2_stall(0);
        }
        /* fall through */
    case NGHTTP2_HEADERS:
        /* Response complete while the client is still sending: read and
         * drop the rest, as nginx does. RFC 9113 8.1 also allows
         * RST_STREAM(NO_ERROR), but clients mishandle it mid-upload (curl
         * 7.88 fails or spins). max_body_bytes and stream_idle_s bound it. */
        if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
            (st = stream_of(s, frame->hd.stream_id)) && !st->req.body_done && !st->app_reset)
            sl_h2_stream_discard_body(st);
        break;
    default: break;
    }
    return 0;
}

static int on_frame_not_send(nghttp2_session *ng, const nghttp2_frame *frame, int lib_error,
                             void *user_data)
{
    (void)ng;
    (void)lib_error;
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        note_reset_sent(user_data, frame->hd.stream_id);
        sl_h2_limits_on_rst_sent(user_data, frame);
    }
    return 0;
}

static const char *frame_name(uint8_t type)
{
    static const char *const names[] = {"DATA",          "HEADERS",      "PRIORITY", "RST_STREAM",
                                        "SETTINGS",      "PUSH_PROMISE", "PING",     "GOAWAY",
                                        "WINDOW_UPDATE", "CONTINUATION"};
    return type < SL_ARRAY_LEN(names) ? names[type] : "extension";
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *frame, int lib_error,
                            void *user_data)
{
    sl_h2_session_t *s = user_data;
    (void)ng;
    /* Logged once per connection; the glitch count bounds the rest. */
    if (!s->logged_invalid) {
        s->logged_invalid = 1;
        sl_log_stream(SL_LOG_INFO, s->conn, frame->hd.stream_id,
                      "client sent an invalid %s frame: %s", frame_name(frame->hd.type),
                      nghttp2_strerror(lib_error));
    }
    sl_h2_glitch(s, "invalid frames");
    return 0;
}

static int on_error(nghttp2_session *ng, int lib_error, const char *msg, size_t len,
                    void *user_data)
{
    sl_h2_session_t *s = user_data;
    (void)ng;
    (void)lib_error;
    sl_log(SL_LOG_DEBUG, s->conn, "nghttp2: %.*s", (int)len, msg);
    return 0;
}

static nghttp2_session_callbacks *callbacks;
static pthread_once_t callbacks_once = PTHREAD_ONCE_INIT;

/* One immutable callback table for every session in every worker. */
static void callbacks_create(void)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        sl_assert_fail("nghttp2_session_callbacks_new", __FILE__, __LINE__);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback2(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, on_frame_not_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    nghttp2_session_callbacks_set_send_data_callback(cb, sl_h2_stream_send_data);
    nghttp2_session_callbacks_set_select_padding_callback(cb, sl_h2_select_padding);
    nghttp2_session_callbacks_set_error_callback2(cb, on_error);
    callbacks = cb;
}

/* ---- session setup ---- */

static void set_options(nghttp2_option *opt, const sl_limits_t *lim)
{
    /* Window credit is given back as handlers consume (sl_req_consume). */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_auto_ping_ack(opt, 1); /* ping_received: a fault may hold them */
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_settings(opt, lim->h2_max_settings);
    nghttp2_option_set_max_outbound_ack(opt, lim->h2_max_outbound_ack);
    nghttp2_option_set_max_continuations(opt, lim->h2_max_continuations);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, lim->h2_header_table_bytes);
    nghttp2_option_set_peer_max_concurrent_streams(opt, lim->h2_max_concurrent_streams);
    /* nghttp2's own reset limiter is the backstop: one second's refill
     * more than ours, so ours (ENHANCE_YOUR_CALM) trips first. */
    nghttp2_option_set_stream_reset_rate_limit(
        opt, (uint64_t)lim->h2_reset_burst + lim->h2_reset_rate + 1, lim->h2_reset_rate);
}

static int submit_settings(sl_h2_session_t *s, const sl_limits_t *lim)
{
    nghttp2_settings_entry iv[] = {
        /* The client sees h2_max_concurrent_streams (patch_settings). */
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
         SL_H2_STREAMS_BACKSTOP(lim->h2_max_concurrent_streams)},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, lim->h2_initial_window},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, lim->h2_max_frame_size},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, lim->h2_header_list_bytes},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, lim->h2_header_table_bytes},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1}, /* RFC 8441 */
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},   /* RFC 9218 only: no tree */
    };
    int rv = nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, SL_ARRAY_LEN(iv));
    if (rv == 0 && lim->h2_conn_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE)
        rv = nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0,
                                                   (int32_t)lim->h2_conn_window);
    return rv;
}

/* nghttp2 1.52's NGHTTP2_FRAMEBUF_CHUNKLEN (lib/nghttp2_session.h): a
 * frame header, a pad length byte and the largest default payload. The
 * session allocates its frame buffer, that long, while it is created. */
#define FRAMEBUF_LEN (9 + 1 + 16384)

/* nghttp2 1.52's first stream table (lib/nghttp2_map.c): 1 << 8 buckets
 * of 16 bytes, a calloc while the session is created. It holds only zeros
 * whenever no stream is open (removal clears a bucket). */
#define STREAMTAB_LEN (256 * 16)

/* nghttp2 reserves its frame buffer with a realloc from NULL and its
 * stream table with a calloc, each once while the session is created; a
 * block that is freed or moved is no longer one of them (the table grew). */
static void forget(sl_h2_session_t *s, const void *p)
{
    if (p == s->framebuf)
        s->framebuf = NULL;
    if (p == s->streamtab)
        s->streamtab = NULL;
}

static void mem_free(void *p, void *ud)
{
    if (p)
        forget(ud, p);
    sl_slab_free(p);
}

static void *mem_calloc(size_t n, size_t size, void *ud)
{
    sl_h2_session_t *s = ud;
    void *p = sl_slab_calloc(n, size);
    if (s->capture && !s->streamtab && n * size == STREAMTAB_LEN)
        s->streamtab = p;
    return p;
}

static void *mem_realloc(void *p, size_t n, void *ud)
{
    sl_h2_session_t *s = ud;
    if (!p) {
        p = sl_slab_alloc(n);
        if (s->capture && !s->framebuf && n == FRAMEBUF_LEN)
            s->framebuf = p;
        return p;
    }
    forget(s, p);
    return sl_slab_realloc(p, n);
}

sl_h2_session_t *sl_h2_session_new(sl_conn_t *c)
{
    const sl_config_t *cfg = sl_conn_config(c);
    nghttp2_option *opt;
    int rv;
    pthread_once(&callbacks_once, callbacks_create);
    sl_h2_session_t *s = sl_calloc(1, sizeof(*s));
    s->conn = c;
    s->cfg = cfg;
    s->loop = c->table->loop;
    ev_init(&s->ping_timer, on_ping_timer);
    s->ping_timer.data = s;
    if (nghttp2_option_new(&opt) != 0)
        goto fail_option;
    set_options(opt, &cfg->limits);
    s->mem = (nghttp2_mem){s, sl_slab_mem_malloc, mem_free, mem_calloc, mem_realloc};
    s->capture = 1;
    rv = nghttp2_session_server_new3(&s->ng, callbacks, s, opt, &s->mem);
    s->capture = 0;
    nghttp2_option_del(opt);
    if (rv != 0)
        goto fail_session;
    if ((rv = submit_settings(s, &cfg->limits)) != 0)
        goto fail_settings;
    sl_h2_limits_init(&s->lim, &cfg->limits);
    sl_h2_scan_init(&s->scan);
    sl_conn_set_proto(c, &sl_h2_proto, s);
    return s;

fail_settings:
    nghttp2_session_del(s->ng);
fail_session:
fail_option:
    sl_log(SL_LOG_ERROR, c, "cannot set up the HTTP/2 session");
    sl_free(s);
    return NULL;
}

/* ---- output ---- */

/* Copy what fits of a held mem_send buffer. Returns 0 when it is all out.
 * Input pauses meanwhile: the buffer is nghttp2's and stays valid only
 * until the session is used again. */
static int flush_hold(sl_h2_session_t *s)
{
    sl_conn_t *c = s->conn;
    size_t k = SL_MIN(s->hold_len, sl_conn_out_space(c));
    if (k && sl_conn_write(c, s->hold, k) == 0) {
        s->hold += k;
        s->hold_len -= k;
    }
    if (s->hold_len == 0) {
        s->hold = NULL;
        if (s->read_paused) {
            s->read_paused = 0;
            sl_conn_resume_read(c);
        }
        return 0;
    }
    if (!s->read_paused) {
        s->read_paused = 1;
        sl_conn_pause_read(c);
    }
    return SL_EAGAIN;
}

/* Our first SETTINGS frame, copied with the configured
 * MAX_CONCURRENT_STREAMS in place of the backstop nghttp2 was given (see
 * SL_H2_STREAMS_BACKSTOP). It is the session's first frame; a few dozen
 * bytes. Returns 0 or SL_EAGAIN (no room: the caller holds the frame). */
static int write_settings(sl_h2_session_t *s, const uint8_t *p, size_t n)
{
    uint8_t buf[SL_H2_FRAME_HDLEN + 6 * 16];
    uint32_t v = s->cfg->limits.h2_max_concurrent_streams;
    s->settings_sent = 1;
    if (n > sizeof(buf) || n < SL_H2_FRAME_HDLEN || p[3] != NGHTTP2_SETTINGS ||
        (p[4] & NGHTTP2_FLAG_ACK))
        return sl_conn_write(s->conn, p, n);
    memcpy(buf, p, n);
    for (size_t off = SL_H2_FRAME_HDLEN; off + 6 <= n; off += 6) {
        if (buf[off] == 0 && buf[off + 1] == NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) {
            buf[off + 2] = (uint8_t)(v >> 24);
            buf[off + 3] = (uint8_t)(v >> 16);
            buf[off + 4] = (uint8_t)(v >> 8);
            buf[off + 5] = (uint8_t)v;
        }
    }
    return sl_conn_write(s->conn, buf, n);
}

/* Move frames from nghttp2 into c->out while it is below its high mark.
 * DATA payloads bypass this loop (sl_h2_stream_send_data). */
static int send_frames(sl_h2_session_t *s)
{
    sl_conn_t *c = s->conn;
    /* After an h2c upgrade, stay quiet until the client's preface and
     * SETTINGS arrive: the 101 then leaves alone, and clients that cap what
     * they buffer behind a 101 (curl 7.88: 32 KiB) are not overrun. */
    if (s->await_preface && s->lim.settings_seen == 0)
        return 0;
    if (s->hold_len && flush_hold(s) != 0)
        return 0;
    while (!sl_conn_out_is_high(c)) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(s->ng, &p);
        if (n < 0) {
            if (n != NGHTTP2_ERR_CALLBACK_FAILURE)
                sl_log(SL_LOG_ERROR, c, "nghttp2_session_mem_send: %s", nghttp2_strerror((int)n));
            return SL_ERROR;
        }
        if (n == 0)
            break;
        s->trimmed = 0;
        if (!s->settings_sent) {
            /* Always fits: the queue was below its high mark. */
            if (write_settings(s, p, (size_t)n) != 0)
                return SL_ERROR;
            continue;
        }
        if (sl_conn_write(c, p, (size_t)n) != 0) {
            s->hold = p;
            s->hold_len = (size_t)n;
            flush_hold(s);
            break;
        }
    }
    return 0;
}

/* Tell handlers whose buffers were taken; they may send again, which
 * resumes their DATA for the next round. Only the streams queued before
 * this call run, so a handler that re-queues itself cannot spin. */
static void run_proceed(sl_h2_session_t *s)
{
    size_t n = s->nproceed;
    while (n-- && s->proceed_head) {
        sl_h2_stream_t *st = s->proceed_head;
        proceed_unlink(s, st);
        if (st->req.cbs && st->req.cbs->on_proceed)
            st->req.cbs->on_proceed(&st->req);
    }
}

static void pump(sl_h2_session_t *s)
{
    if (s->dead || s->fatal)
        return;
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        if (send_frames(s) != 0) {
            s->fatal = 1;
            s->want_close = 1;
            return;
        }
        if (!s->proceed_head)
            return;
        run_proceed(s);
    }
    /* Still busy: continue at the end of this loop iteration. */
    sl_conn_flush_soon(s->conn);
}

/* ---- timers ---- */

static void sweep_idle_streams(sl_h2_session_t *s)
{
    double now = ev_now(s->loop), idle = s->cfg->timeouts.stream_idle_s;
    for (sl_h2_stream_t *st = s->streams; st; st = st->next) {
        if (st->app_reset || now - st->last_active < idle)
            continue;
        sl_log_stream(SL_LOG_INFO, s->conn, st->id, "stream idle for %.0f s, resetting", idle);
        st->app_reset = 1;
        nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    }
}

/* The next sweep: when the stalest stream would reach stream_idle_s. */
static double next_sweep(sl_h2_session_t *s)
{
    double now = ev_now(s->loop), idle = s->cfg->timeouts.stream_idle_s, oldest = now;
    for (sl_h2_stream_t *st = s->streams; st; st = st->next)
        if (!st->app_reset && st->last_active < oldest)
            oldest = st->last_active;
    return SL_MAX(MIN_SWEEP_S, oldest + idle - now);
}

static void arm_timer(sl_h2_session_t *s, double secs)
{
    s->timer_due = ev_now(s->loop) + secs;
    sl_conn_timer_set(s->conn, secs);
}

/* A frame or header block started and not finished (scan.c) must finish
 * within h2_frame_s of its first byte: the HTTP/2 slowloris. */
static void arm_frame_timer(sl_h2_session_t *s)
{
    double lim = s->cfg->timeouts.h2_frame_s, due, now = ev_now(s->loop);
    if (s->scan.started == 0 || lim <= 0)
        return;
    due = s->scan.started + lim;
    if (s->timer_due == 0 || s->timer_due > due)
        arm_timer(s, SL_MAX(0.001, due - now));
}

/* Returns 1 when the connection is being closed for a stalled frame. */
static int frame_timed_out(sl_h2_session_t *s)
{
    double lim = s->cfg->timeouts.h2_frame_s, now = ev_now(s->loop);
    static const char why[] = "incomplete frame timeout";
    if (s->scan.started == 0 || lim <= 0 || now - s->scan.started < lim - 0.001)
        return 0;
    if (s->read_paused) {
        s->scan.started = now; /* we stopped reading, not the client */
        return 0;
    }
    sl_log(SL_LOG_INFO, s->conn, "client left an HTTP/2 frame incomplete for %.0f s", lim);
    nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng),
                          NGHTTP2_ENHANCE_YOUR_CALM, (const uint8_t *)why, sizeof(why) - 1);
    s->want_close = 1;
    return 1;
}

/* An idle connection's frame buffer holds no frame: hand its pages back.
 * hold points into it while it holds bytes c->out had no room for. Its
 * stream table, with no stream open, holds zeros: those pages go too. */
static void trim_idle(sl_h2_session_t *s)
{
    if (!s->framebuf || s->trimmed || s->hold_len || nghttp2_session_want_write(s->ng))
        return;
    sl_slab_trim(s->framebuf);
    sl_slab_trim_zero(s->streamtab);
    s->trimmed = 1;
}

/* One conn timer serves three purposes. When the last stream closes it is
 * armed for h2_idle_s. While streams are open it keeps its deadline unless
 * that is later than stream_idle_s away, and when it fires it sweeps for
 * idle streams. With the defaults (equal timeouts) a busy connection never
 * touches it, and a sequential one re-arms it once per request. */
static void update_timer(sl_h2_session_t *s)
{
    const sl_timeouts_t *t = &s->cfg->timeouts;
    if (s->drain == 1)
        return; /* the drain timer is running */
    if (s->nstreams > 0) {
        s->idle_armed = 0;
        if (t->stream_idle_s > 0 &&
            (s->timer_due == 0 || s->timer_due > ev_now(s->loop) + t->stream_idle_s))
            arm_timer(s, t->stream_idle_s);
    } else if (!s->idle_armed) {
        s->idle_armed = 1;
        s->idle_since = ev_now(s->loop);
        arm_timer(s, s->framebuf && !s->trimmed ? SL_MIN(IDLE_TRIM_S, t->h2_idle_s) : t->h2_idle_s);
    }
    arm_frame_timer(s);
}

static void on_timer(sl_h2_session_t *s)
{
    const sl_timeouts_t *t = &s->cfg->timeouts;
    double now = ev_now(s->loop), next;
    s->idle_armed = 0; /* the conn stopped the timer: we re-arm it below */
    s->timer_due = 0;
    if (s->drain == 1) {
        nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(s->ng), NGHTTP2_NO_ERROR,
                              NULL, 0);
        s->drain = 2;
    }
    if (frame_timed_out(s))
        return;
    if (s->nstreams == 0) {
        next = t->h2_idle_s - (now - s->idle_since);
        if (next <= 0.001) {
            nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(s->ng), NGHTTP2_NO_ERROR,
                                  NULL, 0);
            s->want_close = 1;
            return;
        }
        trim_idle(s);
        s->idle_armed = 1;
    } else if (t->stream_idle_s > 0) {
        sweep_idle_streams(s);
        next = next_sweep(s);
    } else {
        return; /* streams, no stream timeout: re-armed when they are gone */
    }
    arm_timer(s, next);
}

/* ---- entry points (sl_proto_t) ---- */

/* Decide the conn's fate at the end of an entry point. */
static int finish(sl_h2_session_t *s)
{
    if (s->want_close)
        return SL_ECLOSED;
    if (!s->hold_len && !nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng))
        return SL_ECLOSED; /* GOAWAY exchanged and nothing left in flight */
    update_timer(s);
    return 0;
}

/* Hand bytes to nghttp2. Returns 0, or -1 when the session must stop
 * reading (want_close is set). */
static int feed(sl_h2_session_t *s, const uint8_t *data, size_t len)
{
    if (len == 0)
        return 0;
    ssize_t rv = nghttp2_session_mem_recv(s->ng, data, len);
    if (rv >= 0)
        return 0;
    s->want_close = 1;
    switch (rv) {
    case NGHTTP2_ERR_FLOODED:
    case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
        /* nghttp2 stops without a GOAWAY for these: send ours. */
        sl_log(SL_LOG_INFO, s->conn, "client sent a flood: %s", nghttp2_strerror((int)rv));
        nghttp2_session_terminate_session(s->ng, NGHTTP2_ENHANCE_YOUR_CALM);
        break;
    case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
        /* RFC 9113 3.4: a connection error; say so before closing. */
        sl_log(SL_LOG_INFO, s->conn, "client sent a bad HTTP/2 connection preface");
        nghttp2_session_terminate_session(s->ng, NGHTTP2_PROTOCOL_ERROR);
        break;
    case NGHTTP2_ERR_CALLBACK_FAILURE:
    case NGHTTP2_ERR_NOMEM:
        sl_log(SL_LOG_ERROR, s->conn, "nghttp2_session_mem_recv: %s", nghttp2_strerror((int)rv));
        s->fatal = 1;
        break;
    default:
        /* A connection error: nghttp2 has queued GOAWAY; flush it. */
        sl_log(SL_LOG_INFO, s->conn, "client sent invalid HTTP/2: %s", nghttp2_strerror((int)rv));
        break;
    }
    return -1;
}

/* Feed nghttp2 frame by frame where a check needs its state: up to each
 * DATA header's last byte, so every earlier frame has been processed. */
static void recv_input(sl_h2_session_t *s, const uint8_t *data, size_t len)
{
    size_t off = 0, fed = 0;
    double now = ev_now(s->loop);
    if (s->want_close || s->fatal || len == 0)
        return;
    while (off < len) {
        int ev;
        off += sl_h2_scan(&s->scan, data + off, len - off, now, &ev);
        if (ev == SL_H2_SCAN_EV_DATA) {
            if (feed(s, data + fed, off - 1 - fed) != 0)
                return;
            fed = off - 1;
            check_data_sid(s, s->scan.sid);
        } else if (ev == SL_H2_SCAN_EV_PRIORITY) {
            check_priority(s);
        }
        if (s->want_close)
            return;
    }
    feed(s, data + fed, len - fed);
}

static int h2_on_read(sl_conn_t *c, const uint8_t *data, size_t len)
{
    sl_h2_session_t *s = c->pdata;
    s->depth++;
    recv_input(s, data, len);
    pump(s);
    s->depth--;
    return finish(s);
}

static int h2_on_writable(sl_conn_t *c)
{
    sl_h2_session_t *s = c->pdata;
    s->depth++;
    pump(s);
    s->depth--;
    return finish(s);
}

static int h2_on_eof(sl_conn_t *c)
{
    (void)c;
    return SL_ECLOSED; /* nobody left to answer; on_close cancels the rest */
}

static int h2_on_timeout(sl_conn_t *c)
{
    sl_h2_session_t *s = c->pdata;
    s->depth++;
    on_timer(s);
    pump(s);
    s->depth--;
    return finish(s);
}

/* Graceful shutdown: a GOAWAY with the maximum stream id first, so the
 * client stops opening streams, then about an RTT later the real one with
 * the last stream we took. In-flight streams finish; the conn closes when
 * none remain (the worker bounds this by drain_timeout_s). */
static int h2_on_drain(sl_conn_t *c)
{
    sl_h2_session_t *s = c->pdata;
    s->depth++;
    if (s->drain == 0) {
        nghttp2_submit_shutdown_notice(s->ng);
        s->drain = 1;
        s->idle_armed = 0;
        arm_timer(s, DRAIN_NOTICE_S);
    }
    pump(s);
    s->depth--;
    return finish(s);
}

static void h2_on_close(sl_conn_t *c)
{
    sl_h2_session_t *s = c->pdata;
    /* Freeing from inside our own entry point would pull the floor out
     * from under it; entry points report SL_ECLOSED instead. */
    SL_ASSERT(s->depth == 0);
    s->dead = 1;
    ev_timer_stop(s->loop, &s->ping_timer);
    while (s->streams)
        sl_h2_stream_close(s->streams, NGHTTP2_CANCEL);
    nghttp2_session_del(s->ng);
    sl_free(s);
    c->pdata = NULL;
}

const sl_proto_t sl_h2_proto = {
    .name = "h2",
    .on_read = h2_on_read,
    .on_writable = h2_on_writable,
    .on_eof = h2_on_eof,
    .on_timeout = h2_on_timeout,
    .on_drain = h2_on_drain,
    .on_retire = h2_on_drain, /* the same GOAWAY, without the worker's deadline */
    .on_close = h2_on_close,
};

/* A connection whose reload grace ended while it spoke HTTP/1.1 (h2c
 * prior knowledge or Upgrade after a reload with reload_drain_s 0) was
 * retired already: it gets its GOAWAY as soon as it is HTTP/2. */
static int started(sl_conn_t *c, int rv)
{
    return rv == 0 && c->retired ? h2_on_drain(c) : rv;
}

int sl_h2_conn_start(sl_conn_t *c, const uint8_t *data, size_t len)
{
    if (!sl_h2_session_new(c))
        return SL_ECLOSED;
    return started(c, h2_on_read(c, data, len));
}

int sl_h2_conn_upgrade(sl_conn_t *c, const uint8_t *settings, size_t slen, const sl_req_t *h1req,
                       const uint8_t *rest, size_t restlen)
{
    sl_h2_session_t *s = sl_h2_session_new(c);
    sl_h2_stream_t *st;
    if (!s)
        return SL_ECLOSED;
    int rv =
        nghttp2_session_upgrade2(s->ng, settings, slen, sl_str_eq(h1req->method, "HEAD"), NULL);
    /* upgrade2 reports the HTTP2-Settings payload as a received SETTINGS
     * frame; the client's real preface SETTINGS is still to come. */
    s->lim.settings_seen = 0;
    s->await_preface = 1;
    s->depth++;
    if (rv != 0) {
        /* The 101 is out; answer in HTTP/2. */
        sl_log(SL_LOG_INFO, c, "client sent a bad HTTP2-Settings header: %s", nghttp2_strerror(rv));
        nghttp2_session_terminate_session(s->ng, NGHTTP2_PROTOCOL_ERROR);
        s->want_close = 1;
    } else if (!(st = sl_h2_stream_new(s, 1))) {
        nghttp2_session_terminate_session(s->ng, NGHTTP2_INTERNAL_ERROR);
        s->want_close = 1;
    } else {
        nghttp2_session_set_stream_user_data(s->ng, 1, st);
        sl_h2_stream_from_h1(st, h1req);
        sl_h2_stream_on_request(st, 1);
    }
    s->depth--;
    return started(c, h2_on_read(c, rest, restlen));
}
