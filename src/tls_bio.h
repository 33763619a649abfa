/* sluice - SPDX-License-Identifier: MIT
 *
 * A BIO that reads from a socket and queues encrypted records in a bounded
 * sl_buf (full -> the SSL call returns WANT_WRITE) for conn.c to send in
 * batches. See tls_bio.c.
 */
#ifndef SL_TLS_BIO_H
#define SL_TLS_BIO_H

#include "sl.h"
#include "buf.h"
#include <openssl/ssl.h>

/* What the BIO works on; its owner (the conn) keeps it alive as long as
 * the SSL. */
typedef struct sl_tls_bio_io {
    int fd;       /* read from */
    sl_buf_t out; /* encrypted records waiting for writev */
} sl_tls_bio_io_t;

/* Give ssl its BIO over io. 0 or SL_ENOMEM. */
int sl_tls_bio_attach(SSL *ssl, sl_tls_bio_io_t *io);

#endif
