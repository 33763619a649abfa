/* sluice - SPDX-License-Identifier: MIT
 *
 * The buffer chain: a bounded FIFO of fixed-size chunks (buf.h). Chunks come
 * from the worker's spare list when it has one, else from sl_try_malloc, and
 * go back to the spare list (up to max_spare) as soon as they are read empty,
 * so an idle connection holds no chunk at all. See docs/buf.md.
 */
#include "buf.h"

void sl_buf_pool_init(sl_buf_pool_t *p, size_t max_spare)
{
    p->spare = NULL;
    p->nspare = 0;
    p->max_spare = max_spare;
}

void sl_buf_pool_dispose(sl_buf_pool_t *p)
{
    while (p->spare) {
        sl_buf_chunk_t *c = p->spare;
        p->spare = c->next;
        sl_free(c);
    }
    p->nspare = 0;
}

/* A fresh empty chunk, or NULL when the allocator fails. The chunk size is
 * fixed and the count bounded by max_chunks, but the number of chunks alive
 * follows peer traffic, so this is a try_ allocation. */
static sl_buf_chunk_t *chunk_get(sl_buf_pool_t *pool)
{
    sl_buf_chunk_t *c;
    if (pool && pool->spare) {
        c = pool->spare;
        pool->spare = c->next;
        pool->nspare--;
    } else {
        c = sl_try_malloc(sizeof(*c));
        if (!c)
            return NULL;
    }
    c->next = NULL;
    c->r = c->w = 0;
    return c;
}

static void chunk_put(sl_buf_pool_t *pool, sl_buf_chunk_t *c)
{
    if (pool && pool->nspare < pool->max_spare) {
        c->next = pool->spare;
        pool->spare = c;
        pool->nspare++;
        return;
    }
    sl_free(c);
}

void sl_buf_init(sl_buf_t *b, sl_buf_pool_t *pool, size_t max_chunks)
{
    b->head = b->tail = NULL;
    b->pool = pool;
    b->nchunks = 0;
    b->max_chunks = max_chunks;
    b->len = 0;
}

void sl_buf_dispose(sl_buf_t *b)
{
    while (b->head) {
        sl_buf_chunk_t *c = b->head;
        b->head = c->next;
        chunk_put(b->pool, c);
    }
    b->tail = NULL;
    b->nchunks = 0;
    b->len = 0;
}

size_t sl_buf_space(const sl_buf_t *b)
{
    size_t room = b->tail ? SL_BUF_CHUNK_SIZE - b->tail->w : 0;
    if (b->nchunks < b->max_chunks)
        room += (b->max_chunks - b->nchunks) * SL_BUF_CHUNK_SIZE;
    return room;
}

static void append_chunk(sl_buf_t *b, sl_buf_chunk_t *c)
{
    if (b->tail)
        b->tail->next = c;
    else
        b->head = c;
    b->tail = c;
    b->nchunks++;
}

/* Remove the head chunk (fully read) and hand it back. */
static void drop_head(sl_buf_t *b)
{
    sl_buf_chunk_t *c = b->head;
    b->head = c->next;
    if (!b->head)
        b->tail = NULL;
    b->nchunks--;
    chunk_put(b->pool, c);
}

/* Make sure the tail has room, adding a chunk when the bound allows.
 * Returns 0, SL_EAGAIN at the bound, SL_ENOMEM when allocation fails. */
static int ensure_tail_room(sl_buf_t *b, sl_buf_chunk_t **prealloc)
{
    if (b->tail && b->tail->w < SL_BUF_CHUNK_SIZE)
        return 0;
    if (b->nchunks >= b->max_chunks)
        return SL_EAGAIN;
    sl_buf_chunk_t *c;
    if (prealloc && *prealloc) {
        c = *prealloc;
        *prealloc = c->next;
        c->next = NULL;
    } else {
        c = chunk_get(b->pool);
        if (!c)
            return SL_ENOMEM;
    }
    append_chunk(b, c);
    return 0;
}

/* Copy as much of data as fits; returns bytes copied or a negative error
 * when nothing could be copied. */
static ssize_t write_some(sl_buf_t *b, const uint8_t *src, size_t len, sl_buf_chunk_t **prealloc)
{
    size_t done = 0;
    while (done < len) {
        int rv = ensure_tail_room(b, prealloc);
        if (rv != 0)
            return done ? (ssize_t)done : rv;
        sl_buf_chunk_t *t = b->tail;
        size_t n = SL_MIN(len - done, SL_BUF_CHUNK_SIZE - t->w);
        memcpy(t->data + t->w, src + done, n);
        t->w += n;
        b->len += n;
        done += n;
    }
    return (ssize_t)done;
}

ssize_t sl_buf_write(sl_buf_t *b, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    return write_some(b, data, len, NULL);
}

int sl_buf_write_all(sl_buf_t *b, const void *data, size_t len)
{
    sl_buf_chunk_t *t = b->tail;
    /* Most writes are a frame head or a short frame into the tail. */
    if (t && len <= SL_BUF_CHUNK_SIZE - t->w) {
        memcpy(t->data + t->w, data, len);
        t->w += len;
        b->len += len;
        return 0;
    }
    if (len == 0)
        return 0;
    if (len > sl_buf_space(b))
        return SL_EAGAIN;
    /* Allocate every chunk the write needs before copying anything, so an
     * allocation failure leaves the buffer exactly as it was. */
    size_t tail_room = b->tail ? SL_BUF_CHUNK_SIZE - b->tail->w : 0;
    size_t need =
        len > tail_room ? (len - tail_room + SL_BUF_CHUNK_SIZE - 1) / SL_BUF_CHUNK_SIZE : 0;
    sl_buf_chunk_t *pre = NULL;
    for (size_t i = 0; i < need; i++) {
        sl_buf_chunk_t *c = chunk_get(b->pool);
        if (!c)
            goto fail_alloc;
        c->next = pre;
        pre = c;
    }
    ssize_t n = write_some(b, data, len, &pre);
    SL_ASSERT(n == (ssize_t)len && pre == NULL);
    return 0;

fail_alloc:
    while (pre) {
        sl_buf_chunk_t *c = pre;
        pre = c->next;
        chunk_put(b->pool, c);
    }
    return SL_ENOMEM;
}

uint8_t *sl_buf_reserve(sl_buf_t *b, size_t *avail)
{
    if (ensure_tail_room(b, NULL) != 0) {
        *avail = 0;
        return NULL;
    }
    *avail = SL_BUF_CHUNK_SIZE - b->tail->w;
    return b->tail->data + b->tail->w;
}

void sl_buf_commit(sl_buf_t *b, size_t n)
{
    sl_buf_chunk_t *t = b->tail;
    SL_ASSERT(t != NULL && n <= SL_BUF_CHUNK_SIZE - t->w);
    t->w += n;
    b->len += n;
    /* A reserve that read nothing (EAGAIN) must not leave an idle
     * connection holding an empty chunk. */
    if (t->w == 0 && b->head == t)
        drop_head(b);
}

int sl_buf_peek(const sl_buf_t *b, const uint8_t **p, size_t *n)
{
    if (b->len == 0)
        return SL_EAGAIN;
    /* Read-empty chunks are dropped by skip, so the head has data; only an
     * empty chunk left by reserve can sit in front, and only when len == 0. */
    const sl_buf_chunk_t *h = b->head;
    *p = h->data + h->r;
    *n = h->w - h->r;
    return 0;
}

void sl_buf_skip(sl_buf_t *b, size_t n)
{
    SL_ASSERT(n <= b->len);
    while (n > 0) {
        sl_buf_chunk_t *h = b->head;
        size_t k = SL_MIN(n, h->w - h->r);
        h->r += k;
        b->len -= k;
        n -= k;
        if (h->r == h->w)
            drop_head(b);
    }
}

int sl_buf_iov(const sl_buf_t *b, struct iovec *iov, int max)
{
    int i = 0;
    for (const sl_buf_chunk_t *c = b->head; c && i < max; c = c->next) {
        if (c->w == c->r)
            continue;
        iov[i].iov_base = (void *)(c->data + c->r);
        iov[i].iov_len = c->w - c->r;
        i++;
    }
    return i;
}

size_t sl_buf_read(sl_buf_t *b, void *dst, size_t n)
{
    uint8_t *out = dst;
    size_t done = 0;
    while (done < n && b->len > 0) {
        sl_buf_chunk_t *h = b->head;
        size_t k = SL_MIN(n - done, h->w - h->r);
        memcpy(out + done, h->data + h->r, k);
        done += k;
        sl_buf_skip(b, k);
    }
    return done;
}
