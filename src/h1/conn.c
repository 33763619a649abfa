/* sluice - SPDX-License-Identifier: MIT
 *
 * The HTTP/1.1 server protocol (sl_h1_proto): turns bytes from an sl_conn
 * into sl_req_t exchanges for the router and the sl_resp sink back into
 * bytes. One exchange is live at a time; pipelined requests wait, unparsed,
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
#include "h1_int.h"
#include "../access.h"
#include "../config.h"
#include "../h2/h2.h"
#include "../log.h"
#include "../router.h"
#include "../worker.h"
#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <time.h>

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define PREFACE_LEN 24
#define IN_SLACK 65536    /* one read on top of h1_header_bytes */
#define HEAD_MAX 32768    /* a bigger response head is a handler bug */
#define STACK_HEADERS 128 /* parse array on the stack up to this many fields */
#define SETTINGS_MAX 1024 /* decoded HTTP2-Settings bytes */
#define PROCEED_ROUNDS 16 /* on_proceed calls per on_writable */

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

typedef struct h1_conn h1_conn_t;

/* One request/response exchange. Lives inside the conn: one at a time. */
typedef struct h1_exch {
    sl_req_t req;
    h1_conn_t *hc;
    const uint8_t *snd_p; /* handler bytes not yet copied (valid until on_proceed) */
    size_t snd_left;
    int64_t res_left; /* declared content-length still to send; -1 unknown */
    uint64_t delivered, consumed;
    int sf_fd; /* sendfile: the source fd (snd_left bytes from sf_off) */
    int64_t sf_off;
    unsigned snd_file : 1;   /* the outstanding send is a sendfile */
    unsigned snd_active : 1; /* a send is outstanding */
    unsigned snd_final : 1;
    unsigned need_proceed : 1;
    unsigned resp_done : 1; /* the final byte is queued */
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
    uint32_t nreq;
    uint8_t *in; /* unparsed input: partial head, pipelined requests */
    size_t in_len, in_cap;
    body_mode_t body;
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

static int on_read(sl_conn_t *c, const uint8_t *data, size_t len);
static int process_input(h1_conn_t *hc, size_t newoff);

/* ---- small output helpers ---- */

typedef struct hbuf {
    char *p;
    size_t n, cap;
    int overflow;
} hbuf_t;

static __thread char head_buf[HEAD_MAX];

static void hb_put(hbuf_t *b, const void *s, size_t n)
{
    if (b->n + n > b->cap) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void hb_str(hbuf_t *b, const char *s)
{
    hb_put(b, s, strlen(s));
}

static void hb_u64(hbuf_t *b, uint64_t v)
{
    char t[24];
    size_t i = sizeof(t);
    do
        t[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    hb_put(b, t + i, sizeof(t) - i);
}

static void hb_header(hbuf_t *b, const char *name, size_t nlen, const char *value, size_t vlen)
{
    hb_put(b, name, nlen);
    hb_put(b, ": ", 2);
    hb_put(b, value, vlen);
    hb_put(b, "\r\n", 2);
}

/* "date:" value, formatted once per second per worker thread. */
static __thread time_t date_sec = -1;
static __thread char date_str[40];
static __thread size_t date_len;

static void hb_date(hbuf_t *b, sl_conn_t *c)
{
    time_t now = (time_t)ev_now(c->table->loop);
    if (now != date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        date_len = strftime(date_str, sizeof(date_str), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        date_sec = now;
    }
    hb_header(b, "date", 4, date_str, date_len);
}

static void hb_status_line(hbuf_t *b, int status)
{
    hb_put(b, "HTTP/1.1 ", 9);
    hb_u64(b, (uint64_t)status);
    hb_put(b, " ", 1);
    hb_str(b, sl_status_reason(status));
    hb_put(b, "\r\n", 2);
}

/* The one conn timer. Once a reset is pending it belongs to the reset. */
/* The only place the state changes; the asserts list the legal moves. */
static void set_state(h1_conn_t *hc, h1_state_t to)
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

static void set_timer(h1_conn_t *hc, double secs)
{
    if (!hc->reset_pending)
        sl_conn_timer_set(hc->c, secs);
}

/* A raw (upgraded) stream has no body timeout: the handler keeps its own. */
static double body_timeout(const h1_conn_t *hc)
{
    return hc->body == BODY_RAW ? 0 : hc->cfg->timeouts.request_body_s;
}

/* Carry out an abort at the next loop iteration, outside handler code. */
static void arm_reset(h1_conn_t *hc)
{
    hc->reset_pending = 1;
    sl_conn_pause_read(hc->c);
    sl_conn_timer_set(hc->c, 1e-6);
}

/* ---- input buffer ---- */

static size_t in_max(const h1_conn_t *hc)
{
    return hc->cfg->limits.h1_header_bytes + IN_SLACK;
}

/* Keep bytes for later. Bounded: while an exchange is live reads stop
 * once h1_header_bytes are waiting, so one read more always fits. */
static int in_append(h1_conn_t *hc, const uint8_t *p, size_t n)
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

static void update_read(h1_conn_t *hc)
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

/* ---- simple answers from the protocol itself ---- */

/* Queue a short text response with "connection: close" and stop reading;
 * the caller returns SL_ECLOSED so the conn flushes it and closes. */
static int send_error(h1_conn_t *hc, int status)
{
    sl_conn_t *c = hc->c;
    const char *reason = sl_status_reason(status);
    hbuf_t b = {head_buf, 0, sizeof(head_buf), 0};
    hb_status_line(&b, status);
    if (hc->cfg->server_name)
        hb_header(&b, "server", 6, hc->cfg->server_name, strlen(hc->cfg->server_name));
    hb_date(&b, c);
    hb_str(&b, "content-type: text/plain; charset=utf-8\r\ncontent-length: ");
    hb_u64(&b, strlen(reason) + 1);
    hb_str(&b, "\r\nconnection: close\r\n\r\n");
    hb_str(&b, reason);
    hb_put(&b, "\n", 1);
    (void)sl_conn_write(c, b.p, b.n);
    hc->close_after = 1;
    sl_conn_pause_read(c);
    return SL_ECLOSED;
}

/* An error while an exchange is live: answer only if its response has not
 * started, then close (the handler gets on_close(SL_ECANCELED)). */
static int fail_exchange(h1_conn_t *hc, int status)
{
    if (hc->live && (hc->x.req.head_sent || hc->x.closed))
        return SL_ECLOSED;
    return send_error(hc, status);
}

/* ---- response output ---- */

/* Fields this serializer writes itself (framing, persistence). Not the
 * whole connection-specific set of req.h: a 101 must carry the handler's
 * Upgrade. */
static int is_hop_header(sl_str_t n)
{
    switch (n.n) {
    case 10: return sl_str_caseeq(n, "connection") || sl_str_caseeq(n, "keep-alive");
    case 14: return sl_str_caseeq(n, "content-length");
    case 17: return sl_str_caseeq(n, "transfer-encoding");
    default: return 0;
    }
}

static void hb_fields(hbuf_t *b, const sl_req_t *req)
{
    for (size_t i = 0; i < req->res.headers.n; i++) {
        const sl_header_t *h = &req->res.headers.v[i];
        if (!is_hop_header(h->name))
            hb_header(b, h->name.p, h->name.n, h->value.p, h->value.n);
    }
}

/* A handler answered 101 to an Upgrade request (WebSocket): send the head,
 * then the exchange is a raw byte stream both ways (BODY_RAW) until the
 * connection closes; the handler owns the timeouts from here. Returns 0,
 * SL_EAGAIN or SL_ERROR (101 without an Upgrade request is a handler bug). */
static int write_switch_head(h1_conn_t *hc)
{
    h1_exch_t *x = &hc->x;
    if (!hc->upgrade_req || hc->body != BODY_NONE) {
        sl_log(SL_LOG_ERROR, hc->c, "handler sent 101 to a request without Upgrade; aborting");
        return SL_ERROR;
    }
    hbuf_t b = {head_buf, 0, sizeof(head_buf), 0};
    hb_status_line(&b, 101);
    hb_fields(&b, &x->req);
    hb_str(&b, "connection: upgrade\r\n\r\n");
    if (b.overflow || sl_conn_out_space(hc->c) < b.n)
        return b.overflow ? SL_ERROR : SL_EAGAIN;
    if (sl_conn_write(hc->c, b.p, b.n) != 0)
        return SL_ERROR;
    x->head_written = 1;
    x->res_left = -1;
    hc->close_after = 1;
    hc->body = BODY_RAW;
    set_timer(hc, 0);
    /* Bytes that came in behind the head are the stream's first bytes. */
    if (hc->in_len) {
        hc->kick = 1;
        sl_conn_flush_soon(hc->c);
    }
    return 0;
}

/* Decide framing and queue the status line and headers in one write.
 * Returns 0, SL_EAGAIN (no room yet) or SL_ERROR (head too large). */
static int write_head(h1_conn_t *hc)
{
    h1_exch_t *x = &hc->x;
    sl_req_t *req = &x->req;
    sl_conn_t *c = hc->c;
    int status = req->res.status;
    int64_t cl = req->res.content_length;
    int has_date = 0, has_server = 0;

    if (status == 101)
        return write_switch_head(hc);
    x->no_body = req->is_head || status == 204 || status == 304;
    x->chunked_out = 0;
    x->res_left = x->no_body ? 0 : cl;
    if (cl < 0 && !x->no_body) {
        if (req->version_minor >= 1)
            x->chunked_out = 1;
        else
            hc->close_after = 1; /* HTTP/1.0: the close delimits the body */
    }

    hbuf_t b = {head_buf, 0, sizeof(head_buf), 0};
    /* A handler that starts a response it has not finished, with a body
     * reader attached, wants the body (echo): let the client send it. */
    int cont = hc->body != BODY_NONE && req->expect_continue && !x->continue_sent && !x->got_body &&
               !x->snd_final && req->cbs && req->cbs->on_body && status >= 200;
    if (cont)
        hb_str(&b, "HTTP/1.1 100 Continue\r\n\r\n");
    /* A body the client may still be holding back (100-continue not sent)
     * cannot be told apart from the next request: close after this one. */
    if (hc->body != BODY_NONE && req->expect_continue && !x->continue_sent && !cont && !x->got_body)
        hc->close_after = 1;
    int keep =
        hc->keep_alive && !hc->close_after && !hc->draining && !hc->eof && !sl_conn_is_draining(c);
    if (!keep)
        hc->close_after = 1;
    hb_status_line(&b, status);
    for (size_t i = 0; i < req->res.headers.n; i++) {
        const sl_header_t *h = &req->res.headers.v[i];
        if (is_hop_header(h->name))
            continue;
        has_date |= sl_str_caseeq(h->name, "date");
        has_server |= sl_str_caseeq(h->name, "server");
        hb_header(&b, h->name.p, h->name.n, h->value.p, h->value.n);
    }
    if (!has_server && hc->cfg->server_name)
        hb_header(&b, "server", 6, hc->cfg->server_name, strlen(hc->cfg->server_name));
    if (!has_date)
        hb_date(&b, c);
    if (cl >= 0 && status != 204) {
        hb_str(&b, "content-length: ");
        hb_u64(&b, (uint64_t)cl);
        hb_put(&b, "\r\n", 2);
    }
    if (x->chunked_out)
        hb_str(&b, "transfer-encoding: chunked\r\n");
    if (!keep)
        hb_str(&b, "connection: close\r\n");
    else if (req->version_minor == 0)
        hb_str(&b, "connection: keep-alive\r\n");
    hb_put(&b, "\r\n", 2);
    if (b.overflow) {
        sl_log(SL_LOG_ERROR, c, "response head larger than %d bytes; aborting", HEAD_MAX);
        return SL_ERROR;
    }
    if (sl_conn_out_space(c) < b.n)
        return SL_EAGAIN;
    if (sl_conn_write(c, b.p, b.n) != 0)
        return SL_ERROR;
    x->head_written = 1;
    x->continue_sent |= cont;
    return 0;
}

/* The last chunk and trailers. Returns 0 or SL_EAGAIN. */
static int write_last_chunk(h1_conn_t *hc)
{
    sl_req_t *req = &hc->x.req;
    hbuf_t b = {head_buf, 0, sizeof(head_buf), 0};
    hb_put(&b, "0\r\n", 3);
    for (size_t i = 0; i < req->res.trailers.n; i++) {
        const sl_header_t *h = &req->res.trailers.v[i];
        hb_header(&b, h->name.p, h->name.n, h->value.p, h->value.n);
    }
    hb_put(&b, "\r\n", 2);
    if (b.overflow) {
        /* Trailers too large: end the body without them. */
        b.n = 0;
        b.overflow = 0;
        hb_put(&b, "0\r\n\r\n", 5);
    }
    if (sl_conn_out_space(hc->c) < b.n)
        return SL_EAGAIN;
    return sl_conn_write(hc->c, b.p, b.n) == 0 ? 0 : SL_EAGAIN;
}

/* Copy body bytes the handler passed to send(); framing as decided. */
static void copy_body(h1_conn_t *hc)
{
    h1_exch_t *x = &hc->x;
    sl_conn_t *c = hc->c;
    while (x->snd_left > 0) {
        if (x->no_body) {
            x->snd_left = 0;
            break;
        }
        if (x->res_left >= 0 && (uint64_t)x->snd_left > (uint64_t)x->res_left) {
            if (!x->len_warned)
                sl_log(SL_LOG_ERROR, c, "handler sent more than content-length; truncated");
            x->len_warned = 1;
            hc->close_after = 1;
            x->snd_left = (size_t)x->res_left;
            continue;
        }
        if (x->chunked_out && !x->chunk_open) {
            char line[24];
            int n = snprintf(line, sizeof(line), "%zx\r\n", x->snd_left);
            if (sl_conn_out_space(c) < (size_t)n + 2)
                return;
            (void)sl_conn_write(c, line, (size_t)n);
            x->chunk_open = 1;
        }
        size_t n = SL_MIN(sl_conn_out_space(c), x->snd_left);
        if (n == 0 || sl_conn_write(c, x->snd_p, n) != 0)
            return;
        x->snd_p += n;
        x->snd_left -= n;
        x->req.bytes_out += n;
        if (x->res_left >= 0)
            x->res_left -= (int64_t)n;
    }
    if (x->chunk_open) {
        if (sl_conn_write(c, "\r\n", 2) != 0)
            return;
        x->chunk_open = 0;
    }
}

/* A send from an fd (cleartext only): once the queued head has left, the
 * bytes go from the page cache to the socket. A full socket arms the
 * conn's write watcher, which brings on_writable back although the output
 * queue is empty. Returns 0 or SL_ECLOSED (file shorter than announced,
 * socket error). */
static int send_file(h1_conn_t *hc)
{
    h1_exch_t *x = &hc->x;
    sl_conn_t *c = hc->c;
    if (!sl_buf_is_empty(&c->out)) {
        sl_conn_flush_soon(c); /* the head first; on_writable comes back */
        return 0;
    }
    while (x->snd_left > 0) {
        off_t off = (off_t)x->sf_off;
        size_t want = SL_MIN(x->snd_left, (size_t)1 << 30);
        if (x->res_left >= 0)
            want = (size_t)SL_MIN((int64_t)want, x->res_left);
        if (want == 0)
            return SL_ECLOSED; /* more than content-length: a handler bug */
        ssize_t n = sendfile(c->fd, x->sf_fd, &off, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->table->loop, &c->wio);
            return 0;
        }
        if (n <= 0) {
            sl_log(SL_LOG_WARN, c, "sendfile: %s", n < 0 ? strerror(errno) : "file shrank");
            return SL_ECLOSED;
        }
        x->sf_off += n;
        x->snd_left -= (size_t)n;
        x->req.bytes_out += (uint64_t)n;
        if (x->res_left >= 0)
            x->res_left -= n;
    }
    return 0;
}

/* Move the outstanding send forward as far as the output queue allows.
 * Never calls the handler. Returns 0 or SL_ECLOSED (abort the exchange). */
static int pump(h1_conn_t *hc)
{
    h1_exch_t *x = &hc->x;
    if (!x->snd_active)
        return 0;
    if (!x->head_written) {
        int r = write_head(hc);
        if (r == SL_EAGAIN)
            return 0;
        if (r != 0)
            return SL_ECLOSED;
    }
    if (x->snd_file && !x->no_body) {
        if (send_file(hc) != 0)
            return SL_ECLOSED;
    } else {
        copy_body(hc);
    }
    if (x->snd_left > 0 || x->chunk_open)
        return 0; /* on_writable comes back when the queue drains */
    if (!x->snd_final) {
        x->snd_active = 0;
        x->need_proceed = 1;
        sl_conn_flush_soon(hc->c); /* on_writable will call on_proceed */
        return 0;
    }
    if (x->chunked_out && write_last_chunk(hc) != 0)
        return 0;
    if (x->res_left > 0) {
        /* Fewer bytes than announced: only closing tells the client. */
        sl_log(SL_LOG_ERROR, hc->c, "handler ended the response %lld bytes short of content-length",
               (long long)x->res_left);
        hc->close_after = 1;
    }
    x->snd_active = 0;
    x->resp_done = 1;
    sl_conn_flush_soon(hc->c);
    return 0;
}

/* ---- sl_req_ops_t ---- */

/* op_send, or op_sendfile when fd >= 0. */
static int start_send(sl_req_t *req, const uint8_t *data, int fd, int64_t off, size_t len,
                      int final)
{
    h1_exch_t *x = req->pdata;
    h1_conn_t *hc = x->hc;
    if (x->closed || hc->reset_pending || hc->c->closing || hc->c->lingering)
        return SL_ECLOSED;
    if (x->snd_active || x->resp_done)
        return SL_EAGAIN; /* one send outstanding (req.h) */
    req->head_sent = 1;
    x->snd_p = data;
    x->snd_file = fd >= 0;
    x->sf_fd = fd;
    x->sf_off = off;
    x->snd_left = len;
    x->snd_final = final ? 1 : 0;
    x->snd_active = 1;
    x->need_proceed = 0;
    if (pump(hc) != 0) {
        arm_reset(hc); /* carried out after the handler returns, like reset() */
        return SL_ECLOSED;
    }
    if (hc->state == H1_ACTIVE && hc->body == BODY_NONE)
        set_timer(hc, hc->cfg->timeouts.stream_idle_s);
    return 0;
}

static int op_send(sl_req_t *req, const uint8_t *data, size_t len, int final)
{
    return start_send(req, data, -1, 0, len, final);
}

/* Zero-copy only where the file's bytes are the wire bytes: cleartext, a
 * declared length (no chunk framing), a response that has a body. */
static int op_sendfile(sl_req_t *req, int fd, int64_t off, size_t len, int final)
{
    h1_exch_t *x = req->pdata;
    int st = req->res.status;
    if (x->hc->c->ssl || fd < 0 || off < 0 || req->res.content_length < 0 || req->is_head ||
        st < 200 || st == 204 || st == 304)
        return SL_EINVAL;
    return start_send(req, NULL, fd, off, len, final);
}

static int op_informational(sl_req_t *req, int status, const sl_headers_t *hdrs)
{
    h1_exch_t *x = req->pdata;
    h1_conn_t *hc = x->hc;
    if (x->closed || hc->reset_pending || hc->c->closing || hc->c->lingering)
        return SL_ECLOSED;
    if (req->version_minor == 0)
        return 0; /* RFC 9110 15.2: no 1xx to an HTTP/1.0 client */
    hbuf_t b = {head_buf, 0, sizeof(head_buf), 0};
    hb_status_line(&b, status);
    for (size_t i = 0; hdrs && i < hdrs->n; i++)
        hb_header(&b, hdrs->v[i].name.p, hdrs->v[i].name.n, hdrs->v[i].value.p, hdrs->v[i].value.n);
    hb_put(&b, "\r\n", 2);
    if (b.overflow)
        return SL_EINVAL;
    return sl_conn_write(hc->c, b.p, b.n);
}

/* Abort: close without finishing the response. Done from a timer so the
 * handler's on_close never runs inside its own reset() call; queued bytes
 * still leave (a chunked body without its last chunk reads as aborted). */
static void op_reset(sl_req_t *req, uint32_t h2_error_code)
{
    SL_UNUSED(h2_error_code);
    h1_exch_t *x = req->pdata;
    h1_conn_t *hc = x->hc;
    if (x->closed || hc->reset_pending)
        return;
    x->snd_active = 0;
    arm_reset(hc);
}

static void op_consume(sl_req_t *req, size_t n)
{
    h1_exch_t *x = req->pdata;
    h1_conn_t *hc = x->hc;
    x->consumed += n;
    if (!hc->paused_body || x->delivered - x->consumed >= hc->cfg->limits.body_window_bytes)
        return;
    hc->paused_body = 0;
    if (hc->in_len) {
        /* Held bytes are delivered from on_writable, not inside this call. */
        hc->kick = 1;
        sl_conn_flush_soon(hc->c);
        return;
    }
    update_read(hc);
    if (hc->body != BODY_NONE)
        set_timer(hc, body_timeout(hc));
}

static const sl_req_ops_t h1_req_ops = {
    .send = op_send,
    .sendfile = op_sendfile,
    .informational = op_informational,
    .reset = op_reset,
    .consume = op_consume,
};

/* ---- exchanges ---- */

static void next_request(h1_conn_t *hc)
{
    set_state(hc, hc->in_len ? H1_HEAD : H1_IDLE);
    hc->body = BODY_NONE;
    hc->paused_body = 0;
    set_timer(hc, hc->in_len ? hc->cfg->timeouts.h1_header_s : hc->cfg->timeouts.h1_keepalive_s);
    update_read(hc);
}

/* The response is queued in full: log, tell the handler, free the request.
 * Then read on: the rest of an unread body is dropped (bounded) or the
 * connection closes. Runs only outside handler calls. */
static int finish_exchange(h1_conn_t *hc)
{
    h1_exch_t *x = &hc->x;
    sl_req_t *req = &x->req;
    sl_access_log(req);
    x->closed = 1;
    hc->live = 0;
    if (req->cbs && req->cbs->on_close)
        req->cbs->on_close(req, 0);
    int expect_unsent = req->expect_continue && !x->continue_sent && !x->got_body;
    sl_req_dispose(req);
    if (hc->close_after || hc->draining || hc->eof || sl_conn_is_draining(hc->c))
        return SL_ECLOSED;
    if (hc->body != BODY_NONE) {
        uint64_t budget = 4 * (uint64_t)hc->cfg->limits.body_window_bytes;
        if (expect_unsent || (hc->body == BODY_LENGTH && hc->body_left > budget))
            return SL_ECLOSED;
        set_state(hc, H1_DISCARD);
        hc->discard_left = budget;
        hc->paused_body = 0;
        set_timer(hc, hc->cfg->timeouts.request_body_s);
        update_read(hc);
        return 0;
    }
    next_request(hc);
    return 0;
}

/* After handler code returned: carry out a reset, move output on, end the
 * exchange when its response is complete. */
static int after_handler(h1_conn_t *hc)
{
    if (hc->reset_pending)
        return SL_ECLOSED;
    if (!hc->live)
        return 0;
    if (pump(hc) != 0)
        return SL_ECLOSED;
    if (hc->x.resp_done)
        return finish_exchange(hc);
    return 0;
}

/* ---- request body ---- */

static int deliver(h1_conn_t *hc, const uint8_t *p, size_t n, int fin)
{
    if (hc->state == H1_DISCARD) {
        if (n > hc->discard_left) {
            hc->discard_over = 1;
            return SL_ECLOSED;
        }
        hc->discard_left -= n;
        return 0;
    }
    h1_exch_t *x = &hc->x;
    sl_req_t *req = &x->req;
    if (n)
        x->got_body = 1;
    if (fin)
        req->body_done = 1;
    req->bytes_in += n;
    if (x->closed || hc->reset_pending || !req->cbs || !req->cbs->on_body)
        return 0; /* nobody wants it: dropped, still read */
    x->delivered += n;
    req->cbs->on_body(req, p, n, fin);
    return 0;
}

/* How many more body bytes the handler may be given: limits.
 * body_window_bytes minus what it has not consumed yet. Bytes nobody reads
 * need no credit. */
static size_t body_credit(const h1_conn_t *hc)
{
    const h1_exch_t *x = &hc->x;
    const sl_req_t *req = &x->req;
    if (hc->state != H1_ACTIVE || x->closed || hc->reset_pending || !req->cbs || !req->cbs->on_body)
        return SIZE_MAX;
    uint64_t out = x->delivered - x->consumed, w = hc->cfg->limits.body_window_bytes;
    return out >= w ? 0 : (size_t)(w - out);
}

static void on_chunk_run(void *arg, const uint8_t *p, size_t n)
{
    h1_conn_t *hc = arg;
    int64_t max = hc->cfg->limits.max_body_bytes;
    if (hc->too_big || hc->discard_over)
        return;
    if (max > 0 && hc->state == H1_ACTIVE && hc->body_seen + n > (uint64_t)max) {
        hc->too_big = 1;
        return;
    }
    hc->body_seen += n;
    /* Hold the newest run back so the last one can carry fin. */
    if (hc->run_n && deliver(hc, hc->run_p, hc->run_n, 0) != 0)
        return;
    hc->run_p = p;
    hc->run_n = n;
}

/* Timers and state after body bytes went in. Returns 0 or SL_ECLOSED. */
static int after_body(h1_conn_t *hc)
{
    if (hc->state == H1_DISCARD) {
        if (hc->body == BODY_NONE)
            next_request(hc);
        else
            set_timer(hc, hc->cfg->timeouts.request_body_s);
        return 0;
    }
    if (hc->body == BODY_NONE) {
        hc->paused_body = 0;
        set_timer(hc, hc->cfg->timeouts.stream_idle_s);
        update_read(hc);
    } else if (!hc->paused_body) {
        set_timer(hc, body_timeout(hc));
    }
    return after_handler(hc);
}

/* Body bytes from p; returns how many were taken (0: no credit, the rest
 * waits in `in` with reads stopped), or SL_ECLOSED. At most the credit is
 * fed, framing included, so the handler never holds more than the window. */
static ssize_t feed_body(h1_conn_t *hc, const uint8_t *p, size_t len)
{
    size_t n, credit = body_credit(hc);
    int r = 0;
    if (credit == 0) {
        hc->paused_body = 1; /* op_consume lifts it */
        /* A stall now is the handler's: only the idle bound applies. */
        set_timer(hc, hc->cfg->timeouts.stream_idle_s);
        return 0;
    }
    len = SL_MIN(len, credit);
    if (hc->body == BODY_RAW) {
        n = len;
        r = deliver(hc, p, n, 0);
    } else if (hc->body == BODY_LENGTH) {
        n = (size_t)SL_MIN((uint64_t)len, hc->body_left);
        hc->body_left -= n;
        hc->body_seen += n;
        int fin = hc->body_left == 0;
        if (fin)
            hc->body = BODY_NONE;
        r = deliver(hc, p, n, fin);
    } else {
        hc->run_p = NULL;
        hc->run_n = 0;
        ssize_t k = sl_h1_chunked_decode(&hc->chunk, p, len, on_chunk_run, hc);
        if (hc->discard_over)
            return SL_ECLOSED;
        if (k < 0 || hc->too_big) {
            int status = hc->too_big ? 413 : 400;
            sl_log(SL_LOG_INFO, hc->c, "client sent %s; answered %d",
                   hc->too_big       ? "a chunked body larger than limits.max_body_bytes"
                   : k == SL_ETOOBIG ? "chunk extensions or trailers over the limit"
                                     : "a malformed chunked body",
                   status);
            return hc->state == H1_ACTIVE ? fail_exchange(hc, status) : SL_ECLOSED;
        }
        n = (size_t)k;
        int fin = hc->chunk.done;
        if (fin)
            hc->body = BODY_NONE;
        if (hc->run_n || fin)
            r = deliver(hc, hc->run_p, hc->run_n, fin);
    }
    if (r != 0)
        return r;
    r = after_body(hc);
    return r != 0 ? r : (ssize_t)n;
}

/* ---- request heads ---- */

static int can_h2c(const h1_conn_t *hc)
{
    return !sl_conn_is_tls(hc->c) && hc->c->lcfg && hc->c->lcfg->h2c;
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
static void build_req(h1_conn_t *hc, const sl_h1_head_t *head)
{
    sl_conn_t *c = hc->c;
    h1_exch_t *x = &hc->x;
    sl_req_t *req = &x->req;
    /* sl_req_init clears the req; clear the rest of the exchange. */
    memset((char *)x + offsetof(h1_exch_t, hc), 0, sizeof(*x) - offsetof(h1_exch_t, hc));
    sl_req_init(req, SL_PROTO_H1, c);
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

/* Hand the connection to HTTP/2. Frees the h1 state first (conn.h), so
 * bytes that live in hc->in are detached and freed after the call. */
static int switch_to_h2(h1_conn_t *hc, const uint8_t *p, size_t len, const sl_req_t *req,
                        const uint8_t *settings, size_t slen)
{
    sl_conn_t *c = hc->c;
    uint8_t *keep = hc->in;
    hc->in = NULL;
    c->pdata = NULL;
    set_timer(hc, 0);
    if (hc->paused_input || hc->paused_body)
        sl_conn_resume_read(c);
    int r = req ? sl_h2_conn_upgrade(c, settings, slen, req, p, len) : sl_h2_conn_start(c, p, len);
    if (hc->live) {
        hc->x.closed = 1;
        sl_req_dispose(&hc->x.req);
    }
    sl_free(hc);
    sl_free(keep);
    return r == 0 ? H1_SWITCHED : H1_SWITCHED_CLOSE;
}

/* RFC 7540 3.2 (h2c upgrade): cleartext, no body, Upgrade lists h2c, one
 * HTTP2-Settings and Connection naming both. Returns 0 when not
 * upgrading (serve HTTP/1.1), else H1_SWITCHED / H1_SWITCHED_CLOSE. */
static int try_upgrade(h1_conn_t *hc, const sl_h1_head_t *head, const uint8_t *rest, size_t restlen)
{
    /* Off by default: a client can tunnel past a front proxy's rules by
     * upgrading a connection the proxy passed through ("h2c smuggling"). */
    if (!head->upgrade || !can_h2c(hc) || !hc->c->lcfg->h2c_upgrade || head->version_minor != 1 ||
        head->chunked || head->content_length > 0 || !sl_str_has_token(head->upgrade_proto, "h2c"))
        return 0;
    const sl_header_t *settings = NULL;
    int conn_ok = 0;
    for (size_t i = 0; i < head->nheaders; i++) {
        const sl_header_t *h = &head->headers[i];
        if (sl_str_caseeq(h->name, "http2-settings")) {
            if (settings)
                return 0;
            settings = h;
        } else if (sl_str_caseeq(h->name, "connection")) {
            conn_ok |= sl_str_has_token(h->value, "http2-settings");
        }
    }
    if (!settings || !conn_ok)
        return 0;
    uint8_t buf[SETTINGS_MAX];
    ssize_t slen = sl_h1_base64url_decode(settings->value.p, settings->value.n, buf, sizeof(buf));
    if (slen < 0 || slen % 6 != 0)
        return 0;
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                               "Upgrade: h2c\r\n\r\n";
    if (sl_conn_write(hc->c, resp, sizeof(resp) - 1) != 0)
        return 0;
    build_req(hc, head);
    hc->live = 1;
    return switch_to_h2(hc, rest, restlen, &hc->x.req, buf, (size_t)slen);
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
        return send_error(hc, 413);
    }
    int r = try_upgrade(hc, head, rest, restlen);
    if (r != 0)
        return r;
    build_req(hc, head);
    hc->live = 1;
    set_state(hc, H1_ACTIVE);
    hc->keep_alive = head->keep_alive;
    hc->upgrade_req = head->upgrade && head->version_minor == 1;
    hc->body_seen = 0;
    hc->too_big = 0;
    if (head->chunked) {
        hc->body = BODY_CHUNKED;
        sl_h1_chunked_init(&hc->chunk, cfg->limits.h1_header_bytes);
    } else if (head->content_length > 0) {
        hc->body = BODY_LENGTH;
        hc->body_left = (uint64_t)head->content_length;
    } else {
        hc->body = BODY_NONE;
        hc->x.req.body_done = 1;
    }
    set_timer(hc,
              hc->body != BODY_NONE ? cfg->timeouts.request_body_s : cfg->timeouts.stream_idle_s);
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
    return after_handler(hc);
}

/* Parse the head at p. newoff > 0: the first newoff bytes were scanned by
 * an earlier call, so skip the parse unless a line ended since (or a bound
 * may have been crossed): slow-drip heads cost O(lines x head), not
 * O(bytes x head). */
static int parse_head(h1_conn_t *hc, const uint8_t *p, size_t len, size_t newoff, size_t *used)
{
    const sl_limits_t *l = &hc->cfg->limits;
    if (hc->state == H1_IDLE) {
        set_state(hc, H1_HEAD); /* the header timer counts from the first byte */
        set_timer(hc, hc->cfg->timeouts.h1_header_s);
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
        r = send_error(hc, (int)st);
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
            ssize_t n = feed_body(hc, p + off, len - off);
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
    update_read(hc);
    return 0;
}

/* Prior knowledge: the first bytes on a cleartext h2c listener are the
 * HTTP/2 preface (possibly split). Returns 0 to go on as HTTP/1.1,
 * H1_INCOMPLETE when the bytes so far match but are too few, or a
 * switch result. */
static int check_preface(h1_conn_t *hc, const uint8_t *data, size_t len)
{
    size_t have = hc->in_len, n = SL_MIN(have + len, (size_t)PREFACE_LEN);
    int broken = 0;
    for (size_t i = 0; i < n && !broken; i++) {
        uint8_t b = i < have ? hc->in[i] : data[i - have];
        if (b != (uint8_t)PREFACE[i]) {
            /* "PRI " then something else: a broken HTTP/2 preface, not an
             * HTTP/1.1 request. HTTP/2 answers it (GOAWAY PROTOCOL_ERROR). */
            broken = i >= 4;
            if (broken)
                break;
            hc->not_preface = 1;
            return 0;
        }
    }
    if (!broken && have + len < PREFACE_LEN) {
        if (in_append(hc, data, len) != 0)
            return SL_ECLOSED;
        if (hc->state == H1_IDLE) {
            set_state(hc, H1_HEAD);
            set_timer(hc, hc->cfg->timeouts.h1_header_s);
        }
        return H1_INCOMPLETE;
    }
    if (have == 0)
        return switch_to_h2(hc, data, len, NULL, NULL, 0);
    if (in_append(hc, data, len) != 0)
        return SL_ECLOSED;
    return switch_to_h2(hc, hc->in, hc->in_len, NULL, NULL, 0);
}

/* ---- sl_proto_t ---- */

static int on_read(sl_conn_t *c, const uint8_t *data, size_t len)
{
    h1_conn_t *hc = c->pdata;
    if (!hc)
        return SL_ECLOSED;
    if (hc->nreq == 0 && !hc->not_preface && !hc->live && can_h2c(hc)) {
        int r = check_preface(hc, data, len);
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
        if (r == 0 && used < len && in_append(hc, data + used, len - used) != 0) {
            sl_log(SL_LOG_INFO, c, "client sent more than %zu bytes ahead", in_max(hc));
            r = hc->state == H1_HEAD ? send_error(hc, 431) : SL_ECLOSED;
        }
        if (r == 0)
            update_read(hc);
    } else {
        size_t old = hc->in_len;
        size_t room = in_max(hc) - hc->in_len;
        /* Never more than the bound; a head that needs more is refused. */
        if (in_append(hc, data, SL_MIN(len, room)) != 0)
            return SL_ECLOSED;
        r = process_input(hc, old);
        if (r == 0 && len > room) {
            sl_log(SL_LOG_INFO, c, "client sent more than %zu bytes ahead", in_max(hc));
            r = hc->state == H1_HEAD ? send_error(hc, 431) : SL_ECLOSED;
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
    if (pump(hc) != 0)
        return SL_ECLOSED;
    for (int i = 0; i < PROCEED_ROUNDS && x->need_proceed && !sl_conn_out_is_high(c); i++) {
        x->need_proceed = 0;
        if (req->cbs && req->cbs->on_proceed)
            req->cbs->on_proceed(req);
        if (hc->reset_pending)
            return SL_ECLOSED;
    }
    if (x->need_proceed)
        sl_conn_flush_soon(c); /* rounds used up: come back next iteration */
    if (hc->kick && !x->resp_done) {
        hc->kick = 0;
        int r = process_input(hc, 0);
        if (r != 0 || !hc->live)
            return conn_result(r);
    }
    if (!x->resp_done) {
        if (hc->body == BODY_NONE)
            set_timer(hc, hc->cfg->timeouts.stream_idle_s);
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
        return send_error(hc, 408);
    case H1_ACTIVE:
        if (hc->body != BODY_NONE && !hc->paused_body) {
            sl_log(SL_LOG_INFO, c, "client sent no request body bytes in %gs", t->request_body_s);
            return fail_exchange(hc, 408);
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
        sl_access_log(req);
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
    set_timer(hc, hc->cfg->timeouts.h1_header_s);
    if (len)
        return on_read(c, data, len);
    return 0;
}
