/* sluice - SPDX-License-Identifier: MIT
 *
 * TLS server contexts from a listener's tls config: certificates (SNI),
 * ALPN (h2 preferred, then http/1.1, else none -> HTTP/1.1), session
 * resumption (server cache and tickets), cipher defaults overridable in
 * config. Built on the main thread, shared read-only by workers.
 */
#ifndef SL_TLS_H
#define SL_TLS_H

#include "sl.h"
#include "config.h"
#include <openssl/err.h>
#include <openssl/ssl.h>

typedef struct sl_tls sl_tls_t;

/* Build the contexts for cfg (creating a self-signed localhost certificate
 * first when cfg->self_signed and the file is missing). NULL + err on
 * failure. cfg must outlive the result. */
sl_tls_t *sl_tls_new(const sl_tls_cfg_t *cfg, char *err, size_t errlen);
void sl_tls_free(sl_tls_t *t);
/* Load every certificate and key of cfg once (for `sluice -t`), skipping
 * ones self_signed would create. 0 or SL_ERROR with err set. */
int sl_tls_check(const sl_tls_cfg_t *cfg, char *err, size_t errlen);
SSL_CTX *sl_tls_default_ctx(const sl_tls_t *t);

int sl_tls_make_self_signed(const char *cert, const char *key, char *err, size_t errlen);

/* Before an SSL_read/SSL_write/SSL_do_handshake, whose SSL_get_error is
 * only right with an empty error queue: peeking is a fraction of clearing
 * all sixteen slots, which was ~1% of the CPU of a 1 MiB TLS response (one
 * clear per record), and the queue is nearly always empty. */
static inline void sl_tls_clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

#define SL_TLS_SUBJECT_MAX 1024
/* The verified client certificate of a finished handshake: one malloc'd
 * block "<sha256 hex>\0<subject, RFC 2253, printable, at most
 * SL_TLS_SUBJECT_MAX bytes>\0", or NULL when there is none (or it did not
 * verify). The caller frees it. */
char *sl_tls_client_identity(SSL *ssl);

#endif
