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
#define HDR 16 /* keeps the payload 16-byte aligned, as malloc's is */

typedef union slab_hdr {
    struct {
        union slab_hdr *next; /* while on a free list */
        uint32_t cls;
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

/* ---- page blocks ----
 *
 * A calloc of a page or more, and any block of PG_ALLOC_MIN or more, is
 * whole pages of one reserved span of address space, with no header: a
 * header would dirty the first page, and pages nothing has written cost no
 * memory. That is most of an idle HTTP/2 connection's nghttp2 state:
 * its stream table (a 4 KiB calloc, untouched until a stream opens) and
 * its 16 KiB frame buffer (one page written per frame, given back by
 * sl_slab_trim while the connection idles). A freed block is given back
 * to the kernel at once (it reads as zeros again) and reused by blocks of
 * its length. Block lengths are kept per page in a side table, also
 * reserved and untouched until used. Blocks are per connection, never per
 * request, so one lock for all threads costs nothing measurable. When the
 * span cannot be had (an address-space limit) or is full, blocks come
 * from malloc with a header, as small ones do. */
#define PG 4096
#define PG_ALLOC_MIN 16384
#define PG_SPAN ((size_t)16 << 30) /* address space only: 4 Mi pages */
#define PG_MAX_RUN 64              /* longest block, in pages (256 KiB) */

static struct {
    pthread_once_t once;
    pthread_mutex_t lock;
    uint8_t *base;
    size_t len;                         /* 0: no span, every block goes to malloc */
    uint32_t top;                       /* first page never handed out */
    uint8_t *run;                       /* per first page of a block: its length in pages */
    uint32_t *next;                     /* per first page of a free block: the next one + 1 */
    uint32_t free_head[PG_MAX_RUN + 1]; /* first free block of a length + 1 */
} pg = {PTHREAD_ONCE_INIT, PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, NULL, NULL, {0}};

static void *reserve(size_t len)
{
    void *p =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void pg_setup(void)
{
    size_t npages = PG_SPAN / PG;
    uint8_t *base = reserve(PG_SPAN), *run = reserve(npages);
    uint32_t *next = reserve(npages * sizeof(uint32_t));
    if (!base || !run || !next) {
        if (base)
            munmap(base, PG_SPAN);
        if (run)
            munmap(run, npages);
        if (next)
            munmap(next, npages * sizeof(uint32_t));
        return;
    }
    /* A huge page would make one touched byte cost 2 MiB. */
    (void)madvise(base, PG_SPAN, MADV_NOHUGEPAGE);
    pg.base = base;
    pg.run = run;
    pg.next = next;
    __atomic_store_n(&pg.len, PG_SPAN, __ATOMIC_RELEASE);
}

/* len is stored last (release), so a thread that sees it sees base. */
static int is_page_block(const void *p)
{
    size_t len = __atomic_load_n(&pg.len, __ATOMIC_ACQUIRE);
    return (uintptr_t)p - (uintptr_t)pg.base < len;
}

static size_t page_block_len(const void *p)
{
    return (size_t)pg.run[((const uint8_t *)p - pg.base) / PG] * PG;
}

/* NULL when there is no span, it is full, or n is too long for it. */
static void *page_alloc(size_t n)
{
    size_t np = (n + PG - 1) / PG;
    uint32_t idx;
    if (np > PG_MAX_RUN)
        return NULL;
    pthread_once(&pg.once, pg_setup);
    if (!pg.len)
        return NULL;
    pthread_mutex_lock(&pg.lock);
    if (pg.free_head[np]) {
        idx = pg.free_head[np] - 1;
        pg.free_head[np] = pg.next[idx];
    } else if (pg.top + np <= pg.len / PG) {
        idx = pg.top;
        pg.top += (uint32_t)np;
    } else {
        pthread_mutex_unlock(&pg.lock);
        return NULL;
    }
    pg.run[idx] = (uint8_t)np;
    pthread_mutex_unlock(&pg.lock);
    return pg.base + (size_t)idx * PG;
}

static __attribute__((noinline)) void page_free(void *p)
{
    uint32_t idx = (uint32_t)(((uint8_t *)p - pg.base) / PG);
    size_t np = pg.run[idx];
    (void)madvise(p, np * PG, MADV_DONTNEED);
    pthread_mutex_lock(&pg.lock);
    pg.next[idx] = pg.free_head[np];
    pg.free_head[np] = idx + 1;
    pthread_mutex_unlock(&pg.lock);
}

void sl_slab_trim(void *p)
{
    if (p && is_page_block(p))
        (void)madvise(p, page_block_len(p), MADV_DONTNEED);
}

static int page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;
    uint64_t acc = 0;
    for (size_t i = 0; i < PG / sizeof(*w); i++)
        acc |= w[i];
    return acc == 0;
}

/* mincore first: reading a page that is not resident could fault one in
 * (on a kernel without the shared zero page) only to give it back. */
size_t sl_slab_trim_zero(void *p)
{
    unsigned char vec[PG_MAX_RUN];
    size_t np, given = 0;
    if (!p || !is_page_block(p))
        return 0;
    np = page_block_len(p) / PG;
    if (mincore(p, np * PG, vec) != 0)
        return 0;
    for (size_t i = 0; i < np; i++) {
        uint8_t *pg_p = (uint8_t *)p + i * PG;
        if ((vec[i] & 1) && page_is_zero(pg_p) && madvise(pg_p, PG, MADV_DONTNEED) == 0)
            given++;
    }
    return given;
}

/* ---- small blocks ---- */

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

/* Out of line, so that the common alloc below saves no registers. */
static __attribute__((noinline)) void *alloc_slow(size_t n, uint32_t cls)
{
    slab_hdr_t *b;
    if (SLAB_CACHE && n >= PG_ALLOC_MIN && (b = page_alloc(n)))
        return b;
    b = sl_try_malloc(HDR + (cls == BIG_CLASS ? n : class_size[cls]));
    if (!b)
        return NULL;
    b->h.cls = cls;
    return (uint8_t *)b + HDR;
}

/* A block from this thread's cache first: that is the path every nghttp2
 * allocation of a busy connection takes. */
void *sl_slab_alloc(size_t n)
{
    uint32_t cls = class_of(n);
    slab_hdr_t *b;
    if (SLAB_CACHE && cls != BIG_CLASS && (b = free_list[cls])) {
        free_list[cls] = b->h.next;
        spare_bytes -= class_size[cls];
        return (uint8_t *)b + HDR;
    }
    return alloc_slow(n, cls);
}

/* A page block needs no clearing: its pages are fresh or were given back,
 * and untouched they stay free. */
void *sl_slab_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    n *= size;
    void *p = SLAB_CACHE && n >= PG ? page_alloc(n) : NULL;
    if (p)
        return p;
    if ((p = sl_slab_alloc(n)))
        memset(p, 0, n);
    return p;
}

/* Room for one more block of cls in this thread's cache. */
static int cacheable(uint32_t cls)
{
    return SLAB_CACHE && cls != BIG_CLASS && spare_bytes + class_size[cls] <= SL_SLAB_SPARE_BYTES;
}

static void push(slab_hdr_t *b, uint32_t cls)
{
    b->h.next = free_list[cls];
    free_list[cls] = b;
    spare_bytes += class_size[cls];
}

/* Out of line, so that the common free below saves no registers: a
 * thread's first cached block (which registers the exit hook), and blocks
 * that go back to malloc. */
static __attribute__((noinline)) void free_slow(slab_hdr_t *b, uint32_t cls)
{
    if (!cacheable(cls)) {
        sl_free(b);
        return;
    }
    pthread_once(&exit_once, make_key);
    pthread_setspecific(exit_key, (void *)1);
    exit_hook = 1;
    push(b, cls);
}

void sl_slab_free(void *p)
{
    if (!p)
        return;
    if (is_page_block(p)) {
        page_free(p);
        return;
    }
    slab_hdr_t *b = (slab_hdr_t *)((uint8_t *)p - HDR);
    uint32_t cls = b->h.cls;
    if (exit_hook && cacheable(cls))
        push(b, cls);
    else
        free_slow(b, cls);
}

static void *moved(void *p, size_t have, size_t n)
{
    void *q = sl_slab_alloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, SL_MIN(have, n));
    sl_slab_free(p);
    return q;
}

void *sl_slab_realloc(void *p, size_t n)
{
    if (!p)
        return sl_slab_alloc(n);
    if (is_page_block(p)) {
        size_t have = page_block_len(p);
        return n <= have ? p : moved(p, have, n);
    }
    slab_hdr_t *b = (slab_hdr_t *)((uint8_t *)p - HDR);
    if (b->h.cls == BIG_CLASS) {
        /* Stays BIG even if it shrinks: free() then returns it to malloc. */
        slab_hdr_t *nb = sl_try_realloc(b, HDR + n);
        return nb ? (uint8_t *)nb + HDR : NULL;
    }
    if (n <= class_size[b->h.cls])
        return p;
    return moved(p, class_size[b->h.cls], n);
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
