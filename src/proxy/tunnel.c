/* sluice - SPDX-License-Identifier: MIT
 *
 * WebSocket tunnelling for the "proxy" handler. A WebSocket handshake from
 * the client (HTTP/1.1 Upgrade, or HTTP/2 extended CONNECT with :protocol
 * websocket) becomes a fresh HTTP/1.1 "GET ... Upgrade: websocket"
 * connection to a server of the upstream; after its 101 the two byte
 * streams are joined, frames passed through untouched (both sides speak
 * RFC 6455 framing, HTTP/2 only carries it in DATA frames):
 *
 *   client --on_body--> out (bounded: the protocol's body window)
 *          --write--> upstream; sl_req_consume only for bytes written
 *   upstream --read--> in[PX_IN_CAP] --sl_resp_send--> client
 *          no read while a send is outstanding (until on_proceed)
 *
 * HTTP/1.1 client: its Sec-WebSocket-Key, -Protocol and -Extensions go
 * upstream as they are; the upstream's Accept / Protocol / Extensions come
 * back in our 101. HTTP/2 client: there is no key, so one is made here and
 * the upstream's Sec-WebSocket-Accept is checked against it;
 * Sec-WebSocket-Extensions is not offered upstream (permessage-deflate
 * parameters were negotiated for the other hop's framing and an h2 client
 * cannot have offered them in an h1 form we could vouch for); the client
 * gets 200. The connection is never pooled: it ends with the WebSocket.
 */
#include "proxy_int.h"
#include "../config.h"
#include "../conn.h"
#include "../log.h"
#include "../ws/ws.h"
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct px_tun {
    sl_req_t *req;
    const px_route_t *rt;
    px_attempt_t at; /* server choice, attempts, the connection (attempt.c) */
    char key[25];    /* Sec-WebSocket-Key the upstream sees */
    char request_id[33];
    char traceparent[64];
    char *head; /* the upgrade request */
    size_t head_len, head_off;
    sl_buf_t out; /* client -> upstream */
    uint8_t *in;  /* upstream -> client */
    size_t in_len, in_off;
    unsigned open : 1;       /* 101 in, client answered: bytes flow */
    unsigned sending : 1;    /* an sl_resp_send is outstanding */
    unsigned client_fin : 1; /* the client ended its side */
    unsigned shut_wr : 1;    /* upstream write side shut down */
    unsigned up_eof : 1;
    unsigned done : 1; /* our answer is final; nothing more goes out */
} px_tun_t;

static void tun_attempt(px_tun_t *t);
static void tun_update(px_tun_t *t);

/* ---- small helpers ---- */

/* Before the client was answered: an error answer. After: abort. */
static void tun_fail(px_tun_t *t, int status, const char *msg)
{
    px_attempt_drop(&t->at);
    t->done = 1;
    if (t->req->head_sent) {
        sl_resp_reset(t->req, SL_RESET_INTERNAL_ERROR);
        return;
    }
    sl_resp_error(t->req, status, msg);
}

/* A connection failure before anything was sent on: retry another server. */
static void connect_failed(px_tun_t *t, const char *cause, int status)
{
    px_attempt_failed(&t->at, cause, 1);
    px_attempt_drop(&t->at);
    if (t->at.attempts <= t->at.up->retries) {
        tun_attempt(t);
        return;
    }
    tun_fail(t, status, status == 504 ? "upstream timed out" : "bad gateway");
}

/* ---- the upgrade request ---- */

static int drop_for_upstream(const sl_req_t *req, sl_str_t name)
{
    if (req->proto != SL_PROTO_H2)
        return 0;
    return sl_str_eq(name, "sec-websocket-key") || sl_str_eq(name, "sec-websocket-extensions");
}

/* px_build_request on a view of req: GET, no body, the h2 client's
 * unusable fields left out; then our Upgrade fields. */
static int build_head(px_tun_t *t)
{
    sl_req_t view = *t->req;
    sl_header_t *v = sl_pool_alloc(&t->req->pool, (t->req->headers.n + 1) * sizeof(*v));
    view.headers = (sl_headers_t){v, 0, t->req->headers.n + 1};
    for (size_t i = 0; i < t->req->headers.n; i++)
        if (!drop_for_upstream(t->req, t->req->headers.v[i].name))
            v[view.headers.n++] = t->req->headers.v[i];
    view.method = (sl_str_t){"GET", 3};
    view.content_length = -1;
    char *buf = px_head_scratch();
    size_t cap = PX_REQ_HEAD_MAX - 128; /* room for our fields below */
    px_head_in_t in = {&view, t->rt, &t->at.up->servers[t->at.u->idx], 0, t->request_id,
                       t->traceparent};
    ssize_t n = px_build_request(&in, buf, cap);
    if (n < 2)
        return SL_ETOOBIG;
    n -= 2; /* reopen the head: the final CRLF comes after our fields */
    /* keepalive 0 adds "connection: close"; this connection upgrades. */
    static const char cc[] = "connection: close\r\n";
    if ((size_t)n >= sizeof(cc) - 1 && memcmp(buf + n - (sizeof(cc) - 1), cc, sizeof(cc) - 1) == 0)
        n -= (ssize_t)(sizeof(cc) - 1);
    if (t->req->proto == SL_PROTO_H2)
        n += snprintf(buf + n, 64, "sec-websocket-key: %s\r\n", t->key);
    n += snprintf(buf + n, 64, "upgrade: websocket\r\nconnection: upgrade\r\n\r\n");
    px_head_set(&t->head, &t->head_len, &t->head_off, buf, (size_t)n);
    return 0;
}

/* ---- the upstream's answer ---- */

static const sl_header_t *head_field(const sl_h1_head_t *h, const char *name)
{
    for (size_t i = 0; i < h->nheaders; i++)
        if (sl_str_caseeq(h->headers[i].name, name))
            return &h->headers[i];
    return NULL;
}

/* A 101 that really accepts our key. Returns NULL or what is wrong. */
static const char *check_101(px_tun_t *t, const sl_h1_head_t *h)
{
    const sl_header_t *up = head_field(h, "upgrade");
    const sl_header_t *co = head_field(h, "connection");
    const sl_header_t *acc = head_field(h, "sec-websocket-accept");
    if (!up || !sl_str_has_token(up->value, "websocket") || !co ||
        !sl_str_has_token(co->value, "upgrade"))
        return "101 without Upgrade: websocket / Connection: upgrade";
    const char *key = t->key;
    size_t klen = strlen(t->key);
    if (t->req->proto != SL_PROTO_H2) {
        const sl_header_t *k = sl_req_header(t->req, "sec-websocket-key");
        key = k->value.p; /* sl_ws_check made sure there is one */
        klen = k->value.n;
    }
    char want[29];
    sl_ws_accept_value(key, klen, want);
    if (!acc || !sl_str_eq(acc->value, want))
        return "wrong Sec-WebSocket-Accept";
    if (t->req->proto == SL_PROTO_H2 && head_field(h, "sec-websocket-extensions"))
        return "extensions accepted that were not offered";
    return NULL;
}

static void answer_client(px_tun_t *t, const sl_h1_head_t *h)
{
    sl_req_t *req = t->req;
    sl_str_t conn = {"", 0};
    const sl_header_t *co = head_field(h, "connection");
    if (co)
        conn = co->value;
    int h2 = req->proto == SL_PROTO_H2;
    req->res.status = h2 ? 200 : 101;
    req->res.content_length = -1;
    for (size_t i = 0; i < h->nheaders; i++) {
        const sl_header_t *f = &h->headers[i];
        if (px_resp_header_dropped(t->rt, f->name, conn) ||
            sl_str_caseeq(f->name, "content-length") ||
            (h2 && sl_str_caseeq(f->name, "sec-websocket-accept")))
            continue;
        sl_resp_header_addn(req, f->name.p, f->name.n, f->value.p, f->value.n);
    }
    for (size_t i = 0; i < t->rt->nset_resp; i++)
        sl_resp_header_addn(req, t->rt->set_resp_headers[i].name.p,
                            t->rt->set_resp_headers[i].name.n, t->rt->set_resp_headers[i].value.p,
                            t->rt->set_resp_headers[i].value.n);
    if (!h2)
        sl_resp_header_add(req, "upgrade", "websocket");
}

/* Parse the handshake answer. Returns 1 when open, 0 for more bytes,
 * SL_ECLOSED after an error answer. */
static int take_answer(px_tun_t *t)
{
    const sl_config_t *cfg = sl_conn_config(t->req->conn);
    sl_h1_limits_t lim = {cfg->limits.h1_uri_bytes, PX_HEAD_MAX, PX_MAX_RESP_HEADERS};
    for (;;) {
        sl_header_t hv[PX_MAX_RESP_HEADERS];
        sl_h1_head_t h;
        size_t used = 0;
        memset(&h, 0, sizeof(h));
        h.headers = hv;
        h.max_headers = PX_MAX_RESP_HEADERS;
        int rc = sl_h1_parse_response(t->in + t->in_off, t->in_len - t->in_off, &lim, &h, &used);
        if (rc == SL_H1_INCOMPLETE) {
            if (t->in_len == PX_IN_CAP || t->in_len - t->in_off >= PX_HEAD_MAX) {
                px_attempt_log(&t->at, "response head too large");
                tun_fail(t, 502, "bad gateway");
                return SL_ECLOSED;
            }
            return 0;
        }
        if (rc != SL_H1_OK) {
            px_attempt_log(&t->at, "malformed response head");
            tun_fail(t, 502, "bad gateway");
            return SL_ECLOSED;
        }
        t->in_off += used;
        if (h.status >= 100 && h.status < 200 && h.status != 101)
            continue; /* 100 / 103 before the 101: nothing for the client */
        if (h.status != 101) {
            char cause[96];
            snprintf(cause, sizeof(cause), "upgrade refused with %d", h.status);
            px_attempt_log(&t->at, cause);
            int st = h.status >= 400 && h.status < 500 ? h.status : 502;
            tun_fail(t, st, "upstream refused the WebSocket upgrade");
            return SL_ECLOSED;
        }
        const char *bad = check_101(t, &h);
        if (bad) {
            px_attempt_log(&t->at, bad);
            tun_fail(t, 502, "bad gateway");
            return SL_ECLOSED;
        }
        px_attempt_ok(&t->at, t->at.u->idx);
        answer_client(t, &h);
        t->open = 1;
        return 1;
    }
}

/* ---- moving bytes ---- */

/* Send what in[] holds past in_off (the first call sends the head too).
 * Upstream EOF with nothing left ends our side of the stream. */
static void pump_in(px_tun_t *t)
{
    if (t->sending || t->done)
        return;
    size_t n = t->in_len - t->in_off;
    int final = t->up_eof;
    if (!n && !final && t->req->head_sent)
        return;
    if (final) {
        px_attempt_drop(&t->at);
        t->done = 1;
    } else {
        t->sending = 1;
    }
    sl_resp_send(t->req, n ? t->in + t->in_off : NULL, n, final);
}

static int write_some(px_tun_t *t, const void *p, size_t n)
{
    ssize_t w = px_io_write(t->at.u->fd, t->at.u->ssl, p, n);
    if (w < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    return (int)w;
}

/* Write the head, then (once open) client bytes. Returns 0 or SL_ECLOSED. */
static int flush_out(px_tun_t *t)
{
    while (t->head_off < t->head_len) {
        int w = write_some(t, t->head + t->head_off, t->head_len - t->head_off);
        if (w < 0) {
            connect_failed(t, "send failed", 502);
            return SL_ECLOSED;
        }
        if (w == 0)
            return 0;
        t->head_off += (size_t)w;
    }
    while (t->open && !sl_buf_is_empty(&t->out)) {
        const uint8_t *p;
        size_t n;
        sl_buf_peek(&t->out, &p, &n);
        int w = write_some(t, p, n);
        if (w < 0) {
            px_attempt_log(&t->at, "send failed");
            tun_fail(t, 502, "bad gateway");
            return SL_ECLOSED;
        }
        if (w == 0)
            return 0;
        sl_buf_skip(&t->out, (size_t)w);
        sl_req_consume(t->req, (size_t)w);
    }
    if (t->open && t->client_fin && !t->shut_wr) {
        if (t->at.u->ssl)
            SSL_shutdown(t->at.u->ssl); /* close_notify first; reads still work */
        shutdown(t->at.u->fd, SHUT_WR); /* the client's end reaches the app */
        t->shut_wr = 1;
    }
    return 0;
}

static void tun_update(px_tun_t *t)
{
    if (!t->at.u || t->done)
        return;
    if (t->at.u->connecting) {
        px_attempt_set_io(&t->at, px_uconn_events(t->at.u));
        return;
    }
    int ev = 0;
    if (!t->sending && !t->up_eof && t->in_len < PX_IN_CAP)
        ev |= EV_READ;
    if (t->head_off < t->head_len || (t->open && !sl_buf_is_empty(&t->out)))
        ev |= EV_WRITE;
    px_attempt_set_io(&t->at, ev);
    if ((ev & EV_READ) && px_io_pending(t->at.u->ssl))
        ev_feed_event(t->at.ws->loop, &t->at.u->io, EV_READ); /* TLS bytes already decrypted */
    /* Before the 101: first_byte_s. After: read_idle_s of silence both ways. */
    px_attempt_set_timer(&t->at, t->open ? t->at.up->to.read_idle_s : t->at.up->to.first_byte_s);
}

static void do_read(px_tun_t *t)
{
    ssize_t r = px_io_read(t->at.u->fd, t->at.u->ssl, t->in + t->in_len, PX_IN_CAP - t->in_len);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        if (!t->open) {
            connect_failed(t, "closed the connection before the 101", 502);
            return;
        }
        t->up_eof = 1;
    } else {
        t->in_len += (size_t)r;
    }
    if (!t->open) {
        int rc = take_answer(t);
        if (rc <= 0) {
            if (rc == 0)
                tun_update(t);
            return;
        }
        if (flush_out(t) != 0) /* client bytes that waited for the 101 */
            return;
    }
    pump_in(t);
    tun_update(t);
}

/* ---- upstream events ---- */

static void on_tun_io(struct ev_loop *loop, ev_io *io, int revents)
{
    SL_UNUSED(loop);
    px_tun_t *t = io->data;
    if (t->at.u->connecting) {
        char cause[256];
        int rc = px_uconn_progress(t->at.u, cause, sizeof(cause));
        if (rc < 0) {
            connect_failed(t, cause, 502);
            return;
        }
        if (rc == 0) {
            tun_update(t);
            return;
        }
        revents = EV_WRITE;
    }
    if ((revents & EV_WRITE) && flush_out(t) != 0)
        return;
    if ((revents & EV_READ) && !t->sending && !t->done && t->at.u)
        do_read(t);
    else
        tun_update(t);
}

static void on_tun_timeout(struct ev_loop *loop, ev_timer *tm, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    px_tun_t *t = tm->data;
    char cause[128];
    const px_timeouts_t *to = &t->at.up->to;
    if (t->at.u->connecting) {
        snprintf(cause, sizeof(cause), "connect timed out after %gs", to->connect_s);
        connect_failed(t, cause, 504);
    } else if (!t->open) {
        snprintf(cause, sizeof(cause), "no 101 within first_byte_s %gs", to->first_byte_s);
        px_attempt_log(&t->at, cause);
        tun_fail(t, 504, "upstream timed out");
    } else {
        snprintf(cause, sizeof(cause), "idle for read_idle_s %gs; closed", to->read_idle_s);
        px_attempt_log(&t->at, cause);
        px_attempt_drop(&t->at);
        t->done = 1;
        sl_resp_reset(t->req, SL_RESET_CANCEL);
    }
}

/* ---- attempts ---- */

static void tun_attempt(px_tun_t *t)
{
    /* A fresh connection: the tunnel keeps it for the WebSocket's life. */
    int status = px_attempt_next(&t->at, 0, on_tun_io, on_tun_timeout, t);
    if (status) {
        tun_fail(t, status, status == 503 ? "no upstream server available" : "bad gateway");
        return;
    }
    px_uconn_t *u = t->at.u;
    u->owner = t;
    if (build_head(t) != 0) {
        px_attempt_drop(&t->at);
        tun_fail(t, 431, "request header fields too large");
        return;
    }
    if (u->connecting) {
        px_attempt_set_io(&t->at, EV_WRITE);
        px_attempt_set_timer(&t->at, t->at.up->to.connect_s);
        return;
    }
    if (flush_out(t) == 0)
        tun_update(t);
}

/* ---- sl_handler_cbs_t ---- */

static void tun_on_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    px_tun_t *t = req->hdata;
    if (t->done || !t->at.u) {
        sl_req_consume(req, len); /* nobody to take them: drain */
        return;
    }
    if (len && sl_buf_write_all(&t->out, data, len) != 0) {
        px_attempt_log(&t->at, "client bytes past the window bound");
        tun_fail(t, 502, "bad gateway");
        return;
    }
    if (fin)
        t->client_fin = 1;
    if (t->open && !t->at.u->connecting && flush_out(t) != 0)
        return;
    tun_update(t);
}

static void tun_on_proceed(sl_req_t *req)
{
    px_tun_t *t = req->hdata;
    t->sending = 0;
    if (t->done)
        return;
    t->in_off = t->in_len = 0; /* all of it was sent */
    pump_in(t);                /* an EOF that waited for the send */
    tun_update(t);
}

static void tun_on_close(sl_req_t *req, int err)
{
    px_tun_t *t = req->hdata;
    if (t->at.u && err)
        sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id,
                      "proxy: client went away; upstream \"%s\" websocket closed", t->at.up->name);
    px_attempt_drop(&t->at);
    sl_buf_dispose(&t->out);
    sl_free(t->head);
    sl_free(t->in);
}

static const sl_handler_cbs_t tun_cbs = {
    .on_body = tun_on_body,
    .on_proceed = tun_on_proceed,
    .on_close = tun_on_close,
};

int px_is_ws_request(const sl_req_t *req)
{
    if (req->proto == SL_PROTO_H2)
        return sl_str_eq(req->method, "CONNECT") && req->protocol.n > 0;
    const sl_header_t *up = sl_req_header(req, "upgrade");
    return up && sl_str_has_token(up->value, "websocket");
}

static void refuse(sl_req_t *req, int status)
{
    sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id,
                  "client sent a bad WebSocket handshake; answered %d", status);
    if (status == 426)
        sl_resp_header_add(req, "sec-websocket-version", "13");
    sl_resp_error(req, status, "bad WebSocket handshake");
}

void px_tunnel_start(sl_req_t *req, const px_route_t *rt)
{
    int st = sl_ws_check(req);
    if (st) {
        refuse(req, st);
        return;
    }
    if (req->proto == SL_PROTO_H2 &&
        (rt->up->proto == PX_PROTO_H2C || rt->up->proto == PX_PROTO_H2)) {
        px_h2_start(req, rt); /* RFC 8441 on both hops (h2up.c) */
        return;
    }
    px_tun_t *t = sl_pool_alloc(&req->pool, sizeof(*t));
    memset(t, 0, sizeof(*t));
    t->req = req;
    t->rt = rt;
    px_attempt_init(&t->at, req, rt->up, "websocket: ");
    sl_buf_init(&t->out, t->at.ws->bufpool, px_body_chunks(req));
    t->in = sl_malloc(PX_IN_CAP);
    uint8_t k[16];
    if (RAND_bytes(k, sizeof(k)) != 1)
        memset(k, 0x5a, sizeof(k)); /* the key only proves a WebSocket peer */
    EVP_EncodeBlock((unsigned char *)t->key, k, sizeof(k));
    px_make_ids(req, t->rt, t->request_id, t->traceparent);
    req->hdata = t;
    req->cbs = &tun_cbs;
    tun_attempt(t);
}
