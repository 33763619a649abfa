/* sluice - SPDX-License-Identifier: MIT
 *
 * A BIO that reads from the conn's socket and queues encrypted records in
 * c->tls_out (bounded; full -> the SSL call returns WANT_WRITE) for conn.c
 * to send in batches. See tls_bio.c.
 */
#ifndef SL_TLS_BIO_H
#define SL_TLS_BIO_H

#include "conn.h"

/* Give c->ssl its BIO. 0 or SL_ENOMEM. */
int sl_tls_bio_attach(sl_conn_t *c);

#endif
