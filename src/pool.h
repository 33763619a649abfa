/* sluice - SPDX-License-Identifier: MIT
 *
 * sl_pool: a per-request arena for small things (header copies, parsed
 * paths, route results) freed in one go when the stream closes, plus a list
 * of cleanups for resources that are not memory (timers, subscriptions).
 * Cleanups run in reverse order of registration at sl_pool_dispose.
 */
#ifndef SL_POOL_H
#define SL_POOL_H

#include "sl.h"

#define SL_POOL_BLOCK 4096

typedef struct sl_pool_block sl_pool_block_t;
typedef struct sl_pool_cleanup sl_pool_cleanup_t;

typedef struct sl_pool {
    sl_pool_block_t *blocks;
    sl_pool_cleanup_t *cleanups;
    uint8_t *cur, *end;
    /* The first block lives inline so a small request allocates nothing. */
    uint8_t first[1024];
} sl_pool_t;

void sl_pool_init(sl_pool_t *p);
/* Runs cleanups (last registered first), frees every block. Reusable. */
void sl_pool_dispose(sl_pool_t *p);

/* 8-byte aligned memory valid until dispose. Aborts on OOM (internal,
 * callers bound sizes first). */
void *sl_pool_alloc(sl_pool_t *p, size_t n);
char *sl_pool_strndup(sl_pool_t *p, const char *s, size_t n);
/* printf into pool memory; returns a NUL-terminated string. */
char *sl_pool_printf(sl_pool_t *p, const char *fmt, ...) SL_PRINTF(2, 3);
/* Register fn(arg) to run at dispose. */
void sl_pool_on_dispose(sl_pool_t *p, void (*fn)(void *), void *arg);

#endif
