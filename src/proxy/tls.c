/* sluice - SPDX-License-Identifier: MIT
 *
 * TLS to upstreams: the per-upstream client SSL_CTX (built once at config
 * load), one SSL per upstream connection, the non-blocking handshake and
 * the read / write wrappers that upconn.c, handler.c, tunnel.c and
 * hcheck.c use instead of read(2) / write(2).
 *
 * Session resumption: the CTX is in client cache mode without the internal
 * store; a new session (a TLS 1.3 ticket arrives after the handshake) is
 * kept on the connection's px_srvstate_t, which only its worker touches,
 * and offered by the next connection to that server. No locks needed.
 */
#include "proxy_int.h"
#include "../config.h"
#include "../tls.h"
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <unistd.h>

static int ctx_fail(char *err, size_t errlen, const char *path, const char *what)
{
    char reason[160] = "";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s%s%s", path, what, e ? ": " : "", reason);
    return SL_EINVAL;
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    px_srvstate_t *s = SSL_get_app_data(ssl);
    if (!s)
        return 0;
    if (s->tls_sess)
        SSL_SESSION_free(s->tls_sess);
    s->tls_sess = sess; /* we keep the reference */
    return 1;
}

/* "tls": {"ca_file", "verify", "sni", "min_version"}. */
int px_tls_parse(json_t *obj, const char *path, px_upstream_t *u, char *err, size_t errlen)
{
    static const char *const keys[] = {"ca_file", "verify", "sni", "min_version"};
    char p[256];
    snprintf(p, sizeof(p), "%.200s.tls", path);
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "%s: must be an object", p);
        return SL_EINVAL;
    }
    const char *ca, *sni, *minv;
    int verify;
    if (sl_conf_check_keys(obj, p, keys, 4, err, errlen) ||
        sl_conf_get_str(obj, p, "ca_file", NULL, &ca, err, errlen) ||
        sl_conf_get_bool(obj, p, "verify", 1, &verify, err, errlen) ||
        sl_conf_get_str(obj, p, "sni", NULL, &sni, err, errlen) ||
        sl_conf_get_str(obj, p, "min_version", "TLSv1.2", &minv, err, errlen))
        return SL_EINVAL;
    if (strcmp(minv, "TLSv1.2") != 0 && strcmp(minv, "TLSv1.3") != 0) {
        snprintf(err, errlen, "%s.min_version: must be \"TLSv1.2\" or \"TLSv1.3\"", p);
        return SL_EINVAL;
    }
    if (verify && !ca) {
        snprintf(err, errlen, "%s.ca_file: required when verify is true", p);
        return SL_EINVAL;
    }
    if (sni && (!*sni || strlen(sni) > 253)) {
        snprintf(err, errlen, "%s.sni: must be a host name of 1..253 bytes", p);
        return SL_EINVAL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return ctx_fail(err, errlen, p, "SSL_CTX_new failed");
    u->tls_ctx = ctx;
    u->tls_verify = verify;
    SSL_CTX_set_min_proto_version(ctx,
                                  strcmp(minv, "TLSv1.3") == 0 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    static const unsigned char h1[] = "\x08http/1.1", h2[] = "\x02h2",
                               both[] = "\x02h2\x08http/1.1";
    const unsigned char *alpn = u->proto == PX_PROTO_H2     ? h2
                                : u->proto == PX_PROTO_AUTO ? both
                                                            : h1;
    size_t alen = u->proto == PX_PROTO_H2     ? sizeof(h2) - 1
                  : u->proto == PX_PROTO_AUTO ? sizeof(both) - 1
                                              : sizeof(h1) - 1;
    if (SSL_CTX_set_alpn_protos(ctx, alpn, (unsigned)alen) != 0)
        return ctx_fail(err, errlen, p, "ALPN setup failed");
    if (ca && SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
        return ctx_fail(err, errlen, p, "cannot load ca_file");
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    for (size_t i = 0; i < u->nservers; i++) {
        px_server_t *s = &u->servers[i];
        if (sni) {
            s->tls_name = sl_strdup(sni);
            continue;
        }
        /* The server's host without the port; "[v6]" without brackets. */
        const char *h = s->host;
        const char *end = strrchr(h, ':');
        if (s->ss.ss_family == AF_UNIX || !end)
            end = h + strlen(h);
        if (*h == '[' && end > h && end[-1] == ']')
            h++, end--;
        s->tls_name = sl_strndup(h, (size_t)(end - h));
    }
    return 0;
}

void px_tls_dispose(px_upstream_t *u)
{
    for (size_t i = 0; i < u->nservers; i++)
        sl_free(u->servers[i].tls_name);
    SSL_CTX_free(u->tls_ctx);
    u->tls_ctx = NULL;
}

static int is_ip(const char *name)
{
    struct in6_addr a;
    return inet_pton(AF_INET, name, &a) == 1 || inet_pton(AF_INET6, name, &a) == 1;
}

SSL *px_tls_new(px_wstate_t *ws, int idx, int fd)
{
    const px_upstream_t *up = ws->up;
    const char *name = up->servers[idx].tls_name;
    SSL *ssl = SSL_new(up->tls_ctx);
    if (!ssl)
        goto fail;
    if (SSL_set_fd(ssl, fd) != 1)
        goto fail_ssl;
    SSL_set_app_data(ssl, &ws->srv[idx]);
    SSL_set_connect_state(ssl);
    /* RFC 6066: no SNI for an address literal; the check then is on the IP. */
    if (!is_ip(name) && SSL_set_tlsext_host_name(ssl, name) != 1)
        goto fail_ssl;
    if (up->tls_verify) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        int ok = is_ip(name) ? X509_VERIFY_PARAM_set1_ip_asc(vp, name)
                             : X509_VERIFY_PARAM_set1_host(vp, name, 0);
        if (ok != 1)
            goto fail_ssl;
    }
    if (ws->srv[idx].tls_sess)
        SSL_set_session(ssl, ws->srv[idx].tls_sess);
    return ssl;
fail_ssl:
    SSL_free(ssl);
fail:
    ERR_clear_error();
    errno = ENOMEM;
    return NULL;
}

/* Why a handshake failed: the verify result, else OpenSSL's reason. */
static void hs_cause(SSL *ssl, int rc, char *cause, size_t cap)
{
    long vr = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_last_error();
    char reason[160] = "";
    if (vr != X509_V_OK)
        snprintf(reason, sizeof(reason), "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
    else if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    else if (SSL_get_error(ssl, rc) == SSL_ERROR_SYSCALL && errno)
        snprintf(reason, sizeof(reason), "%s", strerror(errno));
    else
        snprintf(reason, sizeof(reason), "connection closed during the handshake");
    ERR_clear_error();
    snprintf(cause, cap, "TLS handshake failed: %s", reason);
}

int px_tls_handshake(SSL *ssl, int *events, char *cause, size_t cap)
{
    sl_tls_clear_errors();
    int rc = SSL_do_handshake(ssl);
    if (rc == 1)
        return 1;
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *events = e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE;
        return 0;
    }
    hs_cause(ssl, rc, cause, cap);
    return -1;
}

/* read(2)-like: bytes, 0 at the end, -1 with errno (EAGAIN: try later). */
ssize_t px_io_read(int fd, SSL *ssl, void *p, size_t n)
{
    if (!ssl)
        return read(fd, p, n);
    sl_tls_clear_errors();
    errno = 0;
    int r = SSL_read(ssl, p, (int)SL_MIN(n, (size_t)INT32_MAX));
    if (r > 0)
        return r;
    switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: errno = EAGAIN; return -1;
    case SSL_ERROR_ZERO_RETURN: return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_last_error() == 0)
            return errno ? -1 : 0; /* EOF without close_notify: read-to-close ends */
        /* fall through */
    default:
        ERR_clear_error();
        errno = EIO;
        return -1;
    }
}

ssize_t px_io_write(int fd, SSL *ssl, const void *p, size_t n)
{
    if (!ssl)
        return write(fd, p, n);
    if (n == 0)
        return 0;
    sl_tls_clear_errors();
    int w = SSL_write(ssl, p, (int)SL_MIN(n, (size_t)INT32_MAX));
    if (w > 0)
        return w;
    int e = SSL_get_error(ssl, w);
    ERR_clear_error();
    errno = (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? EAGAIN
            : (e == SSL_ERROR_SYSCALL && errno)                     ? errno
                                                                    : EIO;
    return -1;
}

int px_io_pending(SSL *ssl)
{
    return ssl && SSL_pending(ssl) > 0;
}
