/* sluice - SPDX-License-Identifier: MIT
 *
 * The TLS side of QUIC: a listener's certificates loaded into GnuTLS, and
 * one server session per connection configured for ngtcp2. Debian 12's
 * ngtcp2 has no OpenSSL backend (OpenSSL 3.0 has no QUIC API), so the
 * same certificate and key files are read a second time by GnuTLS. With
 * several certificates GnuTLS picks the one whose names match the
 * client's SNI, as the TCP side does (tls.c), the first otherwise.
 */
#include "h3_int.h"
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdio.h>

/* TLS 1.3 only (RFC 9001 4.2), without the middlebox compatibility mode
 * QUIC forbids (RFC 9001 8.4). */
#define PRIORITY                                                                                   \
    "%DISABLE_TLS13_COMPAT_MODE:NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:"           \
    "+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-CCM"

sl_h3_creds_t *sl_h3_creds_new(const sl_tls_cfg_t *tls, char *err, size_t errlen)
{
    sl_h3_creds_t *cr = sl_calloc(1, sizeof(*cr));
    int rv = gnutls_certificate_allocate_credentials(&cr->cred);
    if (rv == 0)
        rv = gnutls_priority_init2(&cr->prio, PRIORITY, NULL, 0);
    for (size_t i = 0; rv >= 0 && i < tls->ncerts; i++) {
        rv = gnutls_certificate_set_x509_key_file2(cr->cred, tls->certs[i].cert, tls->certs[i].key,
                                                   GNUTLS_X509_FMT_PEM, NULL, 0);
        if (rv < 0)
            snprintf(err, errlen, "quic: %s: %s", tls->certs[i].cert, gnutls_strerror(rv));
    }
    if (rv < 0) {
        if (!err[0])
            snprintf(err, errlen, "quic: GnuTLS: %s", gnutls_strerror(rv));
        cr->refs = 1;
        sl_h3_creds_release(cr);
        return NULL;
    }
    cr->refs = 1;
    return cr;
}

void sl_h3_creds_release(sl_h3_creds_t *cr)
{
    if (!cr || --cr->refs > 0)
        return;
    if (cr->cred)
        gnutls_certificate_free_credentials(cr->cred);
    if (cr->prio)
        gnutls_priority_deinit(cr->prio);
    sl_free(cr);
}

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
    sl_h3_conn_t *hc = ref->user_data;
    return hc->qc;
}

/* ALPN "h3" or no connection (RFC 9001 8.1: no_application_protocol). */
static int client_hello_hook(gnutls_session_t s, unsigned htype, unsigned when, unsigned incoming,
                             const gnutls_datum_t *msg)
{
    gnutls_datum_t alpn;
    (void)htype;
    (void)when;
    (void)incoming;
    (void)msg;
    if (gnutls_alpn_get_selected_protocol(s, &alpn) != 0 || alpn.size != 2 ||
        memcmp(alpn.data, "h3", 2) != 0)
        return GNUTLS_E_NO_APPLICATION_PROTOCOL;
    return 0;
}

int sl_h3_tls_session(sl_h3_conn_t *hc)
{
    static const gnutls_datum_t h3 = {(unsigned char *)"h3", 2};
    gnutls_session_t s;
    if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NO_AUTO_SEND_TICKET | GNUTLS_NO_END_OF_EARLY_DATA) !=
        0)
        return SL_ERROR;
    hc->tls = s;
    if (gnutls_priority_set(s, hc->creds->prio) != 0 ||
        ngtcp2_crypto_gnutls_configure_server_session(s) != 0 ||
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, hc->creds->cred) != 0 ||
        gnutls_alpn_set_protocols(s, &h3, 1,
                                  GNUTLS_ALPN_MANDATORY | GNUTLS_ALPN_SERVER_PRECEDENCE) != 0)
        return SL_ERROR;
    gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_POST,
                                       client_hello_hook);
    hc->ref.get_conn = get_conn;
    hc->ref.user_data = hc;
    gnutls_session_set_ptr(s, &hc->ref);
    ngtcp2_conn_set_tls_native_handle(hc->qc, s);
    return 0;
}

/* The client's SNI, or NULL. */
char *sl_h3_tls_sni(sl_h3_conn_t *hc)
{
    char name[256];
    size_t len = sizeof(name);
    unsigned type;
    if (gnutls_server_name_get(hc->tls, name, &len, &type, 0) != 0 || type != GNUTLS_NAME_DNS)
        return NULL;
    return sl_strndup(name, len);
}
