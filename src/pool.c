/* sluice - SPDX-License-Identifier: MIT
 *
 * The per-request arena (pool.h): bump allocation from the inline first
 * block, then from 4 KiB blocks; a request bigger than a quarter block gets
 * a block of its own so it does not waste the rest of the current one.
 * Cleanups live in the pool itself and run last-registered-first.
 */
#include "pool.h"
#include "slab.h"
#include <stdarg.h>
#include <stdio.h>

#define ALIGN 8
#define BIG_ALLOC (SL_POOL_BLOCK / 4)

struct sl_pool_block {
    sl_pool_block_t *next;
    int slab; /* a standard block from sl_slab: freed back to its cache */
    /* Keeps data aligned for any type whatever the pointer size. */
    _Alignas(16) uint8_t data[];
};

struct sl_pool_cleanup {
    sl_pool_cleanup_t *next;
    void (*fn)(void *);
    void *arg;
};

static uint8_t *align_up(uint8_t *p)
{
    uintptr_t u = (uintptr_t)p;
    return (uint8_t *)((u + (ALIGN - 1)) & ~(uintptr_t)(ALIGN - 1));
}

void sl_pool_init(sl_pool_t *p)
{
    p->blocks = NULL;
    p->cleanups = NULL;
    p->cur = align_up(p->first);
    p->end = p->first + sizeof(p->first);
}

void sl_pool_dispose(sl_pool_t *p)
{
    /* Pop before calling: a cleanup may register another one, which then
     * runs next. Blocks are freed only after, since cleanups live in them. */
    while (p->cleanups) {
        sl_pool_cleanup_t *c = p->cleanups;
        p->cleanups = c->next;
        c->fn(c->arg);
    }
    while (p->blocks) {
        sl_pool_block_t *b = p->blocks;
        p->blocks = b->next;
        if (b->slab)
            sl_slab_free(b);
        else
            sl_free(b);
    }
    sl_pool_init(p);
}

/* Standard blocks come from the thread's slab cache: most requests outgrow
 * the inline block, and a malloc/free pair per request was ~800
 * instructions of a small HTTP/2 request. Big ones go to malloc (the slab
 * would give 16 KiB and more whole pages of its span, given back to the
 * kernel on every free). */
static sl_pool_block_t *block_new(sl_pool_t *p, size_t data_len)
{
    SL_ASSERT(data_len <= SIZE_MAX - sizeof(sl_pool_block_t));
    size_t n = sizeof(sl_pool_block_t) + data_len;
    int slab = n == SL_POOL_BLOCK;
    sl_pool_block_t *b = slab ? sl_slab_alloc(n) : NULL;
    if (!b) {
        b = sl_malloc(n); /* aborts when even malloc fails */
        slab = 0;
    }
    b->slab = slab;
    b->next = p->blocks;
    p->blocks = b;
    return b;
}

void *sl_pool_alloc(sl_pool_t *p, size_t n)
{
    SL_ASSERT(n <= SIZE_MAX - ALIGN);
    n = (n + (ALIGN - 1)) & ~(size_t)(ALIGN - 1);
    if (n <= (size_t)(p->end - p->cur)) {
        void *r = p->cur;
        p->cur += n;
        return r;
    }
    if (n > BIG_ALLOC)
        return block_new(p, n)->data;
    /* Start a new block; what is left in the old one is abandoned (at most
     * BIG_ALLOC bytes, since anything bigger took the branch above). */
    sl_pool_block_t *b = block_new(p, SL_POOL_BLOCK - sizeof(*b));
    p->cur = b->data + n;
    p->end = b->data + (SL_POOL_BLOCK - sizeof(*b));
    return b->data;
}

char *sl_pool_strndup(sl_pool_t *p, const char *s, size_t n)
{
    char *d = sl_pool_alloc(p, n + 1);
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *sl_pool_printf(sl_pool_t *p, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    /* Try the room left in the current block first: most strings fit and
     * are then formatted once. */
    size_t room = (size_t)(p->end - p->cur);
    int n = vsnprintf((char *)p->cur, room, fmt, ap);
    va_end(ap);
    SL_ASSERT(n >= 0);
    size_t need = ((size_t)n + 1 + (ALIGN - 1)) & ~(size_t)(ALIGN - 1);
    char *s;
    if (need <= room) {
        /* Already formatted in place; claim it. */
        s = (char *)p->cur;
        p->cur += need;
    } else {
        s = sl_pool_alloc(p, (size_t)n + 1);
        vsnprintf(s, (size_t)n + 1, fmt, ap2);
    }
    va_end(ap2);
    return s;
}

void sl_pool_on_dispose(sl_pool_t *p, void (*fn)(void *), void *arg)
{
    sl_pool_cleanup_t *c = sl_pool_alloc(p, sizeof(*c));
    c->fn = fn;
    c->arg = arg;
    c->next = p->cleanups;
    p->cleanups = c;
}
