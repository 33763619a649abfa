/* sluice - SPDX-License-Identifier: MIT
 *
 * The HTTP/1.1 server protocol (sl_h1_proto), its connection half: the
 * states, the input buffer, the exchange's life and the sl_conn callbacks
 * (server_int.h names the other three files). It turns bytes from an
 * sl_conn into sl_req_t exchanges for the router. One exchange is live at a time; pipelined requests wait, unparsed,
 * in a small per-connection input buffer until the current response is
 * complete and its request body has been read, so answers leave in order.
 * A cleartext connection may leave for HTTP/2 here: on the client preface
 * (prior knowledge) or on "Upgrade: h2c".
 *
 * Re-entrancy: handler callbacks (on_proceed, on_close) never run inside a
 * sl_resp_* call. send() only copies and marks; on_proceed runs from
 * on_writable (the conn calls it after each flush), and the end of an
 * exchange (access log, on_close, dispose) runs after the handler call
 * that finished it has returned: after dispatch, after on_body, or from
 * on_writable. reset() is carried out after the handler returns too.
 */
#include "server_int.h"
#include "../finish.h"
#include "../log.h"
#include "../router.h"
#include <stdio.h>

#define IN_SLACK 65536    /* one read on top of h1_header_bytes */
#define STACK_HEADERS 128 /* parse array on the stack up to this many fields */
#define PROCEED_ROUNDS 16 /* on_proceed calls per on_writable */

static int on_read(sl_conn_t *c, const uint8_t *data, size_t len);
static int process_input(h1_conn_t *hc, size_t newoff);

static const sl_req_ops_t h1_req_ops = {
    .send = sl_h1_op_send,
    .sendfile = sl_h1_op_sendfile,
    .informational = sl_h1_op_informational,
    .reset = sl_h1_op_reset,
    .consume = sl_h1_op_consume,
    .fault = sl_h1_op_fault,
};

/* The only place the state changes; the asserts list the legal moves. */
void sl_h1_set_state(h1_conn_t *hc, h1_state_t to)
{
    h1_state_t from = hc->state;
    switch (to) {
    case H1_HEAD: SL_ASSERT(from != H1_HEAD); break;
    case H1_ACTIVE: SL_ASSERT(from == H1_HEAD); break;
    case H1_DISCARD: SL_ASSERT(from == H1_ACTIVE); break;
    case H1_IDLE: SL_ASSERT(from == H1_ACTIVE || from == H1_DISCARD); break;
    }
    hc->state = to;
}

void sl_h1_set_timer(h1_conn_t *hc, double secs)
{
    if (!hc->reset_pending)
        sl_conn_timer_set(hc->c, secs);
}

/* Carry out an abort at the next loop iteration, outside handler code. */
void sl_h1_arm_reset(h1_conn_t *hc)
{
    hc->reset_pending = 1;
    sl_conn_pause_read(hc->c);
    sl_conn_timer_set(hc->c, 1e-6);
}

static size_t in_max(const h1_conn_t *hc)
{
    return hc->cfg->limits.h1_header_bytes + IN_SLACK;
}

/* A request head past h1_header_bytes: 431 while reading one, else close. */
static int too_much_ahead(h1_conn_t *hc)
{
    sl_log(SL_LOG_INFO, hc->c, "client sent more than %zu bytes ahead", in_max(hc));
    return hc->state == H1_HEAD ? sl_h1_send_error(hc, 431) : SL_ECLOSED;
}

/* Keep bytes for later. Bounded: while an exchange is live reads stop
 * once h1_header_bytes are waiting, so one read more always fits. */
int sl_h1_in_append(h1_conn_t *hc, const uint8_t *p, size_t n)
{
    if (hc->in_len + n > in_max(hc))
        return SL_ETOOBIG;
    if (hc->in_len + n > hc->in_cap) {
        size_t cap = hc->in_cap ? hc->in_cap * 2 : 4096;
        if (cap < hc->in_len + n)
            cap = hc->in_len + n;
        hc->in = sl_realloc(hc->in, SL_MIN(cap, in_max(hc)));
        hc->in_cap = SL_MIN(cap, in_max(hc));
    }
    memcpy(hc->in + hc->in_len, p, n);
    hc->in_len += n;
    return 0;
}

/* Drop n bytes from the front; an empty buffer is freed so idle
 * keep-alive connections hold no input memory. */
static void in_consume(h1_conn_t *hc, size_t n)
{
    hc->in_len -= n;
    if (hc->in_len == 0) {
        sl_free(hc->in);
        hc->in = NULL;
        hc->in_cap = 0;
    } else if (n) {
        memmove(hc->in, hc->in + n, hc->in_len);
    }
}

void sl_h1_update_read(h1_conn_t *hc)
{
    sl_conn_t *c = hc->c;
    hc->paused_input = hc->state == H1_ACTIVE && hc->body == BODY_NONE &&
                       hc->in_len >= hc->cfg->limits.h1_header_bytes;
    /* Held body bytes go first: read on only once they are delivered. */
    int held = hc->body != BODY_NONE && hc->in_len > 0;
    if (hc->paused_body || hc->paused_input || held || hc->reset_pending || hc->eof)
        sl_conn_pause_read(c);
    else if (c->read_paused)
        sl_conn_resume_read(c);
}

void sl_h1_next_request(h1_conn_t *hc)
{
    sl_h1_set_state(hc, hc->in_len ? H1_HEAD : H1_IDLE);
    hc->body = BODY_NONE;
    hc->paused_body = 0;
    sl_h1_set_timer(hc,
                    hc->in_len ? hc->cfg->timeouts.h1_header_s : hc->cfg->timeouts.h1_keepalive_s);
    sl_h1_update_read(hc);
}

/* The response is queued in full: log, tell the handler, free the request.
 * Then read on: the rest of an unread body is dropped (bounded) or the
 * connection closes. Runs only outside handler calls. */
static int finish_exchange(h1_conn_t *hc)
{
    h1_exch_t *x = &hc->x;
    sl_req_t *req = &x->req;
    sl_req_finished(req);
    x->closed = 1;
    hc->live = 0;
    if (req->cbs && req->cbs->on_close)
        req->cbs->on_close(req, 0);
    int expect_unsent = req->expect_continue && !x->continue_sent && !x->got_body;
    sl_req_dispose(req);
    if (hc->close_after || hc->draining || hc->eof || sl_conn_is_draining(hc->c) ||
        sl_conn_is_retiring(hc->c))
        return SL_ECLOSED;
    if (hc->body != BODY_NONE) {
        uint64_t budget = 4 * (uint64_t)hc->cfg->limits.body_window_bytes;
        if (expect_unsent || (hc->body == BODY_LENGTH && hc->body_left > budget))
            return SL_ECLOSED;
        sl_h1_set_state(hc, H1_DISCARD);
        hc->discard_left = budget;
        hc->paused_body = 0;
        sl_h1_set_timer(hc, hc->cfg->timeouts.request_body_s);
        sl_h1_update_read(hc);
        return 0;
    }
    sl_h1_next_request(hc);
    return 0;
}

/* After handler code returned: carry out a reset, move output on, end the
 * exchange when its response is complete. */
int sl_h1_after_handler(h1_conn_t *hc)
{
    if (hc->reset_pending)
        return SL_ECLOSED;
    if (!hc->live)
        return 0;
    if (sl_h1_pump(hc) != 0)
        return SL_ECLOSED;
    if (hc->x.resp == RESP_DONE)
        return finish_exchange(hc);
    return 0;
}

/* Copy n bytes and a NUL to *dst (lower-cased if asked) and advance it. */
static sl_str_t put_str(char **dst, const char *s, size_t n, int lower)
{
    char *d = *dst;
    if (lower) {
        for (size_t k = 0; k < n; k++)
            d[k] = (s[k] >= 'A' && s[k] <= 'Z') ? (char)(s[k] + 32) : s[k];
    } else {
        memcpy(d, s, n);
    }
    d[n] = '\0';
    *dst = d + n + 1;
    return (sl_str_t){d, n};
}

/* Fill req from a parsed head: strings and lower-cased names go into the
 * request pool in one allocation (the head points into a buffer that does
 * not outlive this call). */
void sl_h1_build_req(h1_conn_t *hc, const sl_h1_head_t *head)
{
    sl_conn_t *c = hc->c;
    h1_exch_t *x = &hc->x;
    sl_req_t *req = &x->req;
    /* sl_req_init clears the req; clear the rest of the exchange. */
    memset((char *)x + offsetof(h1_exch_t, hc), 0, sizeof(*x) - offsetof(h1_exch_t, hc));
    sl_req_init(req, SL_PROTO_H1, c);
    req->body_window = sl_conn_config(c)->limits.body_window_bytes;
    x->hc = hc;
    x->res_left = -1;
    req->version_minor = head->version_minor;
    req->stream_id = (int32_t)(++hc->nreq & 0x7fffffff);
    req->worker_id = sl_conn_worker_id(c);
    size_t total = head->method.n + head->target.n + 2;
    for (size_t i = 0; i < head->nheaders; i++)
        total += head->headers[i].name.n + head->headers[i].value.n + 2;
    if (head->nheaders) {
        req->headers.v = sl_pool_alloc(&req->pool, head->nheaders * sizeof(sl_header_t));
        req->headers.cap = head->nheaders;
    }
    char *dst = sl_pool_alloc(&req->pool, total);
    req->method = put_str(&dst, head->method.p, head->method.n, 0);
    req->target = put_str(&dst, head->target.p, head->target.n, 0);
    for (size_t i = 0; i < head->nheaders; i++) {
        const sl_header_t *h = &head->headers[i];
        sl_header_t *d = &req->headers.v[req->headers.n++];
        d->name = put_str(&dst, h->name.p, h->name.n, 1);
        d->value = put_str(&dst, h->value.p, h->value.n, 0);
        if (h->value.p == head->host.p)
            req->authority = d->value;
    }
    /* Absolute-form (RFC 9112 3.2.2): its authority wins over Host. */
    sl_str_t t = req->target;
    sl_str_t auth;
    if (sl_h1_absolute_form(t, &auth, &t)) /* validated like Host by the parser */
        req->authority = auth;
    const char *q = memchr(t.p, '?', t.n);
    req->path = (sl_str_t){t.p, q ? (size_t)(q - t.p) : t.n};
    req->query = q ? (sl_str_t){q + 1, t.n - (size_t)(q - t.p) - 1} : SL_STR("");
    req->scheme = c->ssl ? SL_STR("https") : SL_STR("http");
    req->protocol = SL_STR("");
    req->content_length = head->chunked ? -1 : head->content_length;
    req->is_head = sl_str_eq(req->method, "HEAD");
    req->expect_continue = head->expect_continue;
    req->tls.version = c->ssl ? c->tls_version : NULL;
    req->tls.alpn = c->alpn;
    req->tls.sni = c->sni;
    sl_req_set_client_cert(req, c->client_cert);
    req->peer = c->tag.peer;
    req->ops = &h1_req_ops;
    req->pdata = x;
}

/* A complete head: check the body bound, set up body framing and timers,
 * and hand the request to the router. */
static int start_exchange(h1_conn_t *hc, const sl_h1_head_t *head, const uint8_t *rest,
                          size_t restlen)
{
    const sl_config_t *cfg = hc->cfg;
    int64_t max = cfg->limits.max_body_bytes;
    if (max > 0 && head->content_length > max) {
        sl_log(SL_LOG_INFO, hc->c, "client sent Content-Length %lld over limits.max_body_bytes",
               (long long)head->content_length);
        return sl_h1_send_error(hc, 413);
    }
    int r = sl_h1_try_upgrade(hc, head, rest, restlen);
    if (r != 0)
        return r;
    sl_h1_build_req(hc, head);
    hc->live = 1;
    sl_h1_set_state(hc, H1_ACTIVE);
    hc->keep_alive = head->keep_alive;
    hc->upgrade_req = head->upgrade && head->version_minor == 1;
    hc->body_seen = 0;
    hc->too_big = 0;
    if (head->chunked) {
        hc->body = BODY_CHUNKED;
        sl_h1_chunked_init(&hc->chunk, cfg->limits.h1_header_bytes);
        hc->chunk.trailers = &hc->x.req.trailers; /* the proxy passes them on */
        hc->chunk.pool = &hc->x.req.pool;
    } else if (head->content_length > 0) {
        hc->body = BODY_LENGTH;
        hc->body_left = (uint64_t)head->content_length;
    } else {
        hc->body = BODY_NONE;
        hc->x.req.body_done = 1;
    }
    sl_h1_set_timer(hc, hc->body != BODY_NONE ? cfg->timeouts.request_body_s
                                              : cfg->timeouts.stream_idle_s);
    sl_req_t *req = &hc->x.req;
    sl_router_dispatch(cfg, req);
    /* 100-continue once a body reader is attached and no answer started
     * (RFC 9110 10.1.1); never after a final response began. */
    if (hc->live && !hc->reset_pending && req->expect_continue && hc->body != BODY_NONE &&
        !req->head_sent && req->cbs && req->cbs->on_body && restlen == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (sl_conn_write(hc->c, cont, sizeof(cont) - 1) == 0)
            hc->x.continue_sent = 1;
    }
    return sl_h1_after_handler(hc);
}

/* Parse the head at p. newoff > 0: the first newoff bytes were scanned by
 * an earlier call, so skip the parse unless a line ended since (or a bound
 * may have been crossed): slow-drip heads cost O(lines x head), not
 * O(bytes x head). */
static int parse_head(h1_conn_t *hc, const uint8_t *p, size_t len, size_t newoff, size_t *used)
{
    const sl_limits_t *l = &hc->cfg->limits;
    if (hc->state == H1_IDLE) {
        sl_h1_set_state(hc, H1_HEAD); /* the header timer counts from the first byte */
        sl_h1_set_timer(hc, hc->cfg->timeouts.h1_header_s);
    }
    if (newoff > 0 && len < l->h1_header_bytes && !memchr(p + newoff, '\n', len - newoff) &&
        (len <= l->h1_uri_bytes || memchr(p, '\n', newoff)))
        return H1_INCOMPLETE;
    sl_header_t stack_hdrs[STACK_HEADERS], *hdrs = stack_hdrs;
    size_t max_headers = l->h1_max_headers;
    if (max_headers > STACK_HEADERS)
        hdrs = sl_malloc(max_headers * sizeof(*hdrs));
    sl_h1_limits_t lim = {l->h1_uri_bytes, l->h1_header_bytes, max_headers};
    sl_h1_head_t head = {.headers = hdrs, .max_headers = max_headers};
    sl_h1_parse_status_t st = sl_h1_parse_request(p, len, &lim, &head, used);
    int r;
    if (st == SL_H1_INCOMPLETE) {
        r = H1_INCOMPLETE;
    } else if (st == SL_H1_NOT_HTTP) {
        /* Not HTTP/1.x: an HTTP/1.1 answer would be noise to that peer. */
        sl_log(SL_LOG_INFO, hc->c, "client sent a request line that is not HTTP; closed");
        r = SL_ECLOSED;
    } else if (st != SL_H1_OK) {
        sl_log(SL_LOG_INFO, hc->c, "client sent a bad request head (%s); answered %d",
               head.error ? head.error : "?", (int)st);
        r = sl_h1_send_error(hc, (int)st);
    } else {
        r = start_exchange(hc, &head, p + *used, len - *used);
    }
    if (hdrs != stack_hdrs)
        sl_free(hdrs);
    return r;
}

/* Consume p[0..len) as far as the state allows; *used says how far.
 * Returns 0, SL_ECLOSED, H1_SWITCHED or H1_SWITCHED_CLOSE (hc is gone). */
static int process(h1_conn_t *hc, const uint8_t *p, size_t len, size_t newoff, size_t *used)
{
    size_t off = 0;
    *used = 0;
    while (off < len) {
        if (hc->reset_pending)
            return SL_ECLOSED;
        if (hc->body != BODY_NONE) {
            ssize_t n = sl_h1_feed_body(hc, p + off, len - off);
            if (n < 0)
                return (int)n;
            if (n == 0)
                break; /* no credit: the rest is held */
            off += (size_t)n;
            continue;
        }
        if (hc->state == H1_ACTIVE)
            break; /* pipelined: waits for the current response */
        size_t n = 0;
        int r = parse_head(hc, p + off, len - off, newoff > off ? newoff - off : 0, &n);
        if (r == H1_INCOMPLETE)
            break;
        if (r != 0)
            return r;
        off += n;
    }
    *used = off;
    return 0;
}

/* Map internal results to what the conn expects from a proto callback. */
static int conn_result(int r)
{
    if (r == H1_SWITCHED)
        return 0;
    if (r == H1_SWITCHED_CLOSE || r < 0)
        return SL_ECLOSED;
    return 0;
}

/* Work through buffered input (after an exchange ended). */
static int process_input(h1_conn_t *hc, size_t newoff)
{
    size_t used;
    int r = process(hc, hc->in, hc->in_len, newoff, &used);
    if (r != 0)
        return r;
    in_consume(hc, used);
    sl_h1_update_read(hc);
    return 0;
}

static int on_read(sl_conn_t *c, const uint8_t *data, size_t len)
{
    h1_conn_t *hc = c->pdata;
    if (!hc)
        return SL_ECLOSED;
    if (hc->nreq == 0 && !hc->not_preface && !hc->live && sl_h1_can_h2c(hc)) {
        int r = sl_h1_check_preface(hc, data, len);
        if (r == H1_INCOMPLETE)
            return 0;
        if (r != 0)
            return conn_result(r);
    } else if (hc->nreq == 0) {
        hc->not_preface = 1;
    }
    int r;
    if (hc->in_len == 0) {
        size_t used;
        r = process(hc, data, len, 0, &used);
        if (r == 0 && used < len && sl_h1_in_append(hc, data + used, len - used) != 0) {
            r = too_much_ahead(hc);
        }
        if (r == 0)
            sl_h1_update_read(hc);
    } else {
        size_t old = hc->in_len;
        size_t room = in_max(hc) - hc->in_len;
        /* Never more than the bound; a head that needs more is refused. */
        if (sl_h1_in_append(hc, data, SL_MIN(len, room)) != 0)
            return SL_ECLOSED;
        r = process_input(hc, old);
        if (r == 0 && len > room) {
            r = too_much_ahead(hc);
        }
    }
    return conn_result(r);
}

static int on_writable(sl_conn_t *c)
{
    h1_conn_t *hc = c->pdata;
    if (!hc)
        return 0;
    if (hc->reset_pending)
        return SL_ECLOSED;
    if (!hc->live)
        return 0;
    h1_exch_t *x = &hc->x;
    sl_req_t *req = &x->req;
    if (sl_h1_pump(hc) != 0)
        return SL_ECLOSED;
    for (int i = 0; i < PROCEED_ROUNDS && x->resp == RESP_PROCEED && !sl_conn_out_is_high(c); i++) {
        x->resp = RESP_WAITING;
        if (req->cbs && req->cbs->on_proceed)
            req->cbs->on_proceed(req);
        if (hc->reset_pending)
            return SL_ECLOSED;
    }
    if (x->resp == RESP_PROCEED)
        sl_conn_flush_soon(c); /* rounds used up: come back next iteration */
    if (hc->kick && x->resp != RESP_DONE) {
        hc->kick = 0;
        int r = process_input(hc, 0);
        if (r != 0 || !hc->live)
            return conn_result(r);
    }
    if (x->resp != RESP_DONE) {
        if (hc->body == BODY_NONE)
            sl_h1_set_timer(hc, hc->cfg->timeouts.stream_idle_s);
        return 0;
    }
    hc->kick = 0;
    int r = finish_exchange(hc);
    if (r == 0 && hc->in_len)
        r = process_input(hc, 0);
    return conn_result(r);
}

static int on_eof(sl_conn_t *c)
{
    h1_conn_t *hc = c->pdata;
    if (!hc)
        return SL_ECLOSED;
    hc->eof = 1;
    /* Half-close after a complete request: finish the answer, then close. */
    if (hc->state == H1_ACTIVE && hc->body == BODY_NONE && !hc->reset_pending) {
        sl_conn_pause_read(c);
        return 0;
    }
    if (hc->state == H1_HEAD)
        sl_log(SL_LOG_DEBUG, c, "client closed with an incomplete request head");
    return SL_ECLOSED;
}

static int on_timeout(sl_conn_t *c)
{
    h1_conn_t *hc = c->pdata;
    if (!hc || hc->reset_pending)
        return SL_ECLOSED;
    const sl_timeouts_t *t = &hc->cfg->timeouts;
    switch (hc->state) {
    case H1_IDLE: return SL_ECLOSED; /* keep-alive idle: close silently */
    case H1_HEAD:
        sl_log(SL_LOG_INFO, c, "client sent no complete request head in %gs; answered 408",
               t->h1_header_s);
        return sl_h1_send_error(hc, 408);
    case H1_ACTIVE:
        if (hc->body != BODY_NONE && !hc->paused_body) {
            sl_log(SL_LOG_INFO, c, "client sent no request body bytes in %gs", t->request_body_s);
            return sl_h1_fail_exchange(hc, 408);
        }
        sl_log(SL_LOG_INFO, c, "no bytes moved on the exchange in %gs; closing", t->stream_idle_s);
        return SL_ECLOSED;
    case H1_DISCARD:
    default: return SL_ECLOSED;
    }
}

static int on_drain(sl_conn_t *c)
{
    h1_conn_t *hc = c->pdata;
    if (!hc)
        return SL_ECLOSED;
    hc->draining = 1;
    /* Busy: the current response carries "connection: close" if its head
     * is not out yet, and the conn closes after it. */
    return hc->state == H1_ACTIVE ? 0 : SL_ECLOSED;
}

static void on_close(sl_conn_t *c)
{
    h1_conn_t *hc = c->pdata;
    if (!hc)
        return;
    c->pdata = NULL;
    if (hc->live) {
        sl_req_t *req = &hc->x.req;
        hc->live = 0;
        hc->x.closed = 1;
        sl_req_finished(req);
        if (req->cbs && req->cbs->on_close)
            req->cbs->on_close(req, SL_ECANCELED);
        sl_req_dispose(req);
    }
    sl_free(hc->in);
    sl_free(hc);
}

const sl_proto_t sl_h1_proto = {
    .name = "h1",
    .on_read = on_read,
    .on_writable = on_writable,
    .on_eof = on_eof,
    .on_timeout = on_timeout,
    .on_drain = on_drain,
    .on_close = on_close,
};

int sl_h1_conn_start(sl_conn_t *c, const uint8_t *data, size_t len)
{
    h1_conn_t *hc = sl_calloc(1, sizeof(*hc));
    hc->c = c;
    hc->cfg = sl_conn_config(c);
    hc->state = H1_IDLE;
    sl_conn_set_proto(c, &sl_h1_proto, hc);
    /* A new connection must send its first head within h1_header_s. */
    sl_h1_set_timer(hc, hc->cfg->timeouts.h1_header_s);
    if (len)
        return on_read(c, data, len);
    return 0;
}
