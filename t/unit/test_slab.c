/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/slab.c: every size gets a block at least that big
 * (the size classes' edges), contents survive realloc across classes,
 * flushing the cache leaves no live block, and page blocks cost memory
 * only for pages written, read as zeros when reused, and give their pages
 * back when trimmed (all of them, or those holding only zeros).
 */
#include "slab.h"
#include "helpers.h"
#include <stdio.h>
#include <sys/mman.h>

START_TEST(test_every_size_fits)
{
    /* Class edges and their neighbours; a block smaller than asked for
     * is an overflow AddressSanitizer reports on the memset. */
    static const size_t edges[] = {32, 64, 128, 256, 512, 1024, 2048, 2928, 3072, 4096, 16384};
    for (size_t i = 0; i < SL_ARRAY_LEN(edges); i++) {
        for (size_t n = edges[i] - 2; n <= edges[i] + 2; n++) {
            uint8_t *p = sl_slab_alloc(n);
            ck_assert_ptr_nonnull(p);
            ck_assert_uint_eq((uintptr_t)p % 16, 0);
            memset(p, 0xa5, n);
            sl_slab_free(p);
        }
    }
    for (size_t n = 1; n <= 5000; n += 7) {
        uint8_t *p = sl_slab_calloc(1, n);
        for (size_t k = 0; k < n; k++)
            ck_assert_uint_eq(p[k], 0);
        memset(p, 0x5a, n);
        sl_slab_free(p);
    }
    sl_slab_flush();
}
END_TEST

START_TEST(test_realloc_keeps_bytes)
{
    size_t n = 20;
    uint8_t *p = sl_slab_alloc(n);
    for (size_t k = 0; k < n; k++)
        p[k] = (uint8_t)k;
    /* Up through every class, into a big block and a mapping. */
    while (n < 40000) {
        size_t m = n * 3 / 2 + 1;
        p = sl_slab_realloc(p, m);
        ck_assert_ptr_nonnull(p);
        for (size_t k = 0; k < n; k++)
            ck_assert_uint_eq(p[k], (uint8_t)k);
        for (size_t k = n; k < m; k++)
            p[k] = (uint8_t)k;
        n = m;
    }
    sl_slab_free(p);
    sl_slab_flush();
}
END_TEST

START_TEST(test_freed_block_reused)
{
    void *a = sl_slab_alloc(3000);
    sl_slab_free(a);
    void *b = sl_slab_alloc(2900); /* the same class: 3072 */
#if !defined(__SANITIZE_ADDRESS__)
    ck_assert_ptr_eq(a, b); /* from the cache, not from malloc */
#endif
    sl_slab_free(b);
    sl_slab_flush();
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline);
}
END_TEST

#if !defined(__SANITIZE_ADDRESS__)
/* Resident pages of this process (statm's second field). */
static long resident_pages(void)
{
    long size = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld %ld", &size, &rss), 2);
    fclose(f);
    return rss;
}

START_TEST(test_page_blocks)
{
    enum { N = 256, LEN = 16394 }; /* nghttp2's frame buffer */
    static uint8_t *b[N];
    long before = resident_pages();
    for (int i = 0; i < N; i++) {
        b[i] = sl_slab_alloc(LEN);
        ck_assert_ptr_nonnull(b[i]);
        ck_assert_uint_eq((uintptr_t)b[i] % 4096, 0);
    }
    /* 256 x 5 pages handed out, none written: none resident (the bound
     * leaves room for the side table's page, stdio's buffer and the
     * like; resident blocks would be 1,280 pages). */
    ck_assert_int_lt(resident_pages() - before, N / 2);
    for (int i = 0; i < N; i++)
        memset(b[i], 0x5a, 100);
    long written = resident_pages();
    ck_assert_int_ge(written - before, N - 16);
    for (int i = 0; i < N; i++)
        sl_slab_trim(b[i]);
    ck_assert_int_lt(resident_pages() - before, N / 2);
    ck_assert_uint_eq(b[7][0], 0); /* trimmed: zeros */
    for (int i = 0; i < N; i++)
        sl_slab_free(b[i]);

    /* A calloc of a page is a page block that nothing cleared: a freed
     * one comes back as zeros. */
    uint8_t *t = sl_slab_calloc(256, 16);
    ck_assert_uint_eq((uintptr_t)t % 4096, 0);
    memset(t, 0xff, 4096);
    sl_slab_free(t);
    uint8_t *u = sl_slab_calloc(256, 16);
    ck_assert_ptr_eq(u, t);
    for (int k = 0; k < 4096; k++)
        ck_assert_uint_eq(u[k], 0);
    sl_slab_free(u);

    /* Trimming a small block leaves it alone. */
    uint8_t *small = sl_slab_alloc(100);
    memset(small, 7, 100);
    sl_slab_trim(small);
    ck_assert_uint_eq(small[99], 7);
    sl_slab_free(small);
    sl_slab_flush();
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline);
}
END_TEST

/* mincore's resident bit for each of a block's first n pages, as a mask. */
static unsigned resident_mask(void *p, size_t n)
{
    unsigned char vec[8];
    unsigned mask = 0;
    ck_assert_int_eq(mincore(p, n * 4096, vec), 0);
    for (size_t i = 0; i < n; i++)
        mask |= (unsigned)(vec[i] & 1) << i;
    return mask;
}

START_TEST(test_trim_zero)
{
    /* A stream-table-like block of 3 pages: one written and cleared again
     * (resident, zeros), one holding data, one never touched. */
    uint8_t *t = sl_slab_calloc(3, 4096);
    ck_assert_ptr_nonnull(t);
    memset(t, 0xee, 4096);
    memset(t, 0, 4096);
    t[4096 + 100] = 42;
    ck_assert_uint_eq(resident_mask(t, 3), 3);
    ck_assert_uint_eq(sl_slab_trim_zero(t), 1);
    ck_assert_uint_eq(resident_mask(t, 3), 2); /* only the page with data */
    ck_assert_uint_eq(t[4096 + 100], 42);
    ck_assert_uint_eq(sl_slab_trim_zero(t), 0); /* nothing left to give */
    ck_assert_uint_eq(t[0], 0);                 /* last: the read may fault a page in */
    sl_slab_free(t);

    /* A small block is not made of pages: left alone. */
    uint8_t *small = sl_slab_calloc(1, 100);
    ck_assert_uint_eq(sl_slab_trim_zero(small), 0);
    ck_assert_uint_eq(sl_slab_trim_zero(NULL), 0);
    sl_slab_free(small);
    sl_slab_flush();
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline);
}
END_TEST
#endif

static Suite *slab_suite(void)
{
    Suite *s = suite_create("slab");
    TCase *tc = sl_test_tcase("core");
    tcase_add_test(tc, test_every_size_fits);
    tcase_add_test(tc, test_realloc_keeps_bytes);
    tcase_add_test(tc, test_freed_block_reused);
#if !defined(__SANITIZE_ADDRESS__)
    tcase_add_test(tc, test_page_blocks);
    tcase_add_test(tc, test_trim_zero);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(slab_suite());
}
