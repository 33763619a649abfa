/* sluice - SPDX-License-Identifier: MIT
 *
 * sl_buf: the one buffer type. A FIFO queue of fixed-size chunks with a
 * maximum chunk count given at init; writing to a full queue returns
 * SL_EAGAIN (there is no "grow anyway"). Spare chunks go back to a
 * per-worker free list (sl_buf_pool_t), so steady-state traffic allocates
 * nothing. Verbs follow curl's bufq: write, peek, skip, iov, slurp.
 * See docs/buf.md. Not thread-safe: a buffer and its pool belong to one
 * worker.
 */
#ifndef SL_BUF_H
#define SL_BUF_H

#include "sl.h"
#include <sys/uio.h>

#define SL_BUF_CHUNK_SIZE 16384 /* one TLS record's worth of plaintext */

typedef struct sl_buf_chunk {
    struct sl_buf_chunk *next;
    size_t r, w; /* read and write offsets into data */
    uint8_t data[SL_BUF_CHUNK_SIZE];
} sl_buf_chunk_t;

/* A free list of spare chunks; keeps at most max_spare. Owned by a worker. */
typedef struct sl_buf_pool {
    sl_buf_chunk_t *spare;
    size_t nspare, max_spare;
} sl_buf_pool_t;

typedef struct sl_buf {
    sl_buf_chunk_t *head, *tail;
    sl_buf_pool_t *pool; /* may be NULL: chunks come from and go to malloc */
    size_t nchunks, max_chunks;
    size_t len; /* bytes queued */
} sl_buf_t;

void sl_buf_pool_init(sl_buf_pool_t *p, size_t max_spare);
void sl_buf_pool_dispose(sl_buf_pool_t *p);

/* Set up an empty buffer holding at most max_chunks chunks. No allocation. */
void sl_buf_init(sl_buf_t *b, sl_buf_pool_t *pool, size_t max_chunks);
/* Release every chunk (to the pool). The buffer is empty and reusable. */
void sl_buf_dispose(sl_buf_t *b);

static inline size_t sl_buf_len(const sl_buf_t *b)
{
    return b->len;
}
static inline int sl_buf_is_empty(const sl_buf_t *b)
{
    return b->len == 0;
}
/* Bytes that can still be written before the chunk bound is hit. */
size_t sl_buf_space(const sl_buf_t *b);
static inline int sl_buf_is_full(const sl_buf_t *b)
{
    return sl_buf_space(b) == 0;
}

/* Append up to len bytes. Returns the number written (> 0), 0 when len is
 * 0, or SL_EAGAIN when nothing fits. A short write means the bound was hit. */
ssize_t sl_buf_write(sl_buf_t *b, const void *data, size_t len);
/* Append all of len bytes or nothing: 0 or SL_EAGAIN. */
int sl_buf_write_all(sl_buf_t *b, const void *data, size_t len);
/* Reserve contiguous tail space for a direct write (e.g. read(2) into the
 * buffer): returns a pointer and sets *avail (> 0), or NULL when full.
 * Call sl_buf_commit with what was actually written. */
uint8_t *sl_buf_reserve(sl_buf_t *b, size_t *avail);
void sl_buf_commit(sl_buf_t *b, size_t n);

/* The first contiguous readable run; returns 0 and sets *p,*n, or
 * SL_EAGAIN when empty. */
int sl_buf_peek(const sl_buf_t *b, const uint8_t **p, size_t *n);
/* Drop n bytes from the front (n <= len). */
void sl_buf_skip(sl_buf_t *b, size_t n);
/* Fill at most max iovecs with the readable runs; returns the count. */
int sl_buf_iov(const sl_buf_t *b, struct iovec *iov, int max);
/* Copy up to n bytes from the front into dst and drop them. Returns count. */
size_t sl_buf_read(sl_buf_t *b, void *dst, size_t n);

#endif
