/* sluice - SPDX-License-Identifier: MIT
 *
 * One active health check to a server of an HTTP/2 group ("h2c", "h2",
 * "auto"): its own connection (upconn.c: connect, TLS with the group's
 * ALPN), "GET <path>" as the only stream of a client nghttp2 session, and
 * the final :status as the verdict; the connection is closed after it.
 * An "auto" server that chose http/1.1 in ALPN gets the same GET as
 * HTTP/1.1 on that connection. hcheck.c owns the schedule and the
 * verdict; HTTP/1.1 groups go through the upstream client (client.c)
 * instead. Why not the multiplexed pool (h2up.c): a check must see the
 * server fresh (a new connection, as nginx's and Envoy's do), and a pool
 * stream is tied to a client request.
 */
#include "proxy_int.h"
#include "../slab.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

struct px_probe {
    px_wstate_t *ws;
    int idx;
    px_uconn_t *u;
    nghttp2_session *ng; /* NULL until connected; stays NULL for HTTP/1.1 */
    int status;
    int started; /* connected, request queued */
    int ended;   /* the stream closed (a reset: no status came) */
    char *out; /* pending output (HTTP/1.1 request, or nghttp2's bytes) */
    size_t out_len, out_off;
    px_reader_t *reader; /* HTTP/1.1: the engine's response reader */
    px_probe_done_fn done;
    void *arg;
};

static void probe_free(px_probe_t *p, int live_loop)
{
    if (live_loop)
        px_uconn_close(p->u); /* stops both watchers */
    else
        px_uconn_discard(p->u);
    nghttp2_session_del(p->ng);
    if (p->reader)
        px_reader_free(p->reader);
    sl_free(p->out);
    sl_free(p);
}

static void finish(px_probe_t *p, const char *error)
{
    px_probe_done_fn done = p->done;
    void *arg = p->arg;
    int status = p->status;
    probe_free(p, 1);
    done(arg, error ? 0 : status, error);
}

/* ---- HTTP/2 ---- */

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    SL_UNUSED(ng);
    SL_UNUSED(f);
    SL_UNUSED(flags);
    px_probe_t *p = user;
    uint64_t s;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0 &&
        sl_str_parse_u64((sl_str_t){(const char *)value, valuelen}, 100, 999, &s) == 0 && s >= 200)
        p->status = (int)s; /* 1xx are skipped: the final status is the verdict */
    return 0;
}


static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    SL_UNUSED(ng);
    SL_UNUSED(id);
    SL_UNUSED(code);
    ((px_probe_t *)user)->ended = 1;
    return 0;
}

static nghttp2_session_callbacks *cbs;
static pthread_once_t cbs_once = PTHREAD_ONCE_INIT;

static void make_cbs(void)
{
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        sl_assert_fail("nghttp2 callbacks", __FILE__, __LINE__);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
}

static int start_h2(px_probe_t *p)
{
    pthread_once(&cbs_once, make_cbs);
    if (nghttp2_session_client_new3(&p->ng, cbs, p, NULL, sl_slab_nghttp2_mem()) != 0)
        return -1;
    const px_server_t *srv = &p->ws->up->servers[p->idx];
    const char *path = p->ws->up->health.path;
    int tls = p->u->ssl != NULL;
    nghttp2_nv nva[] = {
        {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":scheme", (uint8_t *)(tls ? "https" : "http"), 7, tls ? 5 : 4,
         NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":authority", (uint8_t *)srv->host, 10, strlen(srv->host),
         NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"user-agent", (uint8_t *)"sluice-health-check", 10, 19, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_submit_settings(p->ng, NGHTTP2_FLAG_NONE, NULL, 0);
    return nghttp2_submit_request(p->ng, NULL, nva, SL_ARRAY_LEN(nva), NULL, NULL) < 0 ? -1 : 0;
}

/* ---- HTTP/1.1 ("auto", the server chose it) ---- */

static void h1_on_head(void *arg, int status, const sl_header_t *fields, size_t n)
{
    SL_UNUSED(fields);
    SL_UNUSED(n);
    ((px_probe_t *)arg)->status = status; /* the reader skips 1xx heads */
}

static const px_reader_cbs_t h1_cbs = {.on_head = h1_on_head};

static void start_h1(px_probe_t *p)
{
    p->out = sl_strdup_printf(&p->out_len,
                              "GET %s HTTP/1.1\r\nhost: %s\r\nuser-agent: sluice-health-check\r\n"
                              "connection: close\r\n\r\n",
                              p->ws->up->health.path, p->ws->up->servers[p->idx].host);
    p->out_off = 0;
    p->reader = px_reader_new(0, &h1_cbs, p);
}

/* ---- io ---- */

/* Write what is pending; then nghttp2's next bytes. 0, or -1 on error. */
static int flush(px_probe_t *p)
{
    for (;;) {
        if (p->out_off == p->out_len && p->ng) {
            const uint8_t *d;
            ssize_t n = nghttp2_session_mem_send(p->ng, &d);
            if (n < 0)
                return -1;
            if (n == 0)
                return 0;
            sl_free(p->out);
            p->out = sl_malloc((size_t)n);
            memcpy(p->out, d, (size_t)n);
            p->out_len = (size_t)n;
            p->out_off = 0;
        }
        if (p->out_off == p->out_len)
            return 0;
        ssize_t w = px_io_write(p->u->fd, p->u->ssl, p->out + p->out_off, p->out_len - p->out_off);
        if (w < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        p->out_off += (size_t)w;
    }
}

/* Read what is there. 1: verdict (status set), 0: more, -1: failed. */
static int read_in(px_probe_t *p, const char **why)
{
    for (;;) {
        char buf[4096];
        ssize_t r = px_io_read(p->u->fd, p->u->ssl, buf, sizeof(buf));
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        if (r <= 0) {
            *why = r == 0 ? "closed the connection before answering" : "read failed";
            return -1;
        }
        if (!p->ng) {
            if (px_reader_feed(p->reader, (const uint8_t *)buf, (size_t)r, why) < 0)
                return -1;
            if (p->status)
                return 1; /* the status is the verdict: the body is not awaited */
            continue;
        }
        if (nghttp2_session_mem_recv(p->ng, (const uint8_t *)buf, (size_t)r) < 0) {
            *why = "sent bad HTTP/2";
            return -1;
        }
        if (p->status)
            return 1;
        if (p->ended || !nghttp2_session_want_read(p->ng)) {
            *why = "ended the stream without a status (reset or GOAWAY)";
            return -1;
        }
    }
}

static int chose_h2(const px_probe_t *p)
{
    if (!p->u->ssl)
        return 1; /* h2c: prior knowledge */
    const unsigned char *a = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(p->u->ssl, &a, &alen);
    return alen == 2 && memcmp(a, "h2", 2) == 0;
}

static void set_events(px_probe_t *p)
{
    int ev = p->u->connecting ? px_uconn_events(p->u) : EV_READ;
    if (!p->u->connecting && p->out_off < p->out_len)
        ev |= EV_WRITE;
    if (!p->u->connecting && p->ng && nghttp2_session_want_write(p->ng))
        ev |= EV_WRITE;
    ev_io_stop(p->ws->loop, &p->u->io);
    ev_io_modify(&p->u->io, ev); /* same fd: no re-registration */
    ev_io_start(p->ws->loop, &p->u->io);
}

static void on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    SL_UNUSED(loop);
    px_probe_t *p = io->data;
    char cause[256];
    const char *why = NULL;
    if (!p->started) {
        int rc = p->u->connecting ? px_uconn_progress(p->u, cause, sizeof(cause)) : 1;
        if (rc < 0) {
            finish(p, cause);
            return;
        }
        if (rc == 0) {
            set_events(p);
            return;
        }
        p->started = 1;
        if (chose_h2(p)) {
            if (start_h2(p) != 0) {
                finish(p, "out of memory");
                return;
            }
        } else if (p->ws->up->proto == PX_PROTO_AUTO) {
            start_h1(p);
        } else {
            finish(p, "the server did not choose h2 (ALPN)");
            return;
        }
        revents = EV_WRITE | EV_READ;
    }
    if ((revents & EV_READ) || px_io_pending(p->u->ssl)) {
        int rc = read_in(p, &why);
        if (rc != 0) {
            finish(p, rc < 0 ? why : NULL);
            return;
        }
    }
    if (flush(p) != 0) {
        finish(p, "send failed");
        return;
    }
    set_events(p);
}

static void on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    px_probe_t *p = t->data;
    char cause[64];
    snprintf(cause, sizeof(cause), "no answer within %gs", p->ws->up->health.timeout_s);
    finish(p, cause);
}

px_probe_t *px_probe_start(px_wstate_t *ws, int idx, px_probe_done_fn done, void *arg)
{
    px_uconn_t *u = px_uconn_connect(ws, idx);
    if (!u) {
        char cause[128];
        snprintf(cause, sizeof(cause), "connect failed: %s", strerror(errno));
        done(arg, 0, cause);
        return NULL;
    }
    px_probe_t *p = sl_calloc(1, sizeof(*p));
    p->ws = ws;
    p->idx = idx;
    p->u = u;
    p->done = done;
    p->arg = arg;
    ev_set_cb(&u->io, on_io);
    u->io.data = p;
    ev_set_cb(&u->timer, on_timeout);
    ev_timer_set(&u->timer, ws->up->health.timeout_s, 0.);
    u->timer.data = p;
    ev_timer_start(ws->loop, &u->timer);
    if (!u->connecting)
        ev_feed_event(ws->loop, &u->io, EV_WRITE); /* (unix socket) connected at once */
    set_events(p);
    return p;
}

void px_probe_discard(px_probe_t *p, int live)
{
    if (p)
        probe_free(p, live);
}
