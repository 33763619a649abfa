/* sluice - SPDX-License-Identifier: MIT
 *
 * ngtcp2's allocator for one QUIC connection (qmem.c): the worker's slab,
 * with every block on the connection's list, so that what ngtcp2 still
 * holds after ngtcp2_conn_del is freed with the connection.
 */
#ifndef SL_H3_QMEM_H
#define SL_H3_QMEM_H

#include "../lru.h"
#include <ngtcp2/ngtcp2.h>
#include <stddef.h>

typedef struct sl_h3_qblk sl_h3_qblk_t;

typedef struct sl_h3_qmem {
    ngtcp2_mem mem;  /* handed to ngtcp2, which keeps a pointer to it */
    sl_lru_t blocks; /* every block ngtcp2 holds (only the list is used) */
    size_t nblocks;
} sl_h3_qmem_t;

/* Ready for ngtcp2_conn_server_new(..., &m->mem, ...); m must not move. */
void sl_h3_qmem_init(sl_h3_qmem_t *m);
/* After ngtcp2_conn_del: frees the blocks still on the list and returns
 * how many there were. */
size_t sl_h3_qmem_release(sl_h3_qmem_t *m);

#endif
