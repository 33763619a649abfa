/* sluice - SPDX-License-Identifier: MIT
 *
 * TLS contexts (OpenSSL 3): one SSL_CTX per configured certificate, the
 * first being the listener's default; SNI switches the connection to the
 * context whose certificate (or configured names) match; ALPN prefers h2
 * over http/1.1. Contexts are built once on the main thread and shared
 * read-only by the workers (SSL_CTX is safe for that). Also creates the
 * dev default's self-signed certificate when asked to.
 */
#include "tls.h"
#include "log.h"
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/ec.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <unistd.h>

/* Mozilla "intermediate" TLS 1.2 suites: forward secret AEADs only. */
#define DEFAULT_CIPHERS                                                                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct sl_tls {
    SSL_CTX **ctx; /* one per certificate; ctx[0] is the default */
    const sl_tls_cfg_t *cfg;
    size_t n;
};

static int ex_index = -1; /* SSL_CTX ex_data slot pointing back at sl_tls_t */

static void ssl_err(char *err, size_t errlen, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(err, errlen, "%s %s: %s", what, path ? path : "", buf);
    ERR_clear_error();
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    const unsigned char *h11 = NULL;
    for (unsigned i = 0; i < inlen;) {
        unsigned l = in[i];
        if (i + 1 + l > inlen)
            break;
        if (l == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        if (l == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0)
            h11 = in + i + 1;
        i += 1 + l;
    }
    if (h11) {
        *out = h11;
        *outlen = 8;
        return SSL_TLSEXT_ERR_OK;
    }
    /* Nothing we speak: carry on without ALPN and serve HTTP/1.1. */
    return SSL_TLSEXT_ERR_NOACK;
}

static int name_matches(const char *pattern, const char *name)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.');
        return dot && strcasecmp(dot, pattern + 1) == 0;
    }
    return strcasecmp(pattern, name) == 0;
}

static int cert_matches(const sl_tls_t *t, size_t i, const char *name)
{
    const sl_tls_cert_cfg_t *cc = &t->cfg->certs[i];
    if (cc->nnames) {
        for (size_t k = 0; k < cc->nnames; k++)
            if (name_matches(cc->names[k], name))
                return 1;
        return 0;
    }
    X509 *x = SSL_CTX_get0_certificate(t->ctx[i]);
    return x && X509_check_host(x, name, 0, 0, NULL) == 1;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    sl_tls_t *t = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name || t->n < 2)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < t->n; i++) {
        if (cert_matches(t, i, name)) {
            if (i != 0)
                SSL_set_SSL_CTX(ssl, t->ctx[i]);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_OK; /* unknown name: the default certificate */
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static int mkdirs_for(const char *file)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", file);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

static int add_san(X509 *x, const char *san)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static int write_pem(const char *path, EVP_PKEY *key, X509 *x, mode_t mode)
{
    FILE *f;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || !(f = fdopen(fd, "w"))) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, x);
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* An ECDSA P-256 certificate for localhost, valid a year: P-256 signs an
 * order of magnitude faster than RSA-2048, which keeps handshakes cheap. */
int sl_tls_make_self_signed(const char *cert, const char *key, char *err, size_t errlen)
{
    int rc = SL_ERROR;
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!pkey || !x)
        goto out;
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(sl_wall_ms() / 1000));
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"sluice dev", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    if (add_san(x, "DNS:localhost,IP:127.0.0.1,IP:::1") != 0 || !X509_sign(x, pkey, EVP_sha256()))
        goto out;
    if (mkdirs_for(cert) != 0 || mkdirs_for(key) != 0) {
        snprintf(err, errlen, "cannot create directory for %s: %s", cert, strerror(errno));
        goto free_out;
    }
    if (write_pem(key, pkey, NULL, 0600) != 0 || write_pem(cert, NULL, x, 0644) != 0) {
        snprintf(err, errlen, "cannot write %s / %s: %s", cert, key, strerror(errno));
        goto free_out;
    }
    rc = 0;
    goto free_out;
out:
    ssl_err(err, errlen, "cannot create self-signed certificate", cert);
free_out:
    X509_free(x);
    EVP_PKEY_free(pkey);
    return rc;
}

/* Client certificates (like nginx ssl_verify_client): "optional" asks
 * for one and refuses an invalid one; "require" also refuses none. The
 * CA's names are sent so clients pick the right certificate. */
static int set_client_verify(SSL_CTX *ctx, const sl_tls_cfg_t *cfg, char *err, size_t errlen)
{
    if (cfg->verify_client == SL_TLS_VERIFY_OFF)
        return 0;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_ca);
    if (!names || SSL_CTX_load_verify_locations(ctx, cfg->client_ca, NULL) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        ssl_err(err, errlen, "cannot load tls.client_ca", cfg->client_ca);
        return SL_ERROR;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(
        ctx,
        SSL_VERIFY_PEER |
            (cfg->verify_client == SL_TLS_VERIFY_REQUIRE ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
        NULL);
    SSL_CTX_set_verify_depth(ctx, 8);
    return 0;
}

char *sl_tls_client_identity(SSL *ssl)
{
    X509 *x = SSL_get1_peer_certificate(ssl);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char *out = NULL;
    if (!x || SSL_get_verify_result(ssl) != X509_V_OK || !X509_digest(x, EVP_sha256(), md, &mdlen))
        goto done;
    BIO *b = BIO_new(BIO_s_mem());
    char *subj = NULL;
    long sn = 0;
    if (b && X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0)
        sn = BIO_get_mem_data(b, &subj);
    sn = SL_MIN(sn, (long)SL_TLS_SUBJECT_MAX);
    out = sl_malloc(2 * mdlen + 1 + (size_t)sn + 1);
    sl_hex_encode(md, mdlen, out);
    /* Printable only: the subject goes into a header and a log line. */
    char *o = out + 2 * mdlen + 1;
    for (long i = 0; i < sn; i++)
        o[i] = (subj[i] >= 0x20 && subj[i] < 0x7f) ? subj[i] : '?';
    o[sn] = '\0';
    BIO_free(b);
done:
    X509_free(x);
    return out;
}

static SSL_CTX *ctx_new(const sl_tls_cfg_t *cfg, const sl_tls_cert_cfg_t *cc, char *err,
                        size_t errlen)
{
    static const unsigned char sid_ctx[] = "sluice";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_err(err, errlen, "SSL_CTX_new", NULL);
        return NULL;
    }
    int minv = cfg->min_version && strcmp(cfg->min_version, "TLSv1.3") == 0 ? TLS1_3_VERSION
                                                                            : TLS1_2_VERSION;
    SSL_CTX_set_min_proto_version(ctx, minv);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 (cfg->session_tickets ? 0 : SSL_OP_NO_TICKET));
    /* Small idle footprint: drop read/write buffers between records; allow
     * partial writes from the chunk queue. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read whole records (and whatever follows) in one system call
     * instead of a header read and a body read per record. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    SSL_CTX_sess_set_cache_size(ctx, 20480);
    if (SSL_CTX_set_cipher_list(ctx, cfg->ciphers ? cfg->ciphers : DEFAULT_CIPHERS) != 1) {
        ssl_err(err, errlen, "bad tls.ciphers", cfg->ciphers);
        goto fail;
    }
    if (cfg->ciphersuites && SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites) != 1) {
        ssl_err(err, errlen, "bad tls.ciphersuites", cfg->ciphersuites);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cc->cert) != 1) {
        ssl_err(err, errlen, "cannot load certificate", cc->cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cc->key, SSL_FILETYPE_PEM) != 1) {
        ssl_err(err, errlen, "cannot load key", cc->key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_err(err, errlen, "key does not match certificate", cc->cert);
        goto fail;
    }
    if (set_client_verify(ctx, cfg, err, errlen) != 0)
        goto fail;
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int sl_tls_check(const sl_tls_cfg_t *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->ncerts; i++) {
        const sl_tls_cert_cfg_t *cc = &cfg->certs[i];
        if (cfg->self_signed && !file_exists(cc->cert))
            continue; /* would be created at start */
        SSL_CTX *ctx = ctx_new(cfg, cc, err, errlen);
        if (!ctx)
            return SL_ERROR;
        SSL_CTX_free(ctx);
    }
    return 0;
}

sl_tls_t *sl_tls_new(const sl_tls_cfg_t *cfg, char *err, size_t errlen)
{
    if (ex_index < 0)
        ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    for (size_t i = 0; i < cfg->ncerts; i++) {
        const sl_tls_cert_cfg_t *cc = &cfg->certs[i];
        if (cfg->self_signed && !file_exists(cc->cert)) {
            if (sl_tls_make_self_signed(cc->cert, cc->key, err, errlen) != 0)
                return NULL;
            fprintf(stderr,
                    "sluice: created a self-signed certificate for localhost: %s (key %s)\n",
                    cc->cert, cc->key);
        }
    }
    sl_tls_t *t = sl_calloc(1, sizeof(*t));
    t->cfg = cfg;
    t->ctx = sl_calloc(cfg->ncerts, sizeof(*t->ctx));
    for (size_t i = 0; i < cfg->ncerts; i++) {
        t->ctx[i] = ctx_new(cfg, &cfg->certs[i], err, errlen);
        if (!t->ctx[i]) {
            sl_tls_free(t);
            return NULL;
        }
        t->n++;
        /* Every context gets the SNI callback: OpenSSL calls the one of the
         * context the connection started on, which is always ctx[0]. */
        SSL_CTX_set_tlsext_servername_callback(t->ctx[i], on_servername);
        SSL_CTX_set_tlsext_servername_arg(t->ctx[i], t);
    }
    return t;
}

SSL_CTX *sl_tls_default_ctx(const sl_tls_t *t)
{
    return t->ctx[0];
}

void sl_tls_free(sl_tls_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        SSL_CTX_free(t->ctx[i]);
    sl_free(t->ctx);
    sl_free(t);
}
