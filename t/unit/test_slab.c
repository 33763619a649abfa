/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/slab.c: every size gets a block at least that big
 * (the size classes' edges), contents survive realloc across classes, and
 * flushing the cache leaves no live block.
 */
#include "slab.h"
#include "helpers.h"

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

static Suite *slab_suite(void)
{
    Suite *s = suite_create("slab");
    TCase *tc = sl_test_tcase("core");
    tcase_add_test(tc, test_every_size_fits);
    tcase_add_test(tc, test_realloc_keeps_bytes);
    tcase_add_test(tc, test_freed_block_reused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(slab_suite());
}
