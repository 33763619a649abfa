/* sluice - SPDX-License-Identifier: MIT
 *
 * sl_slab: a per-thread small-object allocator for hot, short-lived
 * allocations made on a worker thread (nghttp2's, nghttp3's and ngtcp2's
 * per-stream and per-frame objects). Size classes from 32 B to 4 KiB keep freed blocks on
 * thread-local free lists, bounded by SL_SLAB_SPARE_BYTES per thread;
 * the rest past the bound go to sl_malloc/sl_free. Blocks of 16 KiB and
 * more, and callocs of a page and more, are whole pages of a reserved
 * span (pages never written cost nothing; slab.c).
 * A block must be freed on the thread that allocated it or with an empty
 * cache there (it then goes back to malloc). Under AddressSanitizer the
 * cache is off so every block stays visible to it.
 */
#ifndef SL_SLAB_H
#define SL_SLAB_H

#include "sl.h"
#include <nghttp2/nghttp2.h>

#define SL_SLAB_SPARE_BYTES (1024 * 1024)

void *sl_slab_alloc(size_t n);
void *sl_slab_calloc(size_t n, size_t size);
void *sl_slab_realloc(void *p, size_t n);
void sl_slab_free(void *p);
/* The allocator for nghttp2 sessions that live on one worker thread
 * (upstream client ones; server sessions wrap the same calls to know
 * their frame buffer, h2/session.c): nghttp2 allocates several small
 * objects per request, which the cache serves without glibc's bins. */
nghttp2_mem *sl_slab_nghttp2_mem(void);
/* The same four as the libraries' allocator callbacks take them (nghttp3,
 * ngtcp2: malloc, free, calloc, realloc with a user pointer). */
void *sl_slab_mem_malloc(size_t n, void *ud);
void sl_slab_mem_free(void *p, void *ud);
void *sl_slab_mem_calloc(size_t n, size_t size, void *ud);
void *sl_slab_mem_realloc(void *p, size_t n, void *ud);
/* Give a block's pages back to the kernel while its contents are dead (it
 * reads as zeros afterwards); nothing for a block not made of pages. */
void sl_slab_trim(void *p);
/* Give back those of a block's resident pages that hold only zeros: its
 * contents stay the same (they read as zeros again). For a live table
 * that empties, such as nghttp2's stream map with no streams. Returns the
 * pages given back; 0 for a block not made of pages. */
size_t sl_slab_trim_zero(void *p);
/* Return this thread's spare blocks to malloc (at worker exit). */
void sl_slab_flush(void);

#endif
