/* sluice - SPDX-License-Identifier: MIT
 *
 * Per-thread size-class free lists in front of malloc. Each block carries
 * a 16-byte header naming its class, so free needs no size (nghttp2's
 * allocator interface passes none). Why not glibc alone: its tcache keeps
 * only 7 blocks per size, and an HTTP/2 request costs nghttp2 about seven
 * malloc/free pairs, a measurable share of a small request (docs/bench.md).
 */
#include "slab.h"
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__) || defined(SL_SLAB_NOCACHE)
#define SLAB_CACHE 0
#else
#define SLAB_CACHE 1
#endif

#define NCLASSES 9
#define BIG_CLASS 0xff
#define MAP_CLASS 0xfe
/* Blocks this big get their own mapping: nghttp2's 16 KiB frame buffer is
 * mostly never written on an idle connection, and untouched pages of a
 * fresh mapping cost no memory, where recycled heap pages would. */
#define MAP_MIN 16384
#define HDR 16 /* keeps the payload 16-byte aligned, as malloc's is */

typedef union slab_hdr {
    struct {
        union slab_hdr *next; /* while on a free list */
        uint32_t cls;
        uint32_t pages; /* MAP_CLASS: mapping length in pages */
    } h;
    uint8_t pad[HDR];
} slab_hdr_t;

/* 3072: nghttp2's session object is 2,928 bytes; in the 4 KiB class every
 * connection would carry 1.1 KiB of slack. */
static const size_t class_size[NCLASSES] = {32, 64, 128, 256, 512, 1024, 2048, 3072, 4096};

static __thread slab_hdr_t *free_list[NCLASSES];
static __thread size_t spare_bytes;
static __thread int exit_hook;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void on_thread_exit(void *unused)
{
    (void)unused;
    sl_slab_flush();
}

static void make_key(void)
{
    if (pthread_key_create(&exit_key, on_thread_exit) != 0)
        sl_assert_fail("pthread_key_create", __FILE__, __LINE__);
}

/* Powers of two from 32 to 2048, then 3072 and 4096: no loop on the path
 * every nghttp2 allocation takes. */
static uint32_t class_of(size_t n)
{
    if (n <= 32)
        return 0;
    if (n > 2048)
        return n <= 3072 ? 7 : n <= 4096 ? 8 : BIG_CLASS;
    return (uint32_t)(64 - __builtin_clzll((unsigned long long)(n - 1))) - 5;
}

static void *map_alloc(size_t n)
{
    size_t len = (HDR + n + 4095) & ~(size_t)4095;
    if (len / 4096 > UINT32_MAX)
        return NULL;
    slab_hdr_t *b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED)
        return NULL;
    b->h.cls = MAP_CLASS;
    b->h.pages = (uint32_t)(len / 4096);
    return (uint8_t *)b + HDR;
}

void *sl_slab_alloc(size_t n)
{
    uint32_t cls = class_of(n);
    slab_hdr_t *b;
    if (SLAB_CACHE && n >= MAP_MIN)
        return map_alloc(n);
    if (SLAB_CACHE && cls != BIG_CLASS && free_list[cls]) {
        b = free_list[cls];
        free_list[cls] = b->h.next;
        spare_bytes -= class_size[cls];
        return (uint8_t *)b + HDR;
    }
    b = sl_try_malloc(HDR + (cls == BIG_CLASS ? n : class_size[cls]));
    if (!b)
        return NULL;
    b->h.cls = cls;
    return (uint8_t *)b + HDR;
}

void *sl_slab_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = sl_slab_alloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void sl_slab_free(void *p)
{
    if (!p)
        return;
    slab_hdr_t *b = (slab_hdr_t *)((uint8_t *)p - HDR);
    uint32_t cls = b->h.cls;
    if (cls == MAP_CLASS) {
        munmap(b, (size_t)b->h.pages * 4096);
        return;
    }
    if (!SLAB_CACHE || cls == BIG_CLASS || spare_bytes + class_size[cls] > SL_SLAB_SPARE_BYTES) {
        sl_free(b);
        return;
    }
    if (!exit_hook) {
        pthread_once(&exit_once, make_key);
        pthread_setspecific(exit_key, (void *)1);
        exit_hook = 1;
    }
    b->h.next = free_list[cls];
    free_list[cls] = b;
    spare_bytes += class_size[cls];
}

void *sl_slab_realloc(void *p, size_t n)
{
    if (!p)
        return sl_slab_alloc(n);
    slab_hdr_t *b = (slab_hdr_t *)((uint8_t *)p - HDR);
    if (b->h.cls == MAP_CLASS) {
        size_t have = (size_t)b->h.pages * 4096 - HDR;
        if (n <= have)
            return p;
        void *q = sl_slab_alloc(n);
        if (q) {
            memcpy(q, p, have);
            sl_slab_free(p);
        }
        return q;
    }
    if (b->h.cls != BIG_CLASS && n <= class_size[b->h.cls])
        return p;
    if (b->h.cls == BIG_CLASS) {
        /* Stays BIG even if it shrinks: free() then returns it to malloc. */
        slab_hdr_t *nb = sl_try_realloc(b, HDR + n);
        return nb ? (uint8_t *)nb + HDR : NULL;
    }
    void *q = sl_slab_alloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, class_size[b->h.cls]);
    sl_slab_free(p);
    return q;
}

void sl_slab_flush(void)
{
    for (int c = 0; c < NCLASSES; c++) {
        while (free_list[c]) {
            slab_hdr_t *b = free_list[c];
            free_list[c] = b->h.next;
            sl_free(b);
        }
    }
    spare_bytes = 0;
}

void *sl_slab_mem_malloc(size_t n, void *ud)
{
    (void)ud;
    return sl_slab_alloc(n);
}

void sl_slab_mem_free(void *p, void *ud)
{
    (void)ud;
    sl_slab_free(p);
}

void *sl_slab_mem_calloc(size_t n, size_t size, void *ud)
{
    (void)ud;
    return sl_slab_calloc(n, size);
}

void *sl_slab_mem_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    return sl_slab_realloc(p, n);
}

nghttp2_mem *sl_slab_nghttp2_mem(void)
{
    static nghttp2_mem mem = {NULL, sl_slab_mem_malloc, sl_slab_mem_free, sl_slab_mem_calloc,
                              sl_slab_mem_realloc};
    return &mem;
}
