/* sluice - SPDX-License-Identifier: MIT
 *
 * ngtcp2's allocator for one QUIC connection (qmem.h).
 *
 * Why the list: ngtcp2 0.12 (Debian 12) loses a stream frame chain now
 * and then. A chain with more than 4 data vectors comes from the
 * allocator; when a split for retransmission leaves it fewer, it is put
 * back in the connection's object pool instead of freed (ngtcp2 issue
 * 1244, fixed in 1.6). The pool's chunks go with the connection, that
 * block did not: 144 bytes per such split, for the life of the process.
 * quic.c's cap of three pieces per STREAM frame keeps most frames in the
 * pool, but ngtcp2 builds some itself, and LeakSanitizer caught one more
 * in test_56's address-change test. With every block on the connection's
 * list, whatever ngtcp2_conn_del leaves is freed after it; nothing else
 * refers to ngtcp2's memory by then.
 */
#include "qmem.h"
#include "../slab.h"

/* The list node, padded to 16 bytes: the block after it keeps the slab's
 * (and malloc's) 16-byte alignment. */
struct sl_h3_qblk {
    _Alignas(16) sl_lru_node_t node;
};

static void *link_block(sl_h3_qmem_t *m, sl_h3_qblk_t *b)
{
    sl_lru_push(&m->blocks, &b->node);
    m->nblocks++;
    return b + 1;
}

static void unlink_block(sl_h3_qmem_t *m, sl_h3_qblk_t *b)
{
    sl_lru_remove(&m->blocks, &b->node);
    m->nblocks--;
}

static void *q_malloc(size_t n, void *ud)
{
    sl_h3_qblk_t *b = n <= SIZE_MAX - sizeof(*b) ? sl_slab_alloc(sizeof(*b) + n) : NULL;
    return b ? link_block(ud, b) : NULL;
}

/* The slab's calloc keeps big blocks untouched (their pages cost nothing
 * until written); only the header's page is written here. */
static void *q_calloc(size_t n, size_t size, void *ud)
{
    if (size && n > (SIZE_MAX - sizeof(sl_h3_qblk_t)) / size)
        return NULL;
    sl_h3_qblk_t *b = sl_slab_calloc(1, sizeof(*b) + n * size);
    return b ? link_block(ud, b) : NULL;
}

static void q_free(void *p, void *ud)
{
    if (!p)
        return;
    sl_h3_qblk_t *b = (sl_h3_qblk_t *)p - 1;
    unlink_block(ud, b);
    sl_slab_free(b);
}

static void *q_realloc(void *p, size_t n, void *ud)
{
    if (!p)
        return q_malloc(n, ud);
    if (n > SIZE_MAX - sizeof(sl_h3_qblk_t))
        return NULL;
    sl_h3_qblk_t *b = (sl_h3_qblk_t *)p - 1;
    unlink_block(ud, b);
    sl_h3_qblk_t *nb = sl_slab_realloc(b, sizeof(*b) + n);
    if (!nb) {
        link_block(ud, b); /* the old block stays as it was */
        return NULL;
    }
    return link_block(ud, nb);
}

void sl_h3_qmem_init(sl_h3_qmem_t *m)
{
    m->mem = (ngtcp2_mem){m, q_malloc, q_free, q_calloc, q_realloc};
    m->blocks = (sl_lru_t){NULL, NULL};
    m->nblocks = 0;
}

size_t sl_h3_qmem_release(sl_h3_qmem_t *m)
{
    size_t n = m->nblocks;
    while (m->blocks.head) {
        sl_h3_qblk_t *b = sl_container_of(m->blocks.head, sl_h3_qblk_t, node);
        unlink_block(m, b);
        sl_slab_free(b);
    }
    return n;
}
