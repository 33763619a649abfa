/* sluice - SPDX-License-Identifier: MIT
 *
 * The HTTP/1.1 response serializer: the head in one write (status line,
 * the handler's fields without the ones framing owns, server, a cached
 * date, then content-length, chunked or close-delimited framing), body
 * bytes copied or sent from a file, the last chunk with trailers, 1xx
 * answers, and the protocol's own short error answers. The send side of
 * the request ops lives here; send() only copies and marks (the handler's
 * on_proceed runs later, from conn.c's on_writable).
 */
#include "server_int.h"
#include "../http.h"
#include "../log.h"
#include "../metrics.h"
#include <errno.h>
#include <stdio.h>
#include <sys/sendfile.h>
#include <time.h>

typedef struct hbuf {
    char *p;
    size_t n, cap;
    int overflow;
} hbuf_t;

static __thread char head_buf[SL_H1_HEAD_MAX];

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
    hb_put(b, t, sl_u64_format(t, v));
}

static void hb_header(hbuf_t *b, const char *name, size_t nlen, const char *value, size_t vlen)
{
    hb_put(b, name, nlen);
    hb_put(b, ": ", 2);
    hb_put(b, value, vlen);
    hb_put(b, "\r\n", 2);
}

static void hb_date(hbuf_t *b, sl_conn_t *c)
{
    size_t len;
    const char *date = sl_http_date_now(ev_now(c->table->loop), &len);
    hb_header(b, "date", 4, date, len);
}

static void hb_status_line(hbuf_t *b, int status)
{
    hb_put(b, "HTTP/1.1 ", 9);
    hb_u64(b, (uint64_t)status);
    hb_put(b, " ", 1);
    hb_str(b, sl_status_reason(status));
    hb_put(b, "\r\n", 2);
}

/* Queue a short text response with "connection: close" and stop reading;
 * the caller returns SL_ECLOSED so the conn flushes it and closes. */
int sl_h1_send_error(h1_conn_t *hc, int status)
{
    sl_conn_t *c = hc->c;
    const char *reason = sl_status_reason(status);
    if (status == 431)
        sl_metrics_abuse(SL_M_ABUSE_HEADERS);
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
int sl_h1_fail_exchange(h1_conn_t *hc, int status)
{
    if (hc->live && (hc->x.req.head_sent || hc->x.closed))
        return SL_ECLOSED;
    return sl_h1_send_error(hc, status);
}

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
    sl_h1_set_timer(hc, 0);
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
    int keep = hc->keep_alive && !hc->close_after && !hc->draining && !hc->eof &&
               !sl_conn_is_draining(c) && !sl_conn_is_retiring(c);
    if (!keep)
        hc->close_after = 1;
    hb_status_line(&b, status);
    for (size_t i = 0; i < req->res.headers.n; i++) {
        const sl_header_t *h = &req->res.headers.v[i];
        if (sl_resp_header_is_plain(req, i)) {
            hb_header(&b, h->name.p, h->name.n, h->value.p, h->value.n);
            continue;
        }
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
        sl_log(SL_LOG_ERROR, c, "response head larger than %d bytes; aborting", SL_H1_HEAD_MAX);
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
int sl_h1_pump(h1_conn_t *hc)
{
    h1_exch_t *x = &hc->x;
    if (x->resp != RESP_SENDING)
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
        x->resp = RESP_PROCEED;
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
    x->resp = RESP_DONE;
    sl_conn_flush_soon(hc->c);
    return 0;
}

/* op_send, or op_sendfile when fd >= 0. */
static int start_send(sl_req_t *req, const uint8_t *data, int fd, int64_t off, size_t len,
                      int final)
{
    h1_exch_t *x = req->pdata;
    h1_conn_t *hc = x->hc;
    if (x->closed || hc->reset_pending || hc->c->closing || hc->c->lingering)
        return SL_ECLOSED;
    if (x->resp == RESP_SENDING || x->resp == RESP_DONE)
        return SL_EAGAIN; /* one send outstanding (req.h) */
    req->head_sent = 1;
    x->snd_p = data;
    x->snd_file = fd >= 0;
    x->sf_fd = fd;
    x->sf_off = off;
    x->snd_left = len;
    x->snd_final = final ? 1 : 0;
    x->resp = RESP_SENDING;
    if (sl_h1_pump(hc) != 0) {
        sl_h1_arm_reset(hc); /* carried out after the handler returns, like reset() */
        return SL_ECLOSED;
    }
    if (hc->state == H1_ACTIVE && hc->body == BODY_NONE)
        sl_h1_set_timer(hc, hc->cfg->timeouts.stream_idle_s);
    return 0;
}

int sl_h1_op_send(sl_req_t *req, const uint8_t *data, size_t len, int final)
{
    return start_send(req, data, -1, 0, len, final);
}

/* Zero-copy only where the file's bytes are the wire bytes: cleartext, a
 * declared length (no chunk framing), a response that has a body. */
int sl_h1_op_sendfile(sl_req_t *req, int fd, int64_t off, size_t len, int final)
{
    h1_exch_t *x = req->pdata;
    int st = req->res.status;
    if (x->hc->c->ssl || fd < 0 || off < 0 || req->res.content_length < 0 || req->is_head ||
        st < 200 || st == 204 || st == 304)
        return SL_EINVAL;
    return start_send(req, NULL, fd, off, len, final);
}

int sl_h1_op_informational(sl_req_t *req, int status, const sl_headers_t *hdrs)
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

/* Test faults (harness): RAW writes the handler's bytes as they are,
 * in place of a response; the handler then resets, which closes the
 * connection once they are out. */
int sl_h1_op_fault(sl_req_t *req, const sl_fault_t *f)
{
    h1_exch_t *x = req->pdata;
    h1_conn_t *hc = x->hc;
    if (x->closed || hc->reset_pending || hc->c->closing || hc->c->lingering)
        return SL_ECLOSED;
    if (f->kind != SL_FAULT_RAW || x->head_written)
        return SL_EINVAL;
    return sl_conn_write(hc->c, f->data, f->len) == 0 ? 0 : SL_EINVAL;
}

/* Abort: close without finishing the response. Done from a timer so the
 * handler's on_close never runs inside its own reset() call; queued bytes
 * still leave (a chunked body without its last chunk reads as aborted). */
void sl_h1_op_reset(sl_req_t *req, uint32_t h2_error_code)
{
    SL_UNUSED(h2_error_code);
    h1_exch_t *x = req->pdata;
    h1_conn_t *hc = x->hc;
    if (x->closed || hc->reset_pending)
        return;
    if (x->resp == RESP_SENDING)
        x->resp = RESP_WAITING;
    sl_h1_arm_reset(hc);
}
