/* sluice - SPDX-License-Identifier: MIT
 *
 * HTTP/2 to upstreams ("protocol": "h2c" or "h2"): per worker and server a
 * few connections (nghttp2 client sessions), each carrying up to the
 * server's SETTINGS_MAX_CONCURRENT_STREAMS proxied requests; a new one is
 * opened when all are full (bounded by max_conns). The server choice,
 * passive health and the connect with TLS are the engine's (attempt.c,
 * upconn.c); the request head is the one headers.c writes for HTTP/1.1,
 * turned into HTTP/2 fields, so both protocols forward the same fields.
 *
 * Flow control end to end. Request bodies: the client's bytes wait in a
 * bounded buffer and are credited back to the client (sl_req_consume)
 * only as nghttp2 takes them into DATA frames. Responses: automatic
 * WINDOW_UPDATEs are off; a stream's bytes are consumed (and its window
 * reopened) only when the client took them (on_proceed), so a slow client
 * holds at most one stream window (STREAM_WINDOW) per request here.
 *
 * A WebSocket from an HTTP/2 client (extended CONNECT, RFC 8441) goes on
 * as extended CONNECT once the server's SETTINGS offer it; its frames are
 * the stream's bytes both ways, like any streaming body.
 *
 * Ends: a client that goes away resets the upstream stream (CANCEL); an
 * upstream reset before the response head is a 502 (gRPC: status 14),
 * after it a reset toward the client. A GOAWAY retires its connection;
 * requests above its last stream id (never processed) and those refused
 * (REFUSED_STREAM) go to another connection, as do requests whose
 * connection failed before they were sent. gRPC requests get gRPC-shaped
 * errors (HTTP 200, grpc-status 14 UNAVAILABLE or 4 DEADLINE_EXCEEDED)
 * and their grpc-timeout bounds the wait.
 */
#include "proxy_int.h"
#include "../conn.h"
#include "../config.h"
#include "../log.h"
#include "../slab.h"
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define STREAM_WINDOW (256 * 1024)
#define CONN_WINDOW (16 * 1024 * 1024)
#define READ_CHUNK 16384
#define WRITE_BATCH 65536 /* frames gathered before one write */

typedef struct px_h2conn h2c_t;
typedef struct h2s h2s_t;

struct px_h2conn {
    px_wstate_t *ws;
    int idx;
    px_uconn_t *u;
    nghttp2_session *ng;
    h2s_t *streams; /* attached requests, submitted or waiting for the connect */
    size_t nstreams;
    uint32_t max_streams;    /* the server's SETTINGS_MAX_CONCURRENT_STREAMS */
    uint8_t *wbuf;           /* frames gathered for one write, then what it did not take */
    size_t wlen, woff, wcap; /* wcap <= WRITE_BATCH + one chunk of mem_send */
    int io_events;
    unsigned ready : 1;    /* connected (and TLS done) */
    unsigned settings : 1; /* the server's first SETTINGS came */
    unsigned retired : 1;  /* GOAWAY or failure: no new streams */
    unsigned depth;        /* inside session calls: do not free */
    h2c_t *next;           /* the server's list */
};

struct h2s {
    sl_req_t *req;
    const px_route_t *rt;
    px_attempt_t at; /* choice, tries, log; at.u stays NULL (the conn has it) */
    h2c_t *c;
    int32_t id; /* 0 until submitted */
    h2s_t *prev, *next;
    sl_buf_t body;      /* client -> upstream, credited back as nghttp2 takes it */
    sl_buf_t resp;      /* upstream -> client, bounded by STREAM_WINDOW */
    size_t sending;     /* bytes of the outstanding sl_resp_send */
    size_t taken;       /* body bytes nghttp2 took: the retry bound */
    sl_headers_t inter; /* a 1xx head being received */
    int status;
    ev_timer timer;
    ev_tstamp deadline; /* grpc-timeout, 0 when none */
    char request_id[33];
    char traceparent[64];
    unsigned body_fin : 1;
    unsigned in_send : 1; /* an sl_resp_send waits for on_proceed */
    unsigned got_head : 1;
    unsigned up_end : 1; /* the upstream ended its side */
    unsigned done : 1;   /* the client's answer is final or reset */
    unsigned grpc : 1;
    unsigned in_trailers : 1;
    unsigned connect_proto : 1; /* extended CONNECT: waits for the SETTINGS */
};

static void conn_flush(h2c_t *c);
static void conn_kick(h2c_t *c);
static void stream_attempt(h2s_t *st);
static void hand_over(h2s_t *st);

/* ---- small helpers ---- */

static struct ev_loop *loop_of(const h2c_t *c)
{
    return c->ws->loop;
}

static void st_log(const h2s_t *st, const char *cause)
{
    sl_log_stream(SL_LOG_WARN, st->req->conn, st->req->stream_id,
                  "proxy: upstream \"%s\" server %s: h2: %s", st->at.up->name,
                  st->c ? st->at.up->servers[st->c->idx].name : "-", cause);
}

static void set_timer(h2s_t *st, double secs)
{
    struct ev_loop *loop = st->at.ws->loop;
    ev_timer_stop(loop, &st->timer);
    if (st->deadline > 0) {
        double left = st->deadline - ev_now(loop);
        secs = secs > 0 ? SL_MIN(secs, left) : left;
        if (secs <= 0)
            secs = 1e-6;
    }
    if (secs > 0) {
        ev_timer_set(&st->timer, secs, 0.);
        ev_timer_start(loop, &st->timer);
    }
}

static void detach(h2s_t *st)
{
    h2c_t *c = st->c;
    if (!c)
        return;
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = st->next = NULL;
    if (st->id > 0 && c->ng) {
        nghttp2_session_set_stream_user_data(c->ng, st->id, NULL);
        /* Bytes the client never took still hold the connection window. */
        size_t held = sl_buf_len(&st->resp);
        if (held)
            nghttp2_session_consume_connection(c->ng, held);
    }
    c->nstreams--;
    st->c = NULL;
    st->id = 0;
}

/* gRPC's own error shape: HTTP 200, grpc-status and grpc-message in a
 * header block that ends the stream (trailers-only). */
static void answer_grpc(h2s_t *st, int code, const char *msg)
{
    char s[8];
    snprintf(s, sizeof(s), "%d", code);
    sl_req_t *req = st->req;
    req->res.status = 200;
    sl_resp_header_add(req, "content-type", "application/grpc");
    sl_resp_header_add(req, "grpc-status", s);
    sl_resp_header_add(req, "grpc-message", msg);
    req->res.content_length = -1;
    sl_resp_send(req, NULL, 0, 1);
}

/* Before the head: an error answer; after: a reset toward the client. */
static void st_fail(h2s_t *st, int status, const char *msg, uint32_t reset)
{
    sl_req_t *req = st->req;
    detach(st);
    ev_timer_stop(st->at.ws->loop, &st->timer);
    if (st->done)
        return;
    st->done = 1;
    if (req->head_sent) {
        sl_resp_reset(req, reset);
        return;
    }
    if (st->grpc) {
        answer_grpc(st, status == 504 ? 4 : 14, msg);
        return;
    }
    sl_resp_error(req, status, msg);
}

/* Never processed by the server (not sent, refused, above a GOAWAY's
 * last stream id): safe to send elsewhere while the client saw nothing. */
static void st_retry_or_fail(h2s_t *st, const char *cause)
{
    detach(st);
    if (!st->done && !st->req->head_sent && st->at.attempts <= st->at.up->retries) {
        stream_attempt(st);
        return;
    }
    st_fail(st, 502, cause, SL_RESET_INTERNAL_ERROR);
}

/* ---- sending the response to the client ---- */

/* read_idle_s runs only while the upstream owes bytes; while the client
 * is slow its own timeouts apply. A grpc-timeout runs all along. */
static void arm_idle(h2s_t *st)
{
    int waiting_up = !st->up_end && !st->in_send && sl_buf_is_empty(&st->resp);
    set_timer(st, waiting_up ? st->at.up->to.read_idle_s : 0);
}

/* Move what the buffer holds to the client: one send at a time. */
static void st_pump(h2s_t *st)
{
    sl_req_t *req = st->req;
    if (st->done || st->in_send || !st->got_head)
        return;
    const uint8_t *p = NULL;
    size_t n = 0;
    if (sl_buf_peek(&st->resp, &p, &n) != 0)
        n = 0;
    int final = st->up_end && n == sl_buf_len(&st->resp);
    if (!final && n == 0 && req->head_sent) {
        arm_idle(st);
        return;
    }
    st->sending = n;
    st->in_send = 1;
    if (final) {
        st->done = 1;
        ev_timer_stop(st->at.ws->loop, &st->timer);
    } else {
        arm_idle(st);
    }
    sl_resp_send(req, p, n, final);
}

static void st_on_proceed(sl_req_t *req)
{
    h2s_t *st = req->hdata;
    size_t n = st->sending;
    st->sending = 0;
    st->in_send = 0;
    sl_buf_skip(&st->resp, n);
    if (n && st->c && st->id > 0) {
        nghttp2_session_consume(st->c->ng, st->id, n); /* the client took them */
        conn_kick(st->c);
    }
    st_pump(st);
}

/* ---- the request ---- */

static int is_grpc(const sl_req_t *req)
{
    const sl_header_t *ct = sl_req_header(req, "content-type");
    return ct && ct->value.n >= 16 && strncasecmp(ct->value.p, "application/grpc", 16) == 0;
}

/* grpc-timeout: 1-8 digits and a unit (H M S m u n). */
static double grpc_timeout(const sl_req_t *req)
{
    const sl_header_t *h = sl_req_header(req, "grpc-timeout");
    if (!h || h->value.n < 2 || h->value.n > 9)
        return 0;
    uint64_t v;
    if (sl_str_parse_u64((sl_str_t){h->value.p, h->value.n - 1}, 0, 99999999, &v) != 0)
        return 0;
    switch (h->value.p[h->value.n - 1]) {
    case 'H': return (double)v * 3600;
    case 'M': return (double)v * 60;
    case 'S': return (double)v;
    case 'm': return (double)v / 1e3;
    case 'u': return (double)v / 1e6;
    case 'n': return (double)v / 1e9;
    default: return 0;
    }
}

/* The client's trailers, after the last DATA (submitting them from the
 * data source callback is allowed). */
static int submit_trailers(h2s_t *st)
{
    const sl_headers_t *t = &st->req->trailers;
    nghttp2_nv *nva = sl_pool_alloc(&st->req->pool, t->n * sizeof(*nva));
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++)
        if (!px_trailer_dropped(t->v[i].name))
            nva[n++] = (nghttp2_nv){(uint8_t *)t->v[i].name.p, (uint8_t *)t->v[i].value.p,
                                    t->v[i].name.n, t->v[i].value.n, NGHTTP2_NV_FLAG_NONE};
    return n ? nghttp2_submit_trailer(st->c->ng, st->id, nva, n) : -1;
}

static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
    SL_UNUSED(ng);
    SL_UNUSED(id);
    SL_UNUSED(user);
    h2s_t *st = src->ptr;
    size_t n = sl_buf_read(&st->body, buf, len);
    if (n) {
        st->taken += n;
        sl_req_consume(st->req, n); /* the upstream took them: the client may send more */
    }
    if (st->body_fin && sl_buf_is_empty(&st->body)) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->req->trailers.n && submit_trailers(st) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    } else if (n == 0)
        return NGHTTP2_ERR_DEFERRED; /* resumed by st_on_body */
    return (ssize_t)n;
}

/* Submit st on c. 0, or -1 when the head cannot be made (answered). An
 * extended CONNECT waits for the server's SETTINGS (submit_waiting). */
static int submit(h2s_t *st)
{
    h2c_t *c = st->c;
    if (st->connect_proto && !c->settings) {
        set_timer(st, st->at.up->to.first_byte_s);
        return 0;
    }
    if (st->connect_proto &&
        !nghttp2_session_get_remote_settings(c->ng, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL)) {
        st_log(st, "the server does not offer extended CONNECT (RFC 8441)");
        st_fail(st, 502, "bad gateway", SL_RESET_INTERNAL_ERROR);
        return -1;
    }
    int body = st->req->content_length >= 0 ? 1 : st->body_fin && !sl_buf_len(&st->body) ? 0 : 2;
    px_head_in_t in = {st->req, st->rt, &st->at.up->servers[c->idx], body, st->request_id,
                       st->traceparent};
    px_nv_out_t out = {.cap = px_build_request_nv_max(&in), .tls = c->u->ssl != NULL};
    out.nv = sl_pool_alloc(&st->req->pool, out.cap * sizeof(*out.nv));
    if (st->connect_proto)
        out.protocol = st->req->protocol;
    /* nghttp2 copies the fields at submit: the scratch may be reused. */
    ssize_t n = px_build_request_nv(&in, &out, px_head_scratch(), PX_REQ_HEAD_MAX);
    if (n < 0) {
        st_fail(st, 431, "request header fields too large", SL_RESET_INTERNAL_ERROR);
        return -1;
    }
    nghttp2_nv *nva = out.nv;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    int has_body = !(st->body_fin && sl_buf_is_empty(&st->body) && st->req->body_done &&
                     st->req->trailers.n == 0);
    int32_t id = nghttp2_submit_request(c->ng, NULL, nva, (size_t)n, has_body ? &prd : NULL, st);
    if (id < 0) {
        st_retry_or_fail(st, nghttp2_strerror(id));
        return -1;
    }
    st->id = id;
    set_timer(st, st->at.up->to.first_byte_s);
    return 0;
}

static void submit_waiting(h2c_t *c)
{
    for (h2s_t *st = c->streams, *next; st; st = next) {
        next = st->next;
        if (st->id == 0)
            submit(st);
    }
}

/* ---- nghttp2 callbacks ---- */

static h2s_t *stream_of(h2c_t *c, int32_t id)
{
    return nghttp2_session_get_stream_user_data(c->ng, id);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    SL_UNUSED(ng);
    h2s_t *st = stream_of(user, f->hd.stream_id);
    if (st && st->got_head)
        st->in_trailers = 1;
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    SL_UNUSED(ng);
    SL_UNUSED(flags);
    h2s_t *st = stream_of(user, f->hd.stream_id);
    if (!st || st->done)
        return 0;
    sl_req_t *req = st->req;
    sl_str_t n = {(const char *)name, namelen};
    if (sl_str_eq(n, ":status")) {
        uint64_t s = 0;
        sl_str_parse_u64((sl_str_t){(const char *)value, valuelen}, 100, 999, &s);
        st->status = (int)s;
        return 0;
    }
    if (namelen && name[0] == ':')
        return 0;
    if (st->in_trailers) {
        if (!sl_field_is_connection_specific(n)) {
            char *nn = sl_pool_printf(&req->pool, "%.*s", (int)namelen, name);
            char *vv = sl_pool_printf(&req->pool, "%.*s", (int)valuelen, value);
            sl_resp_trailer_add(req, nn, vv);
        }
        return 0;
    }
    if (st->status >= 100 && st->status < 200) {
        if (!sl_field_is_connection_specific(n))
            sl_headers_add(&req->pool, &st->inter, (const char *)name, namelen, (const char *)value,
                           valuelen);
        return 0;
    }
    if (sl_str_eq(n, "content-length") && !req->is_head) {
        int64_t cl = sl_str_to_u64((sl_str_t){(const char *)value, valuelen});
        req->res.content_length = cl;
    }
    if (!px_resp_header_dropped(st->rt, n, (sl_str_t){"", 0}))
        sl_resp_header_addn(req, (const char *)name, namelen, (const char *)value, valuelen);
    return 0;
}

static void take_head(h2s_t *st)
{
    const px_route_t *rt = st->rt;
    sl_req_t *req = st->req;
    for (size_t i = 0; i < rt->nset_resp; i++)
        sl_resp_header_addn(req, rt->set_resp_headers[i].name.p, rt->set_resp_headers[i].name.n,
                            rt->set_resp_headers[i].value.p, rt->set_resp_headers[i].value.n);
    req->res.status = st->status;
    st->got_head = 1;
    px_attempt_ok(&st->at, st->c->idx);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    SL_UNUSED(ng);
    h2c_t *c = user;
    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
        c->max_streams =
            nghttp2_session_get_remote_settings(ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        c->settings = 1;
        submit_waiting(c);
        return 0;
    }
    if (f->hd.type == NGHTTP2_GOAWAY) {
        c->retired = 1; /* streams above last_stream_id close as refused */
        return 0;
    }
    h2s_t *st = f->hd.stream_id ? stream_of(c, f->hd.stream_id) : NULL;
    if (!st || st->done)
        return 0;
    int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS && !st->got_head) {
        if (st->status >= 100 && st->status < 200) {
            if (st->status != 100)
                sl_resp_informational(st->req, st->status, &st->inter);
            st->inter.n = 0;
            st->status = 0;
            return 0;
        }
        take_head(st);
    }
    if (end) {
        st->up_end = 1;
        ev_timer_stop(st->at.ws->loop, &st->timer);
    }
    if (f->hd.type == NGHTTP2_HEADERS || end)
        st_pump(st);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    SL_UNUSED(flags);
    h2c_t *c = user;
    h2s_t *st = stream_of(c, id);
    if (!st || st->done) {
        nghttp2_session_consume(ng, id, len); /* nobody reads it: keep the conn window open */
        return 0;
    }
    if (sl_buf_write_all(&st->resp, data, len) != 0) {
        /* More than the window we granted: the server broke flow control. */
        nghttp2_session_consume_connection(ng, len);
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_FLOW_CONTROL_ERROR);
        return 0;
    }
    st_pump(st);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    SL_UNUSED(ng);
    h2c_t *c = user;
    h2s_t *st = stream_of(c, id);
    if (!st)
        return 0;
    if (code == NGHTTP2_NO_ERROR && st->up_end) {
        detach(st); /* the rest of the answer is in st->resp */
        return 0;
    }
    char cause[96];
    snprintf(cause, sizeof(cause), "stream reset (%s)", nghttp2_http2_strerror(code));
    st_log(st, cause);
    if (code == NGHTTP2_REFUSED_STREAM && st->taken == 0) {
        st_retry_or_fail(st, cause);
        return 0;
    }
    st_fail(st, 502, "bad gateway", code == NGHTTP2_CANCEL ? SL_RESET_CANCEL : code);
    return 0;
}

/* ---- the connection ---- */

static void conn_set_io(h2c_t *c, int events)
{
    px_uconn_t *u = c->u;
    if (events == c->io_events)
        return;
    ev_io_stop(loop_of(c), &u->io);
    c->io_events = events;
    if (events) {
        ev_io_modify(&u->io, events); /* same fd: no re-registration with the kernel */
        ev_io_start(loop_of(c), &u->io);
    }
}

static void conn_unlink(h2c_t *c)
{
    for (h2c_t **pp = &c->ws->srv[c->idx].h2; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
}

static void conn_free(h2c_t *c)
{
    conn_unlink(c);
    px_uconn_close(c->u);
    nghttp2_session_del(c->ng);
    sl_free(c->wbuf);
    sl_free(c);
}

/* The connection is lost: its streams go elsewhere when that is safe.
 * count_health: a connect or TLS failure, which says the server is bad. */
static void conn_fail(h2c_t *c, const char *cause, int count_health)
{
    c->retired = 1;
    c->depth++;
    if (count_health)
        px_health_fail(c->ws, c->idx, ev_now(loop_of(c)));
    while (c->streams) {
        h2s_t *st = c->streams;
        st_log(st, cause);
        st->at.tried[c->idx / 8] |= (uint8_t)(1u << (c->idx % 8));
        if (!c->ready || st->id == 0 || st->taken == 0) /* the server saw nothing of it */
            st_retry_or_fail(st, cause);
        else
            st_fail(st, 502, "bad gateway", SL_RESET_INTERNAL_ERROR);
    }
    c->depth--;
    conn_free(c);
}

/* Gather what nghttp2 has into wbuf, up to WRITE_BATCH: mem_send hands out
 * a frame at a time, and one write(2) (one TLS record run) per frame would
 * be most of the cost. Returns bytes gathered, or -1 (connection failed). */
static ssize_t gather(h2c_t *c)
{
    c->wlen = c->woff = 0;
    while (c->wlen < WRITE_BATCH) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(c->ng, &p);
        if (n < 0) {
            conn_fail(c, nghttp2_strerror((int)n), 0);
            return -1;
        }
        if (n == 0)
            break;
        if (c->wlen + (size_t)n > c->wcap) { /* mem_send's bytes live until its next call */
            c->wcap = c->wlen + (size_t)n;
            c->wbuf = sl_realloc(c->wbuf, c->wcap);
        }
        memcpy(c->wbuf + c->wlen, p, (size_t)n);
        c->wlen += (size_t)n;
    }
    return (ssize_t)c->wlen;
}

/* Write what nghttp2 has, keeping what the socket does not take. */
static void conn_flush(h2c_t *c)
{
    if (!c->ready || c->depth)
        return;
    px_uconn_t *u = c->u;
    for (;;) {
        while (c->woff < c->wlen) {
            ssize_t w = px_io_write(u->fd, u->ssl, c->wbuf + c->woff, c->wlen - c->woff);
            if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                conn_set_io(c, EV_READ | EV_WRITE);
                return;
            }
            if (w <= 0) {
                conn_fail(c, "send failed", 0);
                return;
            }
            c->woff += (size_t)w;
        }
        ssize_t n = gather(c);
        if (n < 0)
            return;
        if (n == 0)
            break;
    }
    conn_set_io(c, EV_READ);
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng)) {
        conn_fail(c, "the session ended", 0);
        return;
    }
    /* Idle: kept for keepalive_idle_s, then closed, holding no buffer. */
    ev_timer_stop(loop_of(c), &u->timer);
    if (c->nstreams == 0) {
        sl_free(c->wbuf);
        c->wbuf = NULL;
        c->wcap = 0;
        ev_timer_set(&u->timer, c->ws->up->to.keepalive_idle_s, 0.);
        ev_timer_start(loop_of(c), &u->timer);
    }
}

/* Output is due: written when the loop sees the socket writable, so what
 * many streams submit in one loop iteration leaves in one write. */
static void conn_kick(h2c_t *c)
{
    if (c->ready && !c->depth)
        conn_set_io(c, EV_READ | EV_WRITE);
}

static void conn_read(h2c_t *c)
{
    px_uconn_t *u = c->u;
    uint8_t buf[READ_CHUNK];
    for (int i = 0; i < 16; i++) {
        ssize_t n = px_io_read(u->fd, u->ssl, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (n <= 0) {
            conn_fail(c, n == 0 ? "closed the connection" : "read failed", 0);
            return;
        }
        c->depth++;
        ssize_t r = nghttp2_session_mem_recv(c->ng, buf, (size_t)n);
        c->depth--;
        if (r < 0) {
            conn_fail(c, nghttp2_strerror((int)r), 0);
            return;
        }
    }
    conn_flush(c);
}

/* "auto": the server chose HTTP/1.1. Remember it (this worker, this
 * config), give the connection to the HTTP/1.1 pool (nothing was written
 * on it) and send the waiting requests the HTTP/1.1 way. */
static void learned_h1(h2c_t *c)
{
    px_uconn_t *u = c->u;
    c->ws->srv[c->idx].alpn_h1 = 1;
    ev_io_stop(loop_of(c), &u->io);
    ev_timer_stop(loop_of(c), &u->timer);
    conn_unlink(c);
    px_uconn_release(u, 1); /* first: the first request handed over takes it */
    c->u = NULL;
    while (c->streams)
        hand_over(c->streams);
    nghttp2_session_del(c->ng);
    sl_free(c->wbuf);
    sl_free(c);
}

static int conn_connected(h2c_t *c)
{
    char cause[256];
    int rc = px_uconn_progress(c->u, cause, sizeof(cause));
    if (rc < 0) {
        conn_fail(c, cause, 1);
        return -1;
    }
    if (rc == 0) {
        conn_set_io(c, px_uconn_events(c->u));
        return -1;
    }
    if (c->u->ssl) {
        const unsigned char *a = NULL;
        unsigned alen = 0;
        SSL_get0_alpn_selected(c->u->ssl, &a, &alen);
        if (alen != 2 || memcmp(a, "h2", 2) != 0) {
            if (c->ws->up->proto == PX_PROTO_AUTO) {
                learned_h1(c);
                return -1;
            }
            conn_fail(c, "the server did not choose h2 (ALPN)", 1);
            return -1;
        }
    }
    c->ready = 1;
    ev_timer_stop(loop_of(c), &c->u->timer);
    return 0;
}

static void on_conn_io(struct ev_loop *loop, ev_io *io, int revents)
{
    SL_UNUSED(loop);
    h2c_t *c = io->data;
    if (!c->ready) {
        if (conn_connected(c) != 0)
            return;
        revents |= EV_WRITE;
    }
    if ((revents & EV_READ) || px_io_pending(c->u->ssl)) {
        conn_read(c); /* flushes, may free c */
        return;
    }
    conn_flush(c);
}

static void on_conn_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    h2c_t *c = t->data;
    if (c->ready) { /* idle past keepalive_idle_s */
        if (c->nstreams == 0)
            conn_free(c);
        return;
    }
    char cause[64];
    snprintf(cause, sizeof(cause), "connect timed out after %gs", c->ws->up->to.connect_s);
    conn_fail(c, cause, 1);
}

/* One callback table and option set for every worker: made once. */
static nghttp2_session_callbacks *cbs;
static nghttp2_option *opt;
static pthread_once_t cbs_once = PTHREAD_ONCE_INIT;

static void make_callbacks(void)
{
    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
        sl_assert_fail("nghttp2 callbacks", __FILE__, __LINE__);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option_set_no_auto_window_update(opt, 1);
}

static h2c_t *conn_new(px_wstate_t *ws, int idx)
{
    pthread_once(&cbs_once, make_callbacks);
    px_uconn_t *u = px_uconn_connect(ws, idx);
    if (!u)
        return NULL;
    h2c_t *c = sl_calloc(1, sizeof(*c));
    c->ws = ws;
    c->idx = idx;
    c->u = u;
    c->max_streams = 100; /* until the server's SETTINGS say otherwise */
    if (nghttp2_session_client_new3(&c->ng, cbs, c, opt, sl_slab_nghttp2_mem()) != 0) {
        px_uconn_close(u);
        sl_free(c);
        errno = ENOMEM;
        return NULL;
    }
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW}};
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, SL_ARRAY_LEN(iv));
    nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    ev_io_init(&u->io, on_conn_io, u->fd, 0);
    u->io.data = c;
    ev_init(&u->timer, on_conn_timeout);
    u->timer.data = c;
    c->next = ws->srv[idx].h2;
    ws->srv[idx].h2 = c;
    if (u->connecting) {
        conn_set_io(c, px_uconn_events(u));
        ev_timer_set(&u->timer, ws->up->to.connect_s, 0.);
        ev_timer_start(ws->loop, &u->timer);
    } else {
        c->ready = 1;
    }
    return c;
}

/* A connection to server idx with room for one more stream. */
static h2c_t *conn_for(px_wstate_t *ws, int idx)
{
    for (h2c_t *c = ws->srv[idx].h2; c; c = c->next)
        if (!c->retired && c->nstreams < c->max_streams)
            return c;
    return conn_new(ws, idx);
}

/* ---- attempts ---- */

/* "auto" and the server speaks only HTTP/1.1: the request goes the
 * HTTP/1.1 way, with the body bytes that arrived meanwhile. */
static void hand_over(h2s_t *st)
{
    sl_req_t *req = st->req;
    detach(st);
    ev_timer_stop(st->at.ws->loop, &st->timer);
    sl_buf_dispose(&st->resp);
    px_h1_start(req, st->rt, &st->body, st->body_fin);
    sl_buf_dispose(&st->body);
}

static void stream_attempt(h2s_t *st)
{
    while (!st->c) {
        int idx = px_attempt_pick(&st->at);
        if (idx < 0) {
            st_fail(st, -idx, -idx == 503 ? "no upstream server available" : "bad gateway",
                    SL_RESET_INTERNAL_ERROR);
            return;
        }
        if (st->at.ws->srv[idx].alpn_h1) {
            hand_over(st);
            return;
        }
        st->at.attempts++;
        st->at.sent_at = ev_now(st->at.ws->loop);
        sl_counter_add(&st->at.ws->srv[idx].m_attempts, 1);
        h2c_t *c = conn_for(st->at.ws, idx);
        if (!c) {
            px_attempt_connect_failed(&st->at, idx, errno);
            if (st->at.attempts > st->at.up->retries) {
                st_fail(st, 502, "bad gateway", SL_RESET_INTERNAL_ERROR);
                return;
            }
            continue;
        }
        st->c = c;
        st->next = c->streams;
        if (c->streams)
            c->streams->prev = st;
        c->streams = st;
        c->nstreams++;
    }
    if (submit(st) != 0)
        return;
    conn_kick(st->c);
}

/* ---- sl_handler_cbs_t ---- */

static void st_on_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    h2s_t *st = req->hdata;
    if (st->done) {
        sl_req_consume(req, len); /* nobody takes them: drain */
        return;
    }
    if (len && sl_buf_write_all(&st->body, data, len) != 0) {
        /* The protocol's window bounds what a client may send: a broken
         * bound, never a dropped byte. */
        sl_log_stream(SL_LOG_ERROR, req->conn, req->stream_id,
                      "proxy: %zu body bytes past the buffer bound", len);
        h2c_t *c = st->c;
        if (c && st->id > 0)
            nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        st_fail(st, 502, "bad gateway", SL_RESET_INTERNAL_ERROR);
        if (c)
            conn_kick(c);
        return;
    }
    st->body_fin |= fin ? 1 : 0;
    if (st->c && st->id > 0) {
        nghttp2_session_resume_data(st->c->ng, st->id);
        conn_kick(st->c);
    }
}

static void on_st_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    h2s_t *st = t->data;
    char cause[96];
    int deadline = st->deadline > 0 && ev_now(st->at.ws->loop) >= st->deadline - 1e-3;
    if (deadline)
        snprintf(cause, sizeof(cause), "grpc-timeout reached");
    else if (!st->got_head)
        snprintf(cause, sizeof(cause), "no response within first_byte_s %gs",
                 st->at.up->to.first_byte_s);
    else
        snprintf(cause, sizeof(cause), "no response bytes within read_idle_s %gs",
                 st->at.up->to.read_idle_s);
    st_log(st, cause);
    if (st->c && st->id > 0) {
        h2c_t *c = st->c;
        nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        st_fail(st, 504, deadline ? "deadline exceeded" : "upstream timed out", SL_RESET_CANCEL);
        conn_kick(c);
        return;
    }
    st_fail(st, 504, "upstream timed out", SL_RESET_CANCEL);
}

static void st_on_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    h2s_t *st = req->hdata;
    h2c_t *c = st->c;
    ev_timer_stop(st->at.ws->loop, &st->timer);
    /* Still attached: the upstream stream is open one way or both (a
     * WebSocket whose server ended first waits for our end). The client
     * went away: so does the request. */
    if (c && st->id > 0)
        nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    detach(st);
    sl_buf_dispose(&st->body);
    sl_buf_dispose(&st->resp);
    if (c)
        conn_kick(c);
}

static const sl_handler_cbs_t h2s_cbs = {
    .on_body = st_on_body,
    .on_proceed = st_on_proceed,
    .on_close = st_on_close,
};

void px_h2_start(sl_req_t *req, const px_route_t *rt)
{
    h2s_t *st = sl_pool_alloc(&req->pool, sizeof(*st));
    memset(st, 0, sizeof(*st));
    st->req = req;
    st->rt = rt;
    px_attempt_init(&st->at, req, rt->up, "h2: ");
    sl_buf_init(&st->body, st->at.ws->bufpool, px_body_chunks(req));
    sl_buf_init(&st->resp, st->at.ws->bufpool, STREAM_WINDOW / SL_BUF_CHUNK_SIZE + 2);
    st->body_fin = req->body_done;
    st->grpc = is_grpc(req);
    st->connect_proto = req->protocol.n > 0;
    double gt = st->grpc ? grpc_timeout(req) : 0;
    if (gt > 0)
        st->deadline = ev_now(st->at.ws->loop) + gt;
    ev_init(&st->timer, on_st_timeout);
    st->timer.data = st;
    px_make_ids(req, st->rt, st->request_id, st->traceparent);
    req->hdata = st;
    req->cbs = &h2s_cbs;
    stream_attempt(st);
}

void px_h2_discard(px_wstate_t *ws, int live)
{
    for (size_t i = 0; i < ws->up->nservers; i++) {
        while (ws->srv[i].h2) {
            h2c_t *c = ws->srv[i].h2;
            ws->srv[i].h2 = c->next;
            (live ? px_uconn_close : px_uconn_discard)(c->u);
            nghttp2_session_del(c->ng);
            sl_free(c->wbuf);
            sl_free(c);
        }
    }
}
