/* sluice - SPDX-License-Identifier: MIT
 *
 * h3reset: a QUIC client that does what no well-behaved HTTP/3 client
 * does, for t/integration/test_56_h3.py: it completes the handshake (ALPN
 * h3, certificate not checked) and then opens request streams and resets
 * them at once, N times, as fast as stream credit allows (the HTTP/3 form
 * of HTTP/2's rapid reset, CVE-2023-44487). It prints one line:
 *
 *   CLOSED app|transport <code>   the server closed the connection
 *   DONE <n>                      all n resets went out and nothing closed
 *   FAILED <why>
 *
 * Usage: h3reset PORT COUNT [nocredit] (the server on 127.0.0.1).
 * "nocredit" grants the server's unidirectional streams (control, QPACK)
 * no flow-control credit, so its QPACK decoder cannot send the stream
 * cancellations the resets call for. Built by the Makefile next to the
 * tests; test-only, not installed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct client {
    int fd;
    struct sockaddr_in local, remote;
    socklen_t locallen;
    ngtcp2_conn *conn;
    gnutls_session_t tls;
    gnutls_certificate_credentials_t cred;
    ngtcp2_crypto_conn_ref ref;
    int handshake_done;
} client_t;

static ngtcp2_tstamp now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (ngtcp2_tstamp)ts.tv_sec * NGTCP2_SECONDS + (ngtcp2_tstamp)ts.tv_nsec;
}

static void cb_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx)
{
    (void)ctx;
    gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

static int cb_new_cid(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                      void *ud)
{
    (void)conn;
    (void)ud;
    cid->datalen = cidlen;
    gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen);
    gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN);
    return 0;
}

static int cb_handshake_completed(ngtcp2_conn *conn, void *ud)
{
    (void)conn;
    ((client_t *)ud)->handshake_done = 1;
    return 0;
}

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
    return ((client_t *)ref->user_data)->conn;
}

static int tls_init(client_t *c)
{
    static const gnutls_datum_t alpn = {(unsigned char *)"h3", 2};
    if (gnutls_certificate_allocate_credentials(&c->cred) != 0 ||
        gnutls_init(&c->tls, GNUTLS_CLIENT) != 0 ||
        ngtcp2_crypto_gnutls_configure_client_session(c->tls) != 0 ||
        gnutls_priority_set_direct(
            c->tls, "%DISABLE_TLS13_COMPAT_MODE:NORMAL:-VERS-ALL:+VERS-TLS1.3", NULL) != 0 ||
        gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->cred) != 0 ||
        gnutls_alpn_set_protocols(c->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY) != 0 ||
        gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, "localhost", 9) != 0)
        return -1;
    c->ref.get_conn = get_conn;
    c->ref.user_data = c;
    gnutls_session_set_ptr(c->tls, &c->ref);
    return 0;
}

static int quic_init(client_t *c, int uni_credit)
{
    ngtcp2_callbacks cb = {
        .client_initial = ngtcp2_crypto_client_initial_cb,
        .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
        .handshake_completed = cb_handshake_completed,
        .encrypt = ngtcp2_crypto_encrypt_cb,
        .decrypt = ngtcp2_crypto_decrypt_cb,
        .hp_mask = ngtcp2_crypto_hp_mask_cb,
        .recv_retry = ngtcp2_crypto_recv_retry_cb,
        .rand = cb_rand,
        .get_new_connection_id = cb_new_cid,
        .update_key = ngtcp2_crypto_update_key_cb,
        .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
        .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
        .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
        .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
    };
    ngtcp2_path path = {{(struct sockaddr *)&c->local, c->locallen},
                        {(struct sockaddr *)&c->remote, sizeof(c->remote)},
                        NULL};
    ngtcp2_cid dcid, scid;
    ngtcp2_settings st;
    ngtcp2_transport_params p;
    dcid.datalen = 18;
    scid.datalen = 8;
    gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen);
    gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
    ngtcp2_settings_default(&st);
    st.initial_ts = now_ns();
    ngtcp2_transport_params_default(&p);
    p.initial_max_streams_uni = 3;
    /* the server's control and QPACK streams */
    p.initial_max_stream_data_uni = uni_credit ? 65536 : 0;
    p.initial_max_stream_data_bidi_local = 65536;
    p.initial_max_data = 1 << 20;
    if (ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &st, &p,
                               NULL, c) != 0)
        return -1;
    ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
    return 0;
}

/* Send what ngtcp2 has; 0, or -1 on a fatal error. */
static int flush(client_t *c)
{
    uint8_t buf[1500];
    for (;;) {
        ngtcp2_path_storage ps;
        ngtcp2_pkt_info pi;
        ngtcp2_path_storage_zero(&ps);
        ngtcp2_ssize n =
            ngtcp2_conn_write_pkt(c->conn, &ps.path, &pi, buf, sizeof(buf), now_ns());
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (send(c->fd, buf, (size_t)n, 0) < 0 && errno != EAGAIN)
            return -1;
    }
}

/* 1: the server closed the connection (printed), 0: go on, -1: failed. */
static int read_some(client_t *c, int timeout_ms)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    uint8_t buf[65536];
    if (poll(&pfd, 1, timeout_ms) <= 0)
        return ngtcp2_conn_handle_expiry(c->conn, now_ns()) == 0 ? 0 : -1;
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0)
            return 0;
        ngtcp2_path path = {{(struct sockaddr *)&c->local, c->locallen},
                            {(struct sockaddr *)&c->remote, sizeof(c->remote)},
                            NULL};
        ngtcp2_pkt_info pi = {0};
        int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, buf, (size_t)n, now_ns());
        if (rv == NGTCP2_ERR_DRAINING || rv == NGTCP2_ERR_CLOSING) {
            ngtcp2_connection_close_error e;
            ngtcp2_conn_get_connection_close_error(c->conn, &e);
            printf("CLOSED %s 0x%llx\n",
                   e.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION ? "app"
                                                                                 : "transport",
                   (unsigned long long)e.error_code);
            return 1;
        }
        if (rv != 0) {
            printf("FAILED read: %s\n", ngtcp2_strerror(rv));
            return -1;
        }
    }
}

int main(int argc, char **argv)
{
    client_t c = {0};
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: h3reset PORT COUNT [nocredit]\n");
        return 2;
    }
    int uni_credit = !(argc == 4 && strcmp(argv[3], "nocredit") == 0);
    long count = atol(argv[2]), sent = 0;
    c.remote.sin_family = AF_INET;
    c.remote.sin_port = htons((uint16_t)atoi(argv[1]));
    c.remote.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c.fd = socket(AF_INET, SOCK_DGRAM, 0);
    c.locallen = sizeof(c.local);
    if (c.fd < 0 || connect(c.fd, (struct sockaddr *)&c.remote, sizeof(c.remote)) != 0 ||
        getsockname(c.fd, (struct sockaddr *)&c.local, &c.locallen) != 0 || tls_init(&c) != 0 ||
        quic_init(&c, uni_credit) != 0) {
        printf("FAILED setup\n");
        return 1;
    }
    time_t deadline = time(NULL) + 20;
    int rv = 0;
    while (rv == 0 && time(NULL) < deadline) {
        /* Open and reset as many streams as credit allows, then wait for
         * the packets that bring more. */
        while (c.handshake_done && sent < count) {
            int64_t sid;
            if (ngtcp2_conn_open_bidi_stream(c.conn, &sid, NULL) != 0)
                break;
            ngtcp2_conn_shutdown_stream(c.conn, sid, 0x10c); /* H3_REQUEST_CANCELLED */
            sent++;
        }
        if (flush(&c) != 0) {
            printf("FAILED write\n");
            return 1;
        }
        if (sent == count) { /* give the server a moment to answer */
            rv = read_some(&c, 500);
            if (rv == 0) {
                printf("DONE %ld\n", sent);
                break;
            }
        } else {
            rv = read_some(&c, 100);
        }
    }
    if (rv == 0 && sent < count)
        printf("FAILED only %ld resets sent before the deadline\n", sent);
    ngtcp2_conn_del(c.conn);
    gnutls_deinit(c.tls);
    gnutls_certificate_free_credentials(c.cred);
    close(c.fd);
    return rv < 0 ? 1 : 0;
}
