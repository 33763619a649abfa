/* sluice - SPDX-License-Identifier: MIT
 *
 * Connection I/O: reads from the socket (or OpenSSL) straight into the
 * protocol, queues output in a bounded sl_buf and flushes it once per loop
 * iteration from the worker's prepare watcher, so many frames from many
 * events leave in one writev / one TLS record run. Closing is deferred:
 * a conn is unlinked at once but freed only in sl_conn_reap, when no
 * callback can still hold it.
 */
#include "conn.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "proxyproto.h"
#include "tls.h"
#include "tls_bio.h"
#include <errno.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <stddef.h>
#include <unistd.h>

_Static_assert(offsetof(sl_conn_t, tag) == 0, "sl_log reads the tag through the conn pointer");

#define READS_PER_EVENT 8 /* fairness: yield to other conns after this */
#define FLUSH_ROUNDS 8    /* on_writable -> flush loops per iteration */
#define READ_BUF_BYTES 65536
#define TLS_OUT_CHUNKS 6 /* encrypted records queued: 96 KiB, > 5 full records */

static sl_conn_start_fn start_h1, start_h2;
static __thread uint8_t read_buf[READ_BUF_BYTES];

static void on_io(struct ev_loop *loop, ev_io *w, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void do_close(sl_conn_t *c);
static int tls_flush(sl_conn_t *c);

void sl_conn_set_starters(sl_conn_start_fn h1, sl_conn_start_fn h2)
{
    start_h1 = h1;
    start_h2 = h2;
}

const sl_config_t *sl_conn_config(const sl_conn_t *c)
{
    return c->cfg;
}

int sl_conn_is_retiring(const sl_conn_t *c)
{
    return c->cfg != c->table->cfg;
}

int sl_conn_worker_id(const sl_conn_t *c)
{
    return c->table->worker_id;
}

/* Set by the main thread before it tells the workers: a worker that has
 * not run its drain command yet already answers as a draining one (a
 * readiness probe must not see "ready" from one worker after another sent
 * GOAWAY). */
static atomic_int process_draining;

void sl_conn_process_drain(void)
{
    atomic_store(&process_draining, 1);
}

int sl_conn_is_draining(const sl_conn_t *c)
{
    return c->table->draining || atomic_load_explicit(&process_draining, memory_order_relaxed);
}

int sl_conn_is_tls(const sl_conn_t *c)
{
    return c->ssl != NULL;
}

static void format_peer(sl_conn_t *c, const struct sockaddr *sa)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        port = ntohs(in->sin_port);
        snprintf(c->tag.peer, sizeof(c->tag.peer), "%s:%u", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
        /* Show v4-mapped peers of a dual-stack listener as plain IPv4. */
        if (strncmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, '.'))
            snprintf(c->tag.peer, sizeof(c->tag.peer), "%s:%u", ip + 7, port);
        else
            snprintf(c->tag.peer, sizeof(c->tag.peer), "[%s]:%u", ip, port);
    } else {
        snprintf(c->tag.peer, sizeof(c->tag.peer), "unix");
    }
}

/* The protocol's start once the connection is ours: the TLS handshake,
 * or HTTP/1.1 (which detects the h2c preface). 0, or SL_ECLOSED. */
static int begin(sl_conn_t *c)
{
    if (c->ssl) {
        c->handshaking = 1;
        sl_conn_timer_set(c, c->cfg->timeouts.tls_handshake_s);
        return 0;
    }
    return start_h1(c, NULL, 0) == 0 ? 0 : SL_ECLOSED;
}

/* PROXY protocol (listener "proxy_protocol"): the header is taken off the
 * socket before anything else, byte-exact (peek, then read only what
 * belongs to it), so TLS and HTTP start on a clean stream. Bounded by
 * SL_PP_V2_MAX bytes and timeouts.tls_handshake_s. */
typedef struct conn_pp {
    size_t len;
    uint8_t buf[SL_PP_V2_MAX];
} conn_pp_t;

/* limits.conns_per_ip, once the client's address is known (after a
 * PROXY protocol header). A refusal is logged at most once a second:
 * the client that trips it may be opening thousands. */
static int admit_client(sl_conn_t *c)
{
    static _Atomic int64_t last_log;
    uint32_t max = c->cfg->limits.conns_per_ip;
    if (max == 0 || sl_climit_key_of((const struct sockaddr *)&c->peer_addr,
                                     c->cfg->limits.conns_per_ip_v6_prefix, &c->climit) != 0)
        return 0;
    if (sl_climit_take(&c->climit, max) == 0) {
        c->climit_held = 1;
        return 0;
    }
    sl_metrics_abuse(SL_M_ABUSE_CONNS_PER_IP);
    int64_t now = (int64_t)ev_now(c->table->loop), prev = atomic_load(&last_log);
    if (now != prev && atomic_compare_exchange_strong(&last_log, &prev, now))
        sl_log(SL_LOG_INFO, c, "client has limits.conns_per_ip (%u) connections open; refused",
               max);
    return SL_ELIMIT;
}

/* 0: wait for more; 1: done (the peer is the header's); SL_ECLOSED. */
static int pp_read(sl_conn_t *c)
{
    conn_pp_t *pp = c->pp;
    ssize_t n;
    do
        n = recv(c->fd, pp->buf + pp->len, sizeof(pp->buf) - pp->len, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n <= 0) {
        sl_log(SL_LOG_INFO, c, "connection closed before its PROXY protocol header");
        return SL_ECLOSED;
    }
    sl_pp_t r;
    ssize_t hl = sl_pp_parse(pp->buf, pp->len + (size_t)n, &r);
    if (hl < 0) {
        sl_log(SL_LOG_INFO, c, "no valid PROXY protocol header; closed");
        return SL_ECLOSED;
    }
    /* What the header still needs, or all that came (all of it is header). */
    size_t take = hl > 0 ? (size_t)hl - pp->len : (size_t)n;
    if (recv(c->fd, pp->buf + pp->len, take, 0) != (ssize_t)take)
        return SL_ECLOSED;
    pp->len += take;
    if (hl == 0)
        return 0;
    if (!r.local) {
        memcpy(&c->peer_addr, &r.src, r.srclen);
        format_peer(c, (const struct sockaddr *)&r.src);
    }
    sl_free(pp);
    c->pp = NULL;
    return 1;
}

/* An event while the header is awaited. 0 to go on, SL_ECLOSED. */
static int on_pp_event(sl_conn_t *c)
{
    int rc = pp_read(c);
    if (rc <= 0)
        return rc;
    if (admit_client(c) != 0)
        return SL_ECLOSED;
    ev_timer_stop(c->table->loop, &c->timer);
    if (begin(c) != 0)
        return SL_ECLOSED;
    /* The ClientHello or the first request may be here already. */
    ev_feed_event(c->table->loop, &c->rio, EV_READ);
    return 0;
}

/* What every connection starts with: its id, snapshot, peer, queues,
 * watchers and its place on the live list. */
static sl_conn_t *conn_alloc(sl_conn_table_t *t, int fd, const sl_listener_cfg_t *lcfg,
                             const struct sockaddr *peer, socklen_t plen)
{
    const sl_config_t *cfg = t->cfg;
    sl_conn_t *c = sl_calloc(1, sizeof(*c));
    c->tag.id = ++t->next_id;
    if (lcfg)
        sl_metrics_conn_accepted(lcfg->slot);
    c->fd = fd;
    c->table = t;
    c->cfg = cfg;
    sl_config_hold(cfg);
    c->lcfg = lcfg;
    memcpy(&c->peer_addr, peer, SL_MIN((size_t)plen, sizeof(c->peer_addr)));
    format_peer(c, peer);
    sl_buf_init(&c->out, t->bufpool,
                cfg->limits.conn_out_bytes / SL_BUF_CHUNK_SIZE +
                    SL_CONN_OUT_SLACK / SL_BUF_CHUNK_SIZE);
    c->tls.fd = fd;
    sl_buf_init(&c->tls.out, t->bufpool, TLS_OUT_CHUNKS);
    ev_io_init(&c->rio, on_io, fd, EV_READ);
    ev_io_init(&c->wio, on_io, fd, EV_WRITE);
    c->rio.data = c->wio.data = c;
    ev_init(&c->timer, on_timer);
    c->timer.data = c;
    c->next = t->live;
    if (t->live)
        t->live->prev = c;
    t->live = c;
    t->nlive++;
    return c;
}

sl_conn_t *sl_conn_new(sl_conn_table_t *t, int fd, const sl_listener_cfg_t *lcfg, SSL_CTX *ssl_ctx,
                       const struct sockaddr *peer, socklen_t plen)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sl_conn_t *c = conn_alloc(t, fd, lcfg, peer, plen);
    if (ssl_ctx) {
        c->ssl = SSL_new(ssl_ctx);
        if (!c->ssl || sl_tls_bio_attach(c->ssl, &c->tls) != 0) {
            sl_log(SL_LOG_WARN, c, "SSL_new failed");
            do_close(c);
            return NULL;
        }
        SSL_set_accept_state(c->ssl);
    }
    if (lcfg && lcfg->proxy_protocol) {
        c->pp = sl_calloc(1, sizeof(*c->pp));
        sl_conn_timer_set(c, c->cfg->timeouts.tls_handshake_s);
    } else if (admit_client(c) != 0 || begin(c) != 0) {
        do_close(c);
        return NULL;
    }
    if (!c->closing)
        ev_io_start(t->loop, &c->rio);
    return c;
}

sl_conn_t *sl_conn_new_datagram(sl_conn_table_t *t, const sl_listener_cfg_t *lcfg,
                                const struct sockaddr *peer, socklen_t plen)
{
    sl_conn_t *c = conn_alloc(t, -1, lcfg, peer, plen);
    if (admit_client(c) != 0) {
        do_close(c);
        return NULL;
    }
    return c;
}

int sl_conn_write(sl_conn_t *c, const void *data, size_t len)
{
    if (c->closing)
        return SL_ECLOSED;
    if (sl_buf_write_all(&c->out, data, len) != 0)
        return SL_EAGAIN;
    sl_conn_flush_soon(c);
    return 0;
}

size_t sl_conn_out_space(const sl_conn_t *c)
{
    return sl_buf_space(&c->out);
}

int sl_conn_out_is_high(const sl_conn_t *c)
{
    return sl_buf_space(&c->out) < SL_CONN_OUT_SLACK;
}

void sl_conn_flush_soon(sl_conn_t *c)
{
    if (c->in_flush_list || c->closing)
        return;
    c->in_flush_list = 1;
    c->next_flush = c->table->flushing;
    c->table->flushing = c;
}

void sl_conn_pause_read(sl_conn_t *c)
{
    c->read_paused = 1;
    ev_io_stop(c->table->loop, &c->rio);
}

void sl_conn_resume_read(sl_conn_t *c)
{
    if (!c->read_paused || c->closing || c->lingering)
        return;
    c->read_paused = 0;
    ev_io_start(c->table->loop, &c->rio);
    /* TLS may hold decrypted bytes that no new socket event will announce. */
    if (c->ssl && SSL_has_pending(c->ssl))
        ev_feed_event(c->table->loop, &c->rio, EV_READ);
}

void sl_conn_timer_set(sl_conn_t *c, double secs)
{
    if (c->closing)
        return;
    if (secs <= 0) {
        ev_timer_stop(c->table->loop, &c->timer);
        c->timer_secs = 0;
        return;
    }
    c->timer.repeat = secs;
    c->timer_secs = secs;
    ev_timer_again(c->table->loop, &c->timer);
}

static int listener_index(const sl_conn_t *c)
{
    return c->lcfg ? c->lcfg->slot : -1;
}

/* The metrics index of a protocol named "h1", "h2" or "h3". */
static int proto_index(const sl_proto_t *p)
{
    return p->name[1] - '1';
}

void sl_conn_set_proto(sl_conn_t *c, const sl_proto_t *p, void *pdata)
{
    if (c->proto) /* h1 -> h2 (Upgrade: h2c) */
        sl_metrics_conn_proto(listener_index(c), proto_index(c->proto), -1);
    if (p)
        sl_metrics_conn_proto(listener_index(c), proto_index(p), +1);
    c->proto = p;
    c->pdata = pdata;
}

/* Run the protocol's on_close exactly once. */
static void close_proto(sl_conn_t *c)
{
    if (c->proto && !c->proto_closed) {
        c->proto_closed = 1;
        c->proto->on_close(c);
    }
}

/* Tear down I/O now; the memory is freed in sl_conn_reap. */
static void do_close(sl_conn_t *c)
{
    sl_conn_table_t *t = c->table;
    if (c->closing)
        return;
    close_proto(c);
    if (c->climit_held)
        sl_climit_release(&c->climit);
    c->climit_held = 0;
    if (c->proto)
        sl_metrics_conn_proto(listener_index(c), proto_index(c->proto), -1);
    c->closing = 1;
    ev_io_stop(t->loop, &c->rio);
    ev_io_stop(t->loop, &c->wio);
    ev_timer_stop(t->loop, &c->timer);
    if (c->ssl) {
        /* Best effort close_notify; never wait for the peer's. */
        if (!c->handshaking && !c->pp && !c->eof) {
            SSL_shutdown(c->ssl);
            tls_flush(c);
        }
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    sl_free(c->pp);
    c->pp = NULL;
    sl_buf_dispose(&c->out);
    sl_buf_dispose(&c->tls.out);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    t->nlive--;
    c->next_closing = t->closing;
    t->closing = c;
}

void sl_conn_close(sl_conn_t *c, int flush)
{
    if (c->closing || c->lingering)
        return;
    if (!flush || c->eof || c->fd < 0) { /* a datagram conn has no queue to linger on */
        do_close(c);
        return;
    }
    /* Linger: stop reading, let queued output (an error page, a GOAWAY)
     * leave, bounded by linger_s. */
    close_proto(c);
    c->lingering = 1;
    ev_io_stop(c->table->loop, &c->rio);
    sl_conn_timer_set(c, c->cfg->timeouts.linger_s);
    sl_conn_flush_soon(c);
}

void sl_conn_drain(sl_conn_t *c)
{
    if (c->closing || c->lingering)
        return;
    if (c->handshaking || !c->proto) {
        do_close(c);
        return;
    }
    if (c->proto->on_drain(c) == SL_ECLOSED)
        sl_conn_close(c, 1);
}

void sl_conn_retire(sl_conn_t *c)
{
    if (c->closing || c->lingering || c->retired || !c->proto)
        return; /* a handshake in progress: asked again once it is over */
    c->retired = 1;
    if (c->proto->on_retire && c->proto->on_retire(c) == SL_ECLOSED)
        sl_conn_close(c, 1);
}

static void log_ssl_error(sl_conn_t *c, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    /* A failed handshake is the client's business: info, not warn. */
    sl_log(SL_LOG_INFO, c, "%s: %s", what, e ? buf : strerror(errno));
    ERR_clear_error();
}

static int finish_handshake(sl_conn_t *c)
{
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    const char *sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
    c->handshaking = 0;
    ev_timer_stop(c->table->loop, &c->timer);
    SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
    c->tls_version = SSL_get_version(c->ssl);
    sl_metrics_tls(c->tls_version, 1);
    if (sni)
        c->sni = sl_strdup(sni);
    if (c->lcfg && c->lcfg->tls && c->lcfg->tls->verify_client)
        c->client_cert = sl_tls_client_identity(c->ssl);
    if (alen == 2 && memcmp(alpn, "h2", 2) == 0) {
        c->alpn = "h2";
        return start_h2(c, NULL, 0);
    }
    c->alpn = alen == 8 && memcmp(alpn, "http/1.1", 8) == 0 ? "http/1.1" : NULL;
    return start_h1(c, NULL, 0);
}

/* Returns 0 to go on (maybe waiting), SL_ECLOSED when the conn closed. */
static int do_handshake(sl_conn_t *c)
{
    sl_tls_clear_errors();
    int r = SSL_do_handshake(c->ssl);
    /* Our flight sits in tls.out; send it now (the rest on EV_WRITE). */
    int f = tls_flush(c);
    if (f == SL_ERROR)
        return SL_ECLOSED;
    if (f == SL_EAGAIN)
        ev_io_start(c->table->loop, &c->wio);
    if (r == 1)
        return finish_handshake(c) == 0 ? 0 : SL_ECLOSED;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        c->want_write = 0;
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        c->want_write = 1;
        ev_io_start(c->table->loop, &c->wio);
        return 0;
    }
    log_ssl_error(c, "TLS handshake failed");
    sl_metrics_tls(NULL, 0);
    return SL_ECLOSED;
}

/* Read one batch. Returns >0 bytes, 0 on EOF, SL_EAGAIN, or SL_ERROR. */
static ssize_t conn_recv(sl_conn_t *c, uint8_t *buf, size_t len)
{
    if (!c->ssl) {
        ssize_t n;
        do
            n = read(c->fd, buf, len);
        while (n < 0 && errno == EINTR);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? SL_EAGAIN : SL_ERROR;
        return n;
    }
    sl_tls_clear_errors();
    int r = SSL_read(c->ssl, buf, (int)SL_MIN(len, (size_t)INT32_MAX));
    if (r > 0)
        return r;
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        /* SSL_read may have queued records of its own (alerts, key updates). */
        if (!sl_buf_is_empty(&c->tls.out))
            sl_conn_flush_soon(c);
        return SL_EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->want_write = 1;
        ev_io_start(c->table->loop, &c->wio);
        return SL_EAGAIN;
    case SSL_ERROR_ZERO_RETURN: return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && errno == 0)
            return 0; /* EOF without close_notify: treat as a plain close */
        /* fall through */
    default: log_ssl_error(c, "TLS read failed"); return SL_ERROR;
    }
}

static void handle_read(sl_conn_t *c)
{
    for (int i = 0; i < READS_PER_EVENT && !c->closing && !c->lingering && !c->read_paused; i++) {
        ssize_t n = conn_recv(c, read_buf, sizeof(read_buf));
        if (n == SL_EAGAIN)
            return;
        if (n < 0) {
            do_close(c);
            return;
        }
        if (n == 0) {
            /* A half-close may still want its answer: the protocol decides.
             * Reading stops either way (EOF stays readable forever). */
            c->eof = 1;
            sl_conn_pause_read(c);
            if (c->proto->on_eof(c) == SL_ECLOSED)
                sl_conn_close(c, 1);
            return;
        }
        if (c->proto->on_read(c, read_buf, (size_t)n) == SL_ECLOSED) {
            sl_conn_close(c, 1);
            return;
        }
        if ((size_t)n < sizeof(read_buf) && !(c->ssl && SSL_has_pending(c->ssl)))
            return;
    }
    /* More may be waiting; let other conns run first, then come back. */
    if (!c->closing && !c->lingering && !c->read_paused)
        ev_feed_event(c->table->loop, &c->rio, EV_READ);
}

/* Send queued encrypted records: 0 when all are out, SL_EAGAIN when the
 * socket is full, SL_ERROR. */
static int tls_flush(sl_conn_t *c)
{
    while (!sl_buf_is_empty(&c->tls.out)) {
        struct iovec iov[16];
        int cnt = sl_buf_iov(&c->tls.out, iov, 16);
        ssize_t n = writev(c->fd, iov, cnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? SL_EAGAIN : SL_ERROR;
        }
        sl_buf_skip(&c->tls.out, (size_t)n);
    }
    return 0;
}

/* Room in tls.out for what one SSL_write of a full record may add: the
 * record, and a session ticket OpenSSL may send first. Below it the direct
 * path is skipped, so it never meets WANT_WRITE in the usual case. */
#define DIRECT_TLS_ROOM (2 * (16384 + 256))
/* Plaintext queued ahead that is encrypted first to clear the way. */
#define DIRECT_AHEAD_MAX 4096

/* Room for a direct record, sending queued records to make it. */
static int tls_room(sl_conn_t *c)
{
    if (sl_buf_space(&c->tls.out) >= DIRECT_TLS_ROOM)
        return 1;
    tls_flush(c); /* an error shows in the next conn_send */
    return sl_buf_space(&c->tls.out) >= DIRECT_TLS_ROOM;
}

/* Encrypt c->out into tls.out until it is empty, OpenSSL wants the socket
 * (tls.out full) or, with direct, the room for a direct record is gone.
 * Bytes OpenSSL did not take stay in c->out, where the retry finds them.
 * Returns 0 or SL_ERROR. */
static int tls_encrypt_out(sl_conn_t *c, int direct)
{
    while (!sl_buf_is_empty(&c->out) && (!direct || tls_room(c))) {
        const uint8_t *p;
        size_t len;
        sl_buf_peek(&c->out, &p, &len);
        sl_tls_clear_errors();
        int r = SSL_write(c->ssl, p, (int)len);
        if (r > 0) {
            sl_buf_skip(&c->out, (size_t)r);
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            return 0;
        log_ssl_error(c, "TLS write failed");
        return SL_ERROR;
    }
    return 0;
}

int sl_conn_write_direct(sl_conn_t *c, const void *p, size_t len)
{
    const uint8_t *b = p;
    if (c->closing)
        return SL_ECLOSED;
    /* A frame head queued ahead (HEADERS, a DATA frame's header) goes
     * first, as its own record, so the data behind it need no copy. */
    if (c->ssl && SSL_is_init_finished(c->ssl) && sl_buf_len(&c->out) <= DIRECT_AHEAD_MAX &&
        tls_encrypt_out(c, 1) == 0 && sl_buf_is_empty(&c->out)) {
        sl_conn_flush_soon(c);
        /* The socket is full: wait for it rather than copy the frame. */
        if (!tls_room(c))
            return SL_EAGAIN;
        do {
            sl_tls_clear_errors();
            int r = SSL_write(c->ssl, b, (int)SL_MIN(len, (size_t)16384));
            if (r <= 0)
                break; /* WANT_*: the record is pending; the rest goes to out,
                        * where tls_send retries it with these same bytes */
            b += r;
            len -= (size_t)r;
        } while (len && tls_room(c));
    }
    return len ? sl_conn_write(c, b, len) : 0;
}

/* Encrypt c->out into tls.out while it has room, send, repeat. */
static int tls_send(sl_conn_t *c)
{
    for (;;) {
        size_t before = sl_buf_len(&c->out) + sl_buf_len(&c->tls.out);
        if (tls_encrypt_out(c, 0) != 0)
            return SL_ERROR;
        int f = tls_flush(c);
        if (f != 0)
            return f == SL_EAGAIN ? 0 : SL_ERROR;
        if (sl_buf_is_empty(&c->out))
            return 0;
        /* tls.out drained but OpenSSL took nothing: it waits for input. */
        if (sl_buf_len(&c->out) + sl_buf_len(&c->tls.out) == before)
            return 0;
    }
}

/* Write what is queued. Returns 0 (maybe partial: wio armed) or SL_ERROR. */
static int conn_send(sl_conn_t *c)
{
    if (c->ssl) {
        if (tls_send(c) != 0)
            return SL_ERROR;
        if (sl_buf_is_empty(&c->out) && sl_buf_is_empty(&c->tls.out))
            ev_io_stop(c->table->loop, &c->wio);
        else
            ev_io_start(c->table->loop, &c->wio);
        return 0;
    }
    while (!sl_buf_is_empty(&c->out)) {
        {
            struct iovec iov[16];
            int cnt = sl_buf_iov(&c->out, iov, 16);
            ssize_t n = writev(c->fd, iov, cnt);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                return SL_ERROR;
            }
            sl_buf_skip(&c->out, (size_t)n);
        }
    }
    if (sl_buf_is_empty(&c->out))
        ev_io_stop(c->table->loop, &c->wio);
    else
        ev_io_start(c->table->loop, &c->wio);
    return 0;
}

/* Output is out; now half-close and read-and-discard until the peer closes
 * or linger_s passes. Closing with unread input would make the kernel send
 * RST, and the client could lose the answer (a 413/431 sent mid-upload). */
static void finish_linger(sl_conn_t *c)
{
    if (c->eof || c->discarding) {
        if (c->eof)
            do_close(c);
        return;
    }
    if (c->ssl) {
        SSL_shutdown(c->ssl); /* close_notify (best effort), then stop using TLS */
        tls_flush(c);
    }
    shutdown(c->fd, SHUT_WR);
    c->discarding = 1;
    ev_io_stop(c->table->loop, &c->wio);
    ev_io_start(c->table->loop, &c->rio);
}

static void discard_input(sl_conn_t *c)
{
    for (int i = 0; i < READS_PER_EVENT; i++) {
        ssize_t n = read(c->fd, read_buf, sizeof(read_buf));
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        do_close(c);
        return;
    }
}

/* Flush, then let the protocol refill while there is room. */
static void flush_conn(sl_conn_t *c)
{
    for (int round = 0; round < FLUSH_ROUNDS && !c->closing; round++) {
        size_t before = sl_buf_len(&c->out);
        if (conn_send(c) != 0) {
            do_close(c);
            return;
        }
        if (c->lingering) {
            if (sl_buf_is_empty(&c->out) && sl_buf_is_empty(&c->tls.out))
                finish_linger(c);
            return;
        }
        if (sl_conn_out_is_high(c) || !c->proto || c->handshaking)
            return;
        c->in_callback = 1;
        int r = c->proto->on_writable(c);
        c->in_callback = 0;
        if (r == SL_ECLOSED) {
            sl_conn_close(c, 1);
            continue;
        }
        if (sl_buf_len(&c->out) == 0 || (sl_buf_len(&c->out) == before && before != 0))
            return;
    }
    /* Still producing after many rounds: finish on the next iteration. */
    if (!c->closing && !sl_buf_is_empty(&c->out))
        sl_conn_flush_soon(c);
}

void sl_conn_flush_pending(sl_conn_table_t *t)
{
    /* Flushing may queue conns again (the protocol refills); take the list
     * first so this loop terminates. */
    while (t->flushing) {
        sl_conn_t *list = t->flushing;
        t->flushing = NULL;
        while (list) {
            sl_conn_t *c = list;
            list = c->next_flush;
            c->in_flush_list = 0;
            c->next_flush = NULL;
            if (!c->closing)
                flush_conn(c);
        }
        if (t->flushing && t->flushing->in_flush_list)
            break; /* a conn re-queued itself: leave it for the next iteration */
    }
}

void sl_conn_reap(sl_conn_table_t *t)
{
    while (t->closing) {
        sl_conn_t *c = t->closing;
        t->closing = c->next_closing;
        /* It may still sit on the flush list (closed while queued). */
        if (c->in_flush_list) {
            sl_conn_t **pp = &t->flushing;
            while (*pp && *pp != c)
                pp = &(*pp)->next_flush;
            if (*pp)
                *pp = c->next_flush;
        }
        sl_free(c->sni);
        sl_free(c->client_cert);
        sl_config_release(c->cfg);
        sl_free(c);
    }
}

static void on_io(struct ev_loop *loop, ev_io *iow, int revents)
{
    sl_conn_t *c = iow->data;
    (void)loop;
    if (c->closing)
        return;
    if (c->discarding) {
        discard_input(c);
        return;
    }
    if (c->pp) {
        if (on_pp_event(c) != 0)
            do_close(c);
        return;
    }
    if (c->handshaking) {
        if (do_handshake(c) != 0)
            do_close(c);
        else if (!c->handshaking && !c->closing)
            handle_read(c); /* the client's first request may already be here */
        return;
    }
    if (revents & EV_WRITE) {
        if (c->want_write) {
            /* TLS needed to write before it could read; retry the read. */
            c->want_write = 0;
            ev_io_stop(loop, &c->wio);
            handle_read(c);
        }
        if (!c->closing)
            flush_conn(c);
    }
    if ((revents & EV_READ) && !c->closing && !c->lingering)
        handle_read(c);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    sl_conn_t *c = t->data;
    (void)loop;
    (void)revents;
    if (c->closing)
        return;
    if (c->pp) {
        sl_log(SL_LOG_INFO, c, "no PROXY protocol header in time; closed");
        do_close(c);
        return;
    }
    if (c->handshaking) {
        sl_log(SL_LOG_INFO, c, "client did not finish the TLS handshake in time");
        sl_metrics_tls(NULL, 0);
        do_close(c);
        return;
    }
    if (c->lingering) {
        do_close(c);
        return;
    }
    ev_timer_stop(loop, t);
    if (c->proto->on_timeout(c) == SL_ECLOSED)
        sl_conn_close(c, 1);
}
