/* sluice - SPDX-License-Identifier: MIT
 *
 * The BIO under every TLS connection. Reads go straight to the socket;
 * writes append whole encrypted records to a bounded queue (the
 * conn's tls.out), which conn.c sends with one writev for many records. With a
 * socket BIO every 16 KiB record costs its own write(2): 68 system calls
 * per MiB instead of ~4, a measurable part of a large download's cost.
 */
#include "tls_bio.h"
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

static BIO_METHOD *method;
static pthread_once_t method_once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *data, int len)
{
    sl_tls_bio_io_t *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    /* All or nothing: OpenSSL retries the same record after WANT_WRITE. */
    if (sl_buf_write_all(&io->out, data, (size_t)len) != 0) {
        BIO_set_retry_write(b);
        return -1;
    }
    return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
    sl_tls_bio_io_t *io = BIO_get_data(b);
    ssize_t n;
    BIO_clear_retry_flags(b);
    do
        n = read(io->fd, buf, (size_t)len);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_read(b);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* conn.c sends the queue itself */
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void make_method(void)
{
    method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice conn");
    if (!method || !BIO_meth_set_write(method, bio_write) || !BIO_meth_set_read(method, bio_read) ||
        !BIO_meth_set_ctrl(method, bio_ctrl) || !BIO_meth_set_create(method, bio_create))
        sl_assert_fail("BIO_meth_new", __FILE__, __LINE__);
}

int sl_tls_bio_attach(SSL *ssl, sl_tls_bio_io_t *io)
{
    pthread_once(&method_once, make_method);
    BIO *b = BIO_new(method);
    if (!b)
        return SL_ENOMEM;
    BIO_set_data(b, io);
    /* One BIO for both directions: SSL_set_bio takes a single reference. */
    SSL_set_bio(ssl, b, b);
    return 0;
}
