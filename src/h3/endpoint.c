/* sluice - SPDX-License-Identifier: MIT
 *
 * The worker's side of QUIC: one UDP socket per QUIC listener (bound with
 * SO_REUSEPORT to the listener's address and port, so the kernel spreads
 * clients over workers by their address), the table from connection ID
 * to connection, and what happens to a packet no connection here owns:
 *
 * - an Initial from a new client starts a connection, after a Retry round
 *   trip when the listener asks for address validation (quic.retry);
 * - an unsupported version gets Version Negotiation;
 * - a short-header packet for an unknown connection ID gets a stateless
 *   reset (RFC 9000 10.3), at most SL_H3_RESETS_PER_S a second. This is
 *   also what a client whose address changed gets when the kernel now
 *   hands its packets to another worker: that worker does not know the
 *   connection, and the client starts a new one (docs/h3.md).
 */
#include "h3_int.h"
#include "../metrics.h"
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define SL_H3_PKTS_PER_EVENT 64
#define SL_H3_RESETS_PER_S 100
#define SL_H3_SOCKBUF (4 << 20)

static __thread sl_h3_worker_t *current;
static uint8_t secret[32];

sl_h3_worker_t *sl_h3_worker(void)
{
    return current;
}

const uint8_t *sl_h3_secret(size_t *len)
{
    *len = sizeof(secret);
    return secret;
}

/* ---- connection IDs ---- */

static size_t cid_hash(const uint8_t *id, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: IDs are random already */
    for (size_t i = 0; i < len; i++)
        h = (h ^ id[i]) * 1099511628211ull;
    return (size_t)h;
}

static sl_h3_cid_slot_t *cid_slot(sl_h3_worker_t *hw, const uint8_t *id, size_t len, int for_insert)
{
    if (!hw->cap)
        return NULL;
    size_t mask = hw->cap - 1, i = cid_hash(id, len) & mask;
    sl_h3_cid_slot_t *tomb = NULL;
    for (size_t probes = 0; probes < hw->cap; probes++, i = (i + 1) & mask) {
        sl_h3_cid_slot_t *s = &hw->cids[i];
        if (!s->len && !s->tomb)
            return for_insert ? (tomb ? tomb : s) : NULL;
        if (s->tomb) {
            if (!tomb)
                tomb = s;
            continue;
        }
        if (s->len == len && memcmp(s->id, id, len) == 0)
            return s;
    }
    return for_insert ? tomb : NULL;
}

/* Rehash into a table sized for the live entries (at most 3/8 full), so
 * that tombstones left by connection-ID churn are swept, not grown on. */
static void cid_rehash(sl_h3_worker_t *hw)
{
    sl_h3_cid_slot_t *old = hw->cids;
    size_t ocap = hw->cap;
    hw->cap = 64;
    while (hw->cap * 3 < (hw->ncids + 1) * 8)
        hw->cap *= 2;
    hw->cids = sl_calloc(hw->cap, sizeof(*hw->cids));
    hw->used = hw->ncids;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].len && !old[i].tomb)
            *cid_slot(hw, old[i].id, old[i].len, 1) = old[i];
    sl_free(old);
}

int sl_h3_cid_add(sl_h3_worker_t *hw, const ngtcp2_cid *cid, sl_h3_conn_t *hc)
{
    if ((hw->used + 1) * 4 > hw->cap * 3)
        cid_rehash(hw);
    sl_h3_cid_slot_t *s = cid_slot(hw, cid->data, cid->datalen, 1);
    if (s->len && !s->tomb)
        return SL_ECONFLICT; /* 18 random bytes twice: never in practice */
    if (!s->tomb)
        hw->used++;
    s->len = (uint8_t)cid->datalen;
    s->tomb = 0;
    memcpy(s->id, cid->data, cid->datalen);
    s->hc = hc;
    hw->ncids++;
    return 0;
}

void sl_h3_cid_remove(sl_h3_worker_t *hw, const ngtcp2_cid *cid, const sl_h3_conn_t *hc)
{
    sl_h3_cid_slot_t *s = cid_slot(hw, cid->data, cid->datalen, 0);
    if (!s || s->hc != hc)
        return;
    s->len = 0;
    s->tomb = 1;
    s->hc = NULL;
    hw->ncids--;
}

void sl_h3_cid_new(sl_h3_worker_t *hw, uint8_t *data, size_t len)
{
    do {
        gnutls_rnd(GNUTLS_RND_NONCE, data, len);
        data[0] = (uint8_t)hw->w->id;
    } while (sl_h3_cid_find(hw, data, len));
}

sl_h3_conn_t *sl_h3_cid_find(sl_h3_worker_t *hw, const uint8_t *id, size_t len)
{
    sl_h3_cid_slot_t *s = cid_slot(hw, id, len, 0);
    return s ? s->hc : NULL;
}

/* ---- sending ---- */

/* The source address a wildcard socket must answer from, as a cmsg at
 * cm; returns its space. */
static size_t put_pktinfo(struct cmsghdr *cm, const ngtcp2_addr *local)
{
    if (local->addr->sa_family == AF_INET) {
        struct in_pktinfo pi = {0};
        pi.ipi_spec_dst = ((const struct sockaddr_in *)local->addr)->sin_addr;
        cm->cmsg_level = IPPROTO_IP;
        cm->cmsg_type = IP_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
        return CMSG_SPACE(sizeof(pi));
    }
    struct in6_pktinfo pi6 = {0};
    pi6.ipi6_addr = ((const struct sockaddr_in6 *)local->addr)->sin6_addr;
    cm->cmsg_level = IPPROTO_IPV6;
    cm->cmsg_type = IPV6_PKTINFO;
    cm->cmsg_len = CMSG_LEN(sizeof(pi6));
    memcpy(CMSG_DATA(cm), &pi6, sizeof(pi6));
    return CMSG_SPACE(sizeof(pi6));
}

static size_t put_segment(struct cmsghdr *cm, size_t seg)
{
    uint16_t v = (uint16_t)seg;
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(v));
    memcpy(CMSG_DATA(cm), &v, sizeof(v));
    return CMSG_SPACE(sizeof(v));
}

int sl_h3_ep_send(sl_h3_ep_t *ep, const ngtcp2_path *path, const uint8_t *data, size_t len,
                  size_t seg)
{
    struct iovec iov = {(void *)(uintptr_t)data, len};
    struct msghdr msg = {0};
    uint8_t ctl[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(uint16_t))];
    memset(ctl, 0, sizeof(ctl));
    msg.msg_name = path->remote.addr;
    msg.msg_namelen = path->remote.addrlen;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl;
    msg.msg_controllen = sizeof(ctl);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    size_t used = 0;
    /* A wildcard socket answers from the address the client wrote to. */
    if (ep->wildcard && path->local.addrlen) {
        used += put_pktinfo(cm, &path->local);
        cm = CMSG_NXTHDR(&msg, cm);
    }
    if (seg && seg < len)
        used += put_segment(cm, seg);
    msg.msg_controllen = used;
    if (!used)
        msg.msg_control = NULL;
    for (;;) {
        ssize_t n = sendmsg(ep->fd, &msg, 0);
        if (n >= 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (seg && seg < len && (errno == EIO || errno == EINVAL || errno == EOPNOTSUPP)) {
            /* No segmentation offload here: one datagram at a time. */
            ep->no_gso = 1;
            for (size_t off = 0; off < len; off += seg) {
                int rv = sl_h3_ep_send(ep, path, data + off, SL_MIN(seg, len - off), 0);
                if (rv != 0)
                    return rv;
            }
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!ep->blocked) {
                ep->blocked = 1;
                sl_h3_ep_wait_writable(ep);
            }
            return SL_EAGAIN;
        }
        return SL_ERROR;
    }
}

/* ---- packets nobody here owns ---- */

typedef sl_h3_pkt_t pkt_t;

/* One datagram back to where k came from (n < 0: nothing was written). */
static void reply(const pkt_t *k, const uint8_t *p, ngtcp2_ssize n)
{
    ngtcp2_path path = {{(struct sockaddr *)(uintptr_t)&k->local, k->locallen},
                        {(struct sockaddr *)(uintptr_t)&k->remote, k->remotelen},
                        NULL};
    if (n > 0)
        sl_h3_ep_send(k->ep, &path, p, (size_t)n, 0);
}

static void rand_bytes(uint8_t *p, size_t n)
{
    gnutls_rnd(GNUTLS_RND_NONCE, p, n);
}

static void send_version_negotiation(const pkt_t *k, const ngtcp2_version_cid *vc)
{
    uint8_t buf[256], r;
    uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
    rand_bytes(&r, 1);
    sl_metrics_quic(SL_M_QUIC_VERSION_NEG);
    reply(k, buf,
          ngtcp2_pkt_write_version_negotiation(buf, sizeof(buf), r, vc->scid, vc->scidlen, vc->dcid,
                                               vc->dcidlen, sv, 1));
}

/* RFC 9000 10.3: smaller than what triggered it, and rate-bounded, so
 * that two endpoints cannot loop and nobody can use us to amplify. */
static void send_stateless_reset(sl_h3_worker_t *hw, const pkt_t *k, const ngtcp2_version_cid *vc)
{
    uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN], rnd[64], buf[128];
    ngtcp2_cid cid;
    size_t slen, randlen;
    double now = ev_now(hw->w->loop);
    if (now - hw->resets_stamp >= 1.0) {
        hw->resets_stamp = now;
        hw->resets_sent = 0;
    }
    if (hw->resets_sent >= SL_H3_RESETS_PER_S || k->n < 43 || vc->dcidlen != SL_H3_SCIDLEN) {
        sl_metrics_quic(SL_M_QUIC_DROPPED);
        return;
    }
    randlen = SL_MIN(k->n - 1 - NGTCP2_STATELESS_RESET_TOKENLEN - 1, sizeof(rnd));
    ngtcp2_cid_init(&cid, vc->dcid, vc->dcidlen);
    const uint8_t *s = sl_h3_secret(&slen);
    if (ngtcp2_crypto_generate_stateless_reset_token(token, s, slen, &cid) != 0)
        return;
    rand_bytes(rnd, randlen);
    hw->resets_sent++;
    sl_metrics_quic(SL_M_QUIC_STATELESS_RESET);
    reply(k, buf, ngtcp2_pkt_write_stateless_reset(buf, sizeof(buf), token, rnd, randlen));
}

/* A CONNECTION_CLOSE for a connection we will not create (draining, full,
 * a bad token), so the client hears at once instead of timing out. */
static void send_refusal(const pkt_t *k, const ngtcp2_pkt_hd *hd, uint64_t code)
{
    uint8_t buf[256];
    sl_metrics_quic(SL_M_QUIC_REFUSED);
    /* From the client's own first DCID: its Initial keys come from it, so
     * the client can read the close (RFC 9001 5.2). */
    reply(k, buf,
          ngtcp2_crypto_write_connection_close(buf, sizeof(buf), hd->version, &hd->scid, &hd->dcid,
                                               code, NULL, 0));
}

static void send_retry(sl_h3_worker_t *hw, const pkt_t *k, const ngtcp2_pkt_hd *hd)
{
    uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN], buf[512];
    ngtcp2_cid scid;
    size_t slen;
    const uint8_t *s = sl_h3_secret(&slen);
    scid.datalen = SL_H3_SCIDLEN;
    sl_h3_cid_new(hw, scid.data, scid.datalen);
    ngtcp2_ssize tl = ngtcp2_crypto_generate_retry_token(
        token, s, slen, hd->version, (const struct sockaddr *)&k->remote, k->remotelen, &scid,
        &hd->dcid, sl_wall_ms() * NGTCP2_MILLISECONDS);
    if (tl < 0)
        return;
    sl_metrics_quic(SL_M_QUIC_RETRY);
    reply(k, buf,
          ngtcp2_crypto_write_retry(buf, SL_MIN(sizeof(buf), k->n * 3), hd->version, &hd->scid,
                                    &scid, &hd->dcid, token, (size_t)tl));
}

/* Whether a new connection is let in: 0 (ocid set when a Retry token
 * validated the address), 1 when answered (Retry, refusal) or dropped. */
static int admit(sl_h3_worker_t *hw, const pkt_t *k, ngtcp2_pkt_hd *hd, ngtcp2_cid *ocid,
                 int *have_ocid)
{
    const sl_config_t *cfg = hw->w->cfg;
    const sl_h3_cfg_t *q = sl_h3_cfg(cfg);
    size_t slen;
    const uint8_t *s = sl_h3_secret(&slen);
    if (hw->draining || !k->ep->lcfg ||
        hw->w->conns.nlive >= cfg->limits.max_conns_per_worker) {
        send_refusal(k, hd, NGTCP2_CONNECTION_REFUSED);
        return 1;
    }
    if (hd->token.len && hd->token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
        if (ngtcp2_crypto_verify_retry_token(ocid, hd->token.base, hd->token.len, s, slen,
                                             hd->version, (const struct sockaddr *)&k->remote,
                                             k->remotelen, &hd->dcid, 10 * NGTCP2_SECONDS,
                                             sl_wall_ms() * NGTCP2_MILLISECONDS) != 0) {
            send_refusal(k, hd, NGTCP2_INVALID_TOKEN);
            return 1;
        }
        *have_ocid = 1;
        return 0;
    }
    hd->token.base = NULL; /* a NEW_TOKEN token: we issue none */
    hd->token.len = 0;
    if (q->retry == SL_H3_RETRY_ALWAYS ||
        (q->retry == SL_H3_RETRY_AUTO && hw->handshaking >= q->retry_handshakes)) {
        send_retry(hw, k, hd);
        return 1;
    }
    return 0;
}

void sl_h3_ep_packet(sl_h3_worker_t *hw, pkt_t *k)
{
    ngtcp2_version_cid vc;
    int rv = ngtcp2_pkt_decode_version_cid(&vc, k->p, k->n, SL_H3_SCIDLEN);
    if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
        send_version_negotiation(k, &vc);
        return;
    }
    if (rv != 0) {
        sl_metrics_quic(SL_M_QUIC_DROPPED);
        return;
    }
    ngtcp2_path path = {{(struct sockaddr *)&k->local, k->locallen},
                        {(struct sockaddr *)&k->remote, k->remotelen},
                        k->ep};
    sl_h3_conn_t *hc = sl_h3_cid_find(hw, vc.dcid, vc.dcidlen);
    if (hc) {
        sl_h3_conn_read(hc, &path, k->p, k->n);
        return;
    }
    if (!(k->p[0] & 0x80)) { /* short header: a connection we do not have */
        if (!sl_h3_forward(hw, k, vc.dcid, vc.dcidlen))
            send_stateless_reset(hw, k, &vc);
        return;
    }
    ngtcp2_pkt_hd hd;
    ngtcp2_cid ocid;
    int have_ocid = 0;
    if (ngtcp2_accept(&hd, k->p, k->n) != 0) {
        sl_metrics_quic(SL_M_QUIC_DROPPED);
        return;
    }
    if (admit(hw, k, &hd, &ocid, &have_ocid))
        return;
    hc = sl_h3_conn_new(hw, k->ep, &hd, have_ocid ? &ocid : NULL, &path);
    if (hc)
        sl_h3_conn_read(hc, &path, k->p, k->n);
    else /* limits.conns_per_ip (logged), or no memory: say so at once */
        send_refusal(k, &hd, NGTCP2_CONNECTION_REFUSED);
}

/* The address the packet was sent to, from IP_PKTINFO / IPV6_PKTINFO. */
static void local_of(sl_h3_ep_t *ep, struct msghdr *msg, pkt_t *k)
{
    memcpy(&k->local, &ep->addr, ep->addrlen);
    k->locallen = ep->addrlen;
    if (!ep->wildcard)
        return;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
            struct sockaddr_in *a = (struct sockaddr_in *)&k->local;
            if (a->sin_family == AF_INET)
                a->sin_addr = pi.ipi_addr;
        } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi6;
            memcpy(&pi6, CMSG_DATA(cm), sizeof(pi6));
            ((struct sockaddr_in6 *)&k->local)->sin6_addr = pi6.ipi6_addr;
        }
    }
}

static void on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    sl_h3_ep_t *ep = io->data;
    sl_h3_worker_t *hw = current;
    static __thread uint8_t buf[65536];
    (void)loop;
    if (revents & EV_WRITE) {
        ep->blocked = 0;
        ev_io_stop(hw->w->loop, &ep->io);
        ev_io_set(&ep->io, ep->fd, EV_READ);
        ev_io_start(hw->w->loop, &ep->io);
        for (size_t i = 0; i < hw->cap; i++)
            if (hw->cids[i].len && hw->cids[i].hc && hw->cids[i].hc->ep == ep)
                sl_h3_conn_want_write(hw->cids[i].hc); /* the socket drained */
    }
    if (!(revents & EV_READ))
        return;
    for (int i = 0; i < SL_H3_PKTS_PER_EVENT; i++) {
        pkt_t k = {.ep = ep, .p = buf};
        struct iovec iov = {buf, sizeof(buf)};
        uint8_t ctl[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(int))];
        struct msghdr msg = {0};
        msg.msg_name = &k.remote;
        msg.msg_namelen = sizeof(k.remote);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl;
        msg.msg_controllen = sizeof(ctl);
        ssize_t n = recvmsg(ep->fd, &msg, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (n == 0)
            continue;
        k.n = (size_t)n;
        k.remotelen = msg.msg_namelen;
        local_of(ep, &msg, &k);
        sl_h3_ep_packet(hw, &k);
    }
}

void sl_h3_ep_wait_writable(sl_h3_ep_t *ep)
{
    sl_h3_worker_t *hw = current;
    if (!hw || !ev_is_active(&ep->io)) { /* draining with no reader: nothing waits */
        ep->blocked = 0;
        return;
    }
    ev_io_stop(hw->w->loop, &ep->io);
    ev_io_set(&ep->io, ep->fd, EV_READ | EV_WRITE);
    ev_io_start(hw->w->loop, &ep->io);
}

/* ---- sockets ---- */

static int is_wildcard(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, &in6addr_any,
                  sizeof(in6addr_any)) == 0;
}

static int ep_socket(sl_h3_ep_t *ep, char *err, size_t errlen)
{
    int one = 1, zero = 0, buf = SL_H3_SOCKBUF;
    int fam = ep->addr.ss_family;
    int fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    if (fam == AF_INET6) {
        int pmtu = IPV6_PMTUDISC_DO;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
        setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof(pmtu));
    }
    if (fam == AF_INET || fam == AF_INET6) {
        /* QUIC's path MTU probes need the DF bit (RFC 9000 14). */
        int pmtu = IP_PMTUDISC_DO;
        setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
        setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof(pmtu));
    }
    if (bind(fd, (struct sockaddr *)&ep->addr, ep->addrlen) != 0)
        goto fail;
    ep->fd = fd;
    return 0;
fail:
    snprintf(err, errlen, "quic: udp socket: %s", strerror(errno));
    if (fd >= 0)
        close(fd);
    return SL_ERROR;
}

static void ep_close(sl_h3_worker_t *hw, size_t i)
{
    sl_h3_ep_t *ep = hw->eps[i];
    ev_io_stop(hw->w->loop, &ep->io);
    close(ep->fd);
    sl_h3_creds_release(ep->creds);
    sl_free(ep);
    hw->eps[i] = hw->eps[--hw->neps];
}

void sl_h3_ep_conn_gone(sl_h3_ep_t *ep)
{
    sl_h3_worker_t *hw = current;
    ep->nconns--;
    hw->nconns--;
    if (ep->nconns == 0 && !ep->lcfg) {
        for (size_t i = 0; i < hw->neps; i++)
            if (hw->eps[i] == ep) {
                ep_close(hw, i);
                break;
            }
    }
    /* Draining: the sockets are all that keeps the loop alive now. */
    if (hw->draining && hw->nconns == 0)
        for (size_t i = 0; i < hw->neps; i++)
            ev_io_stop(hw->w->loop, &hw->eps[i]->io);
}

/* The socket address a listener's UDP socket binds: its TCP socket's. */
static int tcp_bound(const sl_listener_t *l, struct sockaddr_storage *ss, socklen_t *len)
{
    *len = sizeof(*ss);
    return l->fd >= 0 && getsockname(l->fd, (struct sockaddr *)ss, len) == 0 ? 0 : SL_ERROR;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
                                     : ((const struct sockaddr_in *)ss)->sin_port;
}

sl_h3_ep_t *sl_h3_ep_for(sl_h3_worker_t *hw, const struct sockaddr_storage *local)
{
    for (size_t i = 0; i < hw->neps; i++) {
        sl_h3_ep_t *ep = hw->eps[i];
        if (port_of(&ep->addr) != port_of(local))
            continue;
        if (ep->wildcard)
            return ep;
        if (ep->addr.ss_family == local->ss_family &&
            (local->ss_family == AF_INET
                 ? ((const struct sockaddr_in *)&ep->addr)->sin_addr.s_addr ==
                       ((const struct sockaddr_in *)local)->sin_addr.s_addr
                 : memcmp(&((const struct sockaddr_in6 *)&ep->addr)->sin6_addr,
                          &((const struct sockaddr_in6 *)local)->sin6_addr,
                          sizeof(struct in6_addr)) == 0))
            return ep;
    }
    return NULL;
}

static sl_h3_ep_t *ep_find(sl_h3_worker_t *hw, const struct sockaddr_storage *ss, socklen_t len)
{
    for (size_t i = 0; i < hw->neps; i++)
        if (hw->eps[i]->addrlen == len && memcmp(&hw->eps[i]->addr, ss, len) == 0)
            return hw->eps[i];
    return NULL;
}

static void ep_open(sl_h3_worker_t *hw, const sl_listener_t *l, const struct sockaddr_storage *ss,
                    socklen_t len)
{
    char err[512] = "";
    sl_h3_creds_t *cr = sl_h3_creds_new(l->lcfg->tls, err, sizeof(err));
    sl_h3_ep_t *ep = sl_calloc(1, sizeof(*ep));
    memcpy(&ep->addr, ss, len);
    ep->addrlen = len;
    ep->fd = -1;
    if (!cr || ep_socket(ep, err, sizeof(err)) != 0) {
        sl_log(SL_LOG_ERROR, NULL, "listen %s: %s; no HTTP/3 on it", l->lcfg->addr, err);
        sl_h3_creds_release(cr);
        sl_free(ep);
        return;
    }
    ep->wildcard = is_wildcard(ss);
    ep->lcfg = l->lcfg;
    ep->creds = cr;
    ev_io_init(&ep->io, on_io, ep->fd, EV_READ);
    ep->io.data = ep;
    if (!hw->draining)
        ev_io_start(hw->w->loop, &ep->io);
    hw->eps = sl_realloc(hw->eps, (hw->neps + 1) * sizeof(*hw->eps));
    hw->eps[hw->neps++] = ep;
    if (hw->w->id == 0)
        fprintf(stderr, "sluice: listening on %s port %d (udp, quic, alpn h3)\n", l->lcfg->addr,
                sl_listener_port(l->fd));
}

/* A kept endpoint under a new snapshot: its listener's new settings and
 * certificates (a failed load keeps the old ones). */
static void ep_repoint(sl_h3_ep_t *ep, const sl_listener_t *l)
{
    char err[512] = "";
    if (ep->lcfg == l->lcfg)
        return;
    ep->lcfg = l->lcfg;
    sl_h3_creds_t *cr = sl_h3_creds_new(l->lcfg->tls, err, sizeof(err));
    if (!cr) {
        sl_log(SL_LOG_ERROR, NULL, "reload: listen %s: %s; HTTP/3 keeps the old certificates",
               l->lcfg->addr, err);
        return;
    }
    sl_h3_creds_release(ep->creds);
    ep->creds = cr;
}

static void on_drain(sl_worker_t *w, void *arg)
{
    sl_h3_worker_t *hw = arg;
    (void)w;
    hw->draining = 1;
    if (hw->nconns == 0)
        for (size_t i = 0; i < hw->neps; i++)
            ev_io_stop(hw->w->loop, &hw->eps[i]->io);
}

/* Open, keep or drop endpoints so that they match w's listeners. */
static void on_config(sl_worker_t *w)
{
    sl_h3_worker_t *hw = current;
    if (!hw) {
        hw = current = sl_calloc(1, sizeof(*hw));
        hw->w = w;
        sl_worker_on_drain(w, on_drain, hw);
        sl_h3_forward_register(w);
    }
    for (size_t i = 0; i < hw->neps; i++)
        hw->eps[i]->lcfg = NULL; /* set again below if still configured */
    for (size_t i = 0; i < w->nlisteners; i++) {
        const sl_listener_t *l = &w->listeners[i];
        struct sockaddr_storage ss;
        socklen_t len;
        if (!l->lcfg->quic || tcp_bound(l, &ss, &len) != 0)
            continue;
        sl_h3_ep_t *ep = ep_find(hw, &ss, len);
        if (ep)
            ep_repoint(ep, l);
        else
            ep_open(hw, l, &ss, len);
    }
    for (size_t i = hw->neps; i-- > 0;)
        if (!hw->eps[i]->lcfg && hw->eps[i]->nconns == 0)
            ep_close(hw, i);
}

/* The worker's loop is over and its connections are closed. */
static void worker_exit(void)
{
    sl_h3_worker_t *hw = current;
    if (!hw)
        return;
    while (hw->neps)
        ep_close(hw, hw->neps - 1);
    sl_free(hw->eps);
    sl_free(hw->cids);
    sl_free(hw);
    current = NULL;
}

void sl_h3_register(void)
{
    gnutls_rnd(GNUTLS_RND_KEY, secret, sizeof(secret));
    sl_h3_config_register();
    sl_worker_on_config(on_config);
    sl_worker_at_exit(worker_exit);
}
