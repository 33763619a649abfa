/* sluice - SPDX-License-Identifier: MIT
 *
 * One QUIC connection: ngtcp2 driven by the worker's loop. Packets come
 * in from endpoint.c as they are read; packets go out in one write pass
 * per loop iteration (the conn's flush, sl_conn_flush_soon), so the ACKs
 * for a burst of packets leave together. The conn timer follows ngtcp2's
 * expiry (loss detection, ACK delay, idle and handshake timeouts).
 *
 * Closing: an error we detect sends CONNECTION_CLOSE and keeps the
 * connection in its closing period for three PTOs, answering what still
 * comes with the same packet (RFC 9000 10.2.1); a peer's close starts the
 * silent draining period; an idle timeout ends it at once.
 */
#include "h3_int.h"
#include "../metrics.h"
#include "../slab.h"
#include <stdio.h>

#define SL_H3_PKTS_PER_PASS 64
#define SL_H3_CLOSE_RESENDS 8

static const sl_proto_t h3_proto;

ngtcp2_tstamp sl_h3_now(void)
{
    return sl_clock_ns();
}

static sl_h3_conn_t *of(void *user_data)
{
    return user_data;
}

/* ---- ngtcp2 callbacks ---- */

static void cb_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx)
{
    (void)ctx;
    gnutls_rnd(GNUTLS_RND_NONCE, dest, len);
}

static int cb_new_cid(ngtcp2_conn *qc, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *ud)
{
    sl_h3_conn_t *hc = of(ud);
    size_t slen;
    const uint8_t *s = sl_h3_secret(&slen);
    (void)qc;
    cid->datalen = cidlen;
    sl_h3_cid_new(hc->hw, cid->data, cidlen);
    if (ngtcp2_crypto_generate_stateless_reset_token(token, s, slen, cid) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    return sl_h3_cid_add(hc->hw, cid, hc) == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

static int cb_remove_cid(ngtcp2_conn *qc, const ngtcp2_cid *cid, void *ud)
{
    (void)qc;
    sl_h3_cid_remove(of(ud)->hw, cid, of(ud));
    return 0;
}

static void handshake_over(sl_h3_conn_t *hc)
{
    if (hc->counted_handshake) {
        hc->counted_handshake = 0;
        hc->hw->handshaking--;
    }
}

static int cb_handshake_completed(ngtcp2_conn *qc, void *ud)
{
    sl_h3_conn_t *hc = of(ud);
    sl_conn_t *c = hc->c;
    (void)qc;
    hc->handshake_done = 1;
    handshake_over(hc);
    c->tls_version = "TLSv1.3";
    c->alpn = "h3";
    c->sni = sl_h3_tls_sni(hc);
    sl_metrics_tls(c->tls_version, 1);
    return 0;
}

static int cb_recv_stream_data(ngtcp2_conn *qc, uint32_t flags, int64_t sid, uint64_t off,
                               const uint8_t *data, size_t len, void *ud, void *sud)
{
    sl_h3_conn_t *hc = of(ud);
    (void)off;
    (void)sud;
    if (!hc->h3)
        return 0;
    nghttp3_ssize n =
        nghttp3_conn_read_stream(hc->h3, sid, data, len, flags & NGTCP2_STREAM_DATA_FLAG_FIN);
    if (n < 0) {
        sl_log(SL_LOG_INFO, hc->c, "client sent bad HTTP/3 (%s)", nghttp3_strerror((int)n));
        ngtcp2_connection_close_error_set_application_error(
            &hc->err, nghttp3_err_infer_quic_app_error_code((int)n), NULL, 0);
        return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    /* Framing and QPACK bytes are ours to credit; body bytes are credited
     * when the handler consumes them (stream.c). */
    ngtcp2_conn_extend_max_stream_offset(qc, sid, (uint64_t)n);
    ngtcp2_conn_extend_max_offset(qc, (uint64_t)n);
    return 0;
}

static int cb_acked(ngtcp2_conn *qc, int64_t sid, uint64_t off, uint64_t len, void *ud, void *sud)
{
    sl_h3_conn_t *hc = of(ud);
    (void)qc;
    (void)off;
    (void)sud;
    if (hc->h3 && nghttp3_conn_add_ack_offset(hc->h3, sid, len) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    return 0;
}

static int cb_stream_close(ngtcp2_conn *qc, uint32_t flags, int64_t sid, uint64_t code, void *ud,
                           void *sud)
{
    sl_h3_conn_t *hc = of(ud);
    (void)sud;
    if (!(flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET))
        code = NGHTTP3_H3_NO_ERROR;
    if (!hc->h3)
        return 0;
    int rv = nghttp3_conn_close_stream(hc->h3, sid, code);
    if (rv == NGHTTP3_ERR_STREAM_NOT_FOUND) {
        /* A request stream nghttp3 never saw (reset before its HEADERS):
         * its slot is free again all the same. */
        if (ngtcp2_is_bidi_stream(sid))
            ngtcp2_conn_extend_max_streams_bidi(qc, 1);
        return 0;
    }
    return rv == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

static int shutdown_read(sl_h3_conn_t *hc, int64_t sid)
{
    int rv = hc->h3 ? nghttp3_conn_shutdown_stream_read(hc->h3, sid) : 0;
    if (rv == 0)
        return 0;
    /* E.g. a client that grants our QPACK decoder stream no credit while
     * it cancels stream after stream: the close names the HTTP/3 error. */
    sl_log(SL_LOG_INFO, hc->c, "client reset a stream HTTP/3 cannot drop (%s)",
           nghttp3_strerror(rv));
    ngtcp2_connection_close_error_set_application_error(
        &hc->err, nghttp3_err_infer_quic_app_error_code(rv), NULL, 0);
    return NGTCP2_ERR_CALLBACK_FAILURE;
}

/* Client resets are counted like HTTP/2's (rapid reset, CVE-2023-44487):
 * a token bucket of quic.reset_burst refilled at reset_rate a second; an
 * empty one closes the connection with H3_EXCESSIVE_LOAD. */
static int reset_allowed(sl_h3_conn_t *hc)
{
    double now = ev_now(hc->hw->w->loop);
    hc->reset_tokens = SL_MIN((double)hc->qcfg->reset_burst,
                              hc->reset_tokens + (now - hc->reset_stamp) * hc->qcfg->reset_rate);
    hc->reset_stamp = now;
    if (hc->reset_tokens >= 1.0) {
        hc->reset_tokens -= 1.0;
        return 1;
    }
    sl_log(SL_LOG_WARN, hc->c, "client reset streams faster than quic.reset_rate; closing");
    sl_metrics_abuse(SL_M_ABUSE_RAPID_RESET);
    ngtcp2_connection_close_error_set_application_error(&hc->err, NGHTTP3_H3_EXCESSIVE_LOAD, NULL,
                                                        0);
    return 0;
}

static int cb_stream_reset(ngtcp2_conn *qc, int64_t sid, uint64_t final_size, uint64_t code,
                           void *ud, void *sud)
{
    sl_h3_conn_t *hc = of(ud);
    (void)qc;
    (void)final_size;
    (void)code;
    (void)sud;
    if (ngtcp2_is_bidi_stream(sid) && !reset_allowed(hc))
        return NGTCP2_ERR_CALLBACK_FAILURE;
    return shutdown_read(hc, sid);
}

static int cb_stop_sending(ngtcp2_conn *qc, int64_t sid, uint64_t code, void *ud, void *sud)
{
    (void)qc;
    (void)code;
    (void)sud;
    return shutdown_read(of(ud), sid);
}

static int cb_max_remote_bidi(ngtcp2_conn *qc, uint64_t max, void *ud)
{
    sl_h3_conn_t *hc = of(ud);
    (void)qc;
    if (hc->h3)
        nghttp3_conn_set_max_client_streams_bidi(hc->h3, max);
    return 0;
}

static int cb_max_stream_data(ngtcp2_conn *qc, int64_t sid, uint64_t max, void *ud, void *sud)
{
    sl_h3_conn_t *hc = of(ud);
    (void)qc;
    (void)max;
    (void)sud;
    if (hc->h3 && nghttp3_conn_unblock_stream(hc->h3, sid) != 0)
        return NGTCP2_ERR_CALLBACK_FAILURE;
    return 0;
}

/* 1-RTT keys are in: HTTP/3 can start (its control streams go out with
 * the handshake's last flight). */
static int cb_recv_tx_key(ngtcp2_conn *qc, ngtcp2_crypto_level level, void *ud)
{
    (void)qc;
    if (level != NGTCP2_CRYPTO_LEVEL_APPLICATION)
        return 0;
    return sl_h3_http_start(of(ud)) == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

static const ngtcp2_callbacks callbacks = {
    .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .handshake_completed = cb_handshake_completed,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = cb_recv_stream_data,
    .acked_stream_data_offset = cb_acked,
    .stream_close = cb_stream_close,
    .rand = cb_rand,
    .get_new_connection_id = cb_new_cid,
    .remove_connection_id = cb_remove_cid,
    .update_key = ngtcp2_crypto_update_key_cb,
    .stream_reset = cb_stream_reset,
    .extend_max_remote_streams_bidi = cb_max_remote_bidi,
    .extend_max_stream_data = cb_max_stream_data,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .stream_stop_sending = cb_stop_sending,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
    .recv_tx_key = cb_recv_tx_key,
};

/* ---- setup ---- */

static void set_params(ngtcp2_transport_params *p, const sl_h3_cfg_t *q, const ngtcp2_pkt_hd *hd,
                       const ngtcp2_cid *ocid, const ngtcp2_cid *scid)
{
    size_t slen;
    const uint8_t *s = sl_h3_secret(&slen);
    ngtcp2_transport_params_default(p);
    p->initial_max_stream_data_bidi_remote = q->stream_window;
    p->initial_max_stream_data_uni = 64 << 10; /* control and QPACK streams */
    p->initial_max_data = q->conn_window;
    p->initial_max_streams_bidi = q->max_streams;
    p->initial_max_streams_uni = 3; /* control, QPACK encoder and decoder */
    p->max_idle_timeout = (ngtcp2_duration)(q->idle_timeout_s * NGTCP2_SECONDS);
    p->active_connection_id_limit = 7;
    p->stateless_reset_token_present = 1;
    ngtcp2_crypto_generate_stateless_reset_token(p->stateless_reset_token, s, slen, scid);
    if (ocid) {
        p->original_dcid = *ocid;
        p->retry_scid = hd->dcid;
        p->retry_scid_present = 1;
    } else {
        p->original_dcid = hd->dcid;
    }
}

static void set_settings(ngtcp2_settings *st, const sl_config_t *cfg, const sl_h3_cfg_t *q)
{
    ngtcp2_settings_default(st);
    st->initial_ts = sl_h3_now();
    st->max_window = q->conn_window;
    st->max_stream_window = q->stream_window;
    st->handshake_timeout = (ngtcp2_duration)(cfg->timeouts.tls_handshake_s * NGTCP2_SECONDS);
    st->cc_algo = NGTCP2_CC_ALGO_CUBIC;
}

static void remember_path(sl_h3_conn_t *hc, const ngtcp2_path *path)
{
    memcpy(&hc->local, path->local.addr, path->local.addrlen);
    hc->locallen = path->local.addrlen;
    memcpy(&hc->remote, path->remote.addr, path->remote.addrlen);
    hc->remotelen = path->remote.addrlen;
}

static void conn_free(sl_h3_conn_t *hc);

sl_h3_conn_t *sl_h3_conn_new(sl_h3_worker_t *hw, sl_h3_ep_t *ep, const ngtcp2_pkt_hd *hd,
                             const ngtcp2_cid *ocid, const ngtcp2_path *path)
{
    sl_conn_t *c =
        sl_conn_new_datagram(&hw->w->conns, ep->lcfg, path->remote.addr, path->remote.addrlen);
    if (!c)
        return NULL;
    const sl_config_t *cfg = sl_conn_config(c);
    sl_h3_conn_t *hc = sl_calloc(1, sizeof(*hc));
    ngtcp2_settings st;
    ngtcp2_transport_params params;
    hc->c = c;
    hc->ep = ep;
    hc->hw = hw;
    hc->qcfg = sl_h3_cfg(cfg);
    hc->creds = ep->creds;
    hc->creds->refs++;
    hc->odcid = hd->dcid;
    hc->reset_tokens = hc->qcfg->reset_burst;
    hc->reset_stamp = ev_now(hw->w->loop);
    ep->nconns++;
    hw->nconns++;
    hc->counted_handshake = 1;
    hw->handshaking++;
    sl_conn_set_proto(c, &h3_proto, hc);
    remember_path(hc, path);
    hc->scid.datalen = SL_H3_SCIDLEN;
    sl_h3_cid_new(hw, hc->scid.data, SL_H3_SCIDLEN);
    set_settings(&st, cfg, hc->qcfg);
    set_params(&params, hc->qcfg, hd, ocid, &hc->scid);
    /* ngtcp2 allocates per packet and per stream: from the worker's slab,
     * each block on the connection's list (qmem.c says why). */
    sl_h3_qmem_init(&hc->qmem);
    if (ngtcp2_conn_server_new(&hc->qc, &hd->scid, &hc->scid, path, hd->version, &callbacks, &st,
                               &params, &hc->qmem.mem, hc) != 0 ||
        sl_h3_tls_session(hc) != 0 || sl_h3_cid_add(hw, &hc->scid, hc) != 0 ||
        sl_h3_cid_add(hw, &hc->odcid, hc) != 0) {
        sl_log(SL_LOG_WARN, c, "quic: could not set up the connection");
        sl_conn_close(c, 0); /* on_close frees hc */
        return NULL;
    }
    return hc;
}

/* ---- output ---- */

static void arm_timer(sl_h3_conn_t *hc)
{
    ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(hc->qc), now = sl_h3_now();
    double secs = exp > now ? (double)(exp - now) / NGTCP2_SECONDS : 1e-6;
    double now_s = ev_now(hc->hw->w->loop);
    if (hc->goaway == 1)
        secs = SL_MIN(secs, SL_MAX(hc->goaway_at - now_s, 1e-6));
    if (hc->nstreams && !hc->sweep_due)
        hc->sweep_due = sl_h3_streams_sweep(hc, now_s);
    if (hc->sweep_due)
        secs = SL_MIN(secs, SL_MAX(hc->sweep_due - now_s, 1e-6));
    sl_conn_timer_set(hc->c, secs);
}

static int send_close_packet(sl_h3_conn_t *hc)
{
    ngtcp2_path path = {{(struct sockaddr *)&hc->local, hc->locallen},
                        {(struct sockaddr *)&hc->remote, hc->remotelen},
                        hc->ep};
    return sl_h3_ep_send(hc->ep, &path, hc->closebuf, hc->closelen, 0);
}

/* Our CONNECTION_CLOSE (hc->err) and the closing period. */
static void start_closing(sl_h3_conn_t *hc)
{
    uint8_t buf[NGTCP2_MAX_UDP_PAYLOAD_SIZE];
    ngtcp2_path_storage ps;
    ngtcp2_pkt_info pi;
    if (hc->closing || hc->draining || !hc->qc)
        return;
    hc->closing = 1;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_ssize n = ngtcp2_conn_write_connection_close(hc->qc, &ps.path, &pi, buf, sizeof(buf),
                                                        &hc->err, sl_h3_now());
    if (n > 0) {
        hc->closebuf = sl_malloc((size_t)n);
        memcpy(hc->closebuf, buf, (size_t)n);
        hc->closelen = (size_t)n;
        send_close_packet(hc);
    }
    sl_conn_timer_set(hc->c, 3.0 * (double)ngtcp2_conn_get_pto(hc->qc) / NGTCP2_SECONDS);
}

void sl_h3_conn_fail(sl_h3_conn_t *hc, uint64_t h3_code, const char *why)
{
    if (why)
        sl_log(SL_LOG_INFO, hc->c, "%s; HTTP/3 connection closed", why);
    ngtcp2_connection_close_error_set_application_error(&hc->err, h3_code, NULL, 0);
    start_closing(hc);
}

static void fail_liberr(sl_h3_conn_t *hc, int rv)
{
    if (!hc->err.error_code) {
        if (rv == NGTCP2_ERR_CRYPTO)
            ngtcp2_connection_close_error_set_transport_error_tls_alert(
                &hc->err, ngtcp2_conn_get_tls_alert(hc->qc), NULL, 0);
        else
            ngtcp2_connection_close_error_set_transport_error_liberr(&hc->err, rv, NULL, 0);
    }
    start_closing(hc);
}

/* The packets of one write pass, sent together (UDP GSO): one path, all
 * of one size but the last, at most SL_H3_GSO_SEGS and SL_H3_GSO_BYTES
 * (what one UDP datagram may carry over IPv4). */
#define SL_H3_GSO_SEGS 64
#define SL_H3_GSO_BYTES 65507

typedef struct batch {
    uint8_t *buf;
    size_t cap, len, seg, n;
    ngtcp2_path_storage ps;
} batch_t;

static void batch_flush(sl_h3_conn_t *hc, batch_t *b)
{
    /* A full socket loses these packets (and stops the pass); QUIC's loss
     * recovery resends what they carried once the socket drains. */
    if (b->len)
        sl_h3_ep_send(hc->ep, &b->ps.path, b->buf, b->len, b->n > 1 ? b->seg : 0);
    b->len = b->seg = b->n = 0;
}

/* A packet of n bytes was written at b->buf + b->len for path. */
static void batch_add(sl_h3_conn_t *hc, batch_t *b, const ngtcp2_path *path, size_t n,
                      size_t maxp)
{
    if (b->n && (!ngtcp2_path_eq(&b->ps.path, path) || n > b->seg)) {
        size_t at = b->len;
        batch_flush(hc, b); /* it cannot join these: first send them */
        memmove(b->buf, b->buf + at, n);
    }
    if (!b->n) {
        ngtcp2_path_copy(&b->ps.path, path);
        b->seg = n;
    }
    b->len += n;
    b->n++;
    if (n < b->seg || b->n == SL_H3_GSO_SEGS || b->len + maxp > b->cap || hc->ep->no_gso)
        batch_flush(hc, b);
}

/* Hand nghttp3's next stream data to ngtcp2 and send the packets, until
 * there is nothing to send, the congestion window is full or the socket
 * is. */
static void write_pass(sl_h3_conn_t *hc)
{
    static __thread uint8_t buf[SL_H3_GSO_BYTES];
    ngtcp2_tstamp ts = sl_h3_now();
    size_t maxp = ngtcp2_conn_get_max_tx_udp_payload_size(hc->qc);
    size_t quantum = ngtcp2_conn_get_send_quantum(hc->qc) / maxp;
    size_t max_pkts = SL_MAX((size_t)1, SL_MIN(quantum, (size_t)SL_H3_PKTS_PER_PASS));
    batch_t b = {.buf = buf, .cap = sizeof(buf)};
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_path_storage_zero(&b.ps);
    maxp = SL_MIN(maxp, sizeof(buf));
    for (size_t pkts = 0; pkts < max_pkts && !hc->ep->blocked;) {
        int64_t sid = -1;
        int fin = 0;
        /* At most three pieces per STREAM frame: ngtcp2 0.12 mallocs a frame
         * of more and, when loss recovery later trims it to three or fewer,
         * frees it into its object pool instead, where it is lost (fixed
         * upstream in 1.6.0, commit af11b29c). Seen as LeakSanitizer
         * reports after client migrations; none since. */
        nghttp3_vec vec[3];
        nghttp3_ssize nvec = 0;
        if (hc->h3 && ngtcp2_conn_get_max_data_left(hc->qc)) {
            nvec = nghttp3_conn_writev_stream(hc->h3, &sid, &fin, vec, SL_ARRAY_LEN(vec));
            if (nvec < 0) {
                sl_h3_conn_fail(hc, nghttp3_err_infer_quic_app_error_code((int)nvec),
                                "HTTP/3 framing failed");
                return;
            }
        }
        ngtcp2_ssize ndata;
        ngtcp2_pkt_info pi;
        uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE | (fin ? NGTCP2_WRITE_STREAM_FLAG_FIN : 0);
        ngtcp2_ssize n =
            ngtcp2_conn_writev_stream(hc->qc, &ps.path, &pi, b.buf + b.len, maxp, &ndata, flags,
                                      sid, (const ngtcp2_vec *)vec, (size_t)nvec, ts);
        if (n < 0) {
            if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
                nghttp3_conn_block_stream(hc->h3, sid);
                continue;
            }
            if (n == NGTCP2_ERR_STREAM_SHUT_WR) {
                nghttp3_conn_shutdown_stream_write(hc->h3, sid);
                continue;
            }
            if (n == NGTCP2_ERR_WRITE_MORE) {
                if (nghttp3_conn_add_write_offset(hc->h3, sid, (size_t)ndata) != 0)
                    break;
                continue;
            }
            batch_flush(hc, &b);
            fail_liberr(hc, (int)n);
            return;
        }
        if (ndata >= 0 && nghttp3_conn_add_write_offset(hc->h3, sid, (size_t)ndata) != 0) {
            batch_flush(hc, &b);
            sl_h3_conn_fail(hc, NGHTTP3_H3_INTERNAL_ERROR, "HTTP/3 framing failed");
            return;
        }
        if (n == 0)
            break;
        batch_add(hc, &b, &ps.path, (size_t)n, maxp);
        pkts++;
    }
    batch_flush(hc, &b);
    ngtcp2_conn_update_pkt_tx_time(hc->qc, ts);
}

static void done_or_timer(sl_h3_conn_t *hc)
{
    if (!hc->closing && !hc->draining && !hc->dead)
        arm_timer(hc);
}

void sl_h3_conn_want_write(sl_h3_conn_t *hc)
{
    sl_conn_flush_soon(hc->c);
}

static int on_writable(sl_conn_t *c)
{
    sl_h3_conn_t *hc = c->pdata;
    if (hc->closing || hc->draining)
        return 0;
    sl_h3_run_proceed(hc);
    if (hc->closing || hc->draining)
        return 0;
    if (hc->goaway && sl_h3_http_goaway_step(hc)) {
        sl_h3_conn_fail(hc, NGHTTP3_H3_NO_ERROR, NULL);
        return 0;
    }
    write_pass(hc);
    done_or_timer(hc);
    return 0;
}

/* ---- input ---- */

void sl_h3_conn_read(sl_h3_conn_t *hc, const ngtcp2_path *path, const uint8_t *pkt, size_t len)
{
    ngtcp2_pkt_info pi = {0};
    if (hc->draining)
        return;
    if (hc->closing) {
        if (hc->closelen && hc->closelen < len * 3 && hc->close_resends++ < SL_H3_CLOSE_RESENDS)
            send_close_packet(hc);
        return;
    }
    int rv = ngtcp2_conn_read_pkt(hc->qc, path, &pi, pkt, len, sl_h3_now());
    if (rv == 0) {
        /* The client may have moved (NAT rebinding): answer where it is. */
        remember_path(hc, path);
        sl_h3_conn_want_write(hc);
        return;
    }
    if (rv == NGTCP2_ERR_DRAINING) {
        hc->draining = 1;
        sl_conn_timer_set(hc->c, 3.0 * (double)ngtcp2_conn_get_pto(hc->qc) / NGTCP2_SECONDS);
        return;
    }
    if (rv == NGTCP2_ERR_DROP_CONN || rv == NGTCP2_ERR_RETRY) {
        sl_conn_close(hc->c, 0);
        return;
    }
    if (rv == NGTCP2_ERR_CRYPTO)
        sl_log(SL_LOG_INFO, hc->c, "QUIC handshake failed (TLS alert %u)",
               ngtcp2_conn_get_tls_alert(hc->qc));
    fail_liberr(hc, rv);
}

/* ---- the sl_proto_t ---- */

static int on_read(sl_conn_t *c, const uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
    return 0; /* packets come through endpoint.c */
}

static int on_eof(sl_conn_t *c)
{
    (void)c;
    return 0;
}

static int on_timeout(sl_conn_t *c)
{
    sl_h3_conn_t *hc = c->pdata;
    if (hc->closing || hc->draining)
        return SL_ECLOSED; /* the closing or draining period is over */
    double now = ev_now(hc->hw->w->loop);
    if (hc->sweep_due && now >= hc->sweep_due)
        hc->sweep_due = sl_h3_streams_sweep(hc, now);
    int rv = ngtcp2_conn_handle_expiry(hc->qc, sl_h3_now());
    if (rv == NGTCP2_ERR_IDLE_CLOSE)
        return SL_ECLOSED; /* silently, as RFC 9000 10.1 says */
    if (rv != 0) {
        if (!hc->handshake_done)
            sl_log(SL_LOG_INFO, c, "client did not finish the QUIC handshake in time");
        fail_liberr(hc, rv);
        return hc->closing ? 0 : SL_ECLOSED;
    }
    return on_writable(c);
}

static int on_drain(sl_conn_t *c)
{
    sl_h3_conn_t *hc = c->pdata;
    if (!hc->h3) /* still in its handshake: nothing to finish */
        return SL_ECLOSED;
    sl_h3_http_goaway(hc);
    return 0;
}

static void conn_free(sl_h3_conn_t *hc)
{
    ngtcp2_cid scids[16];
    if (hc->qc) {
        size_t n = ngtcp2_conn_get_num_scid(hc->qc);
        if (n <= SL_ARRAY_LEN(scids)) {
            ngtcp2_conn_get_scid(hc->qc, scids);
            for (size_t i = 0; i < n; i++)
                sl_h3_cid_remove(hc->hw, &scids[i], hc);
        }
    }
    sl_h3_cid_remove(hc->hw, &hc->scid, hc);
    sl_h3_cid_remove(hc->hw, &hc->odcid, hc);
    if (hc->h3)
        nghttp3_conn_del(hc->h3);
    if (hc->qc)
        ngtcp2_conn_del(hc->qc);
    size_t lost = sl_h3_qmem_release(&hc->qmem);
    if (lost)
        sl_log(SL_LOG_DEBUG, hc->c, "quic: freed %zu block(s) ngtcp2 still held", lost);
    if (hc->tls)
        gnutls_deinit(hc->tls);
    handshake_over(hc);
    sl_h3_ep_conn_gone(hc->ep);
    sl_h3_creds_release(hc->creds);
    sl_free(hc->closebuf);
    sl_free(hc);
}

static void on_close(sl_conn_t *c)
{
    sl_h3_conn_t *hc = c->pdata;
    hc->dead = 1;
    sl_h3_streams_abort(hc);
    conn_free(hc);
    c->pdata = NULL;
}

static const sl_proto_t h3_proto = {
    .name = "h3",
    .on_read = on_read,
    .on_writable = on_writable,
    .on_eof = on_eof,
    .on_timeout = on_timeout,
    .on_drain = on_drain,
    .on_retire = on_drain,
    .on_close = on_close,
};
