/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for ngtcp2's per-connection allocator (src/h3/qmem.c): blocks
 * are aligned and usable, calloc clears, realloc keeps the contents, free
 * takes a block off the list, and release frees what is left (the blocks
 * ngtcp2 0.12 can lose) and says how many. The leak check of the fixture
 * (and LeakSanitizer under SANITIZE=1) fails the test if one is missed.
 */
#include "h3/qmem.h"
#include "../helpers.h"
#include <check.h>
#include <stdint.h>
#include <string.h>

START_TEST(test_blocks_and_release)
{
    sl_h3_qmem_t m;
    sl_h3_qmem_init(&m);
    const ngtcp2_mem *mem = &m.mem;
    uint8_t *a = mem->malloc(100, mem->user_data);
    uint8_t *b = mem->calloc(4, 3000, mem->user_data); /* past a page */
    uint8_t *c = mem->malloc(144, mem->user_data);
    ck_assert(a && b && c);
    ck_assert_uint_eq((uintptr_t)a % 16, 0);
    ck_assert_uint_eq((uintptr_t)b % 16, 0);
    ck_assert_uint_eq(m.nblocks, 3);
    for (size_t i = 0; i < 12000; i++)
        ck_assert_uint_eq(b[i], 0);
    memset(a, 0xab, 100);
    a = mem->realloc(a, 5000, mem->user_data);
    ck_assert_ptr_nonnull(a);
    for (size_t i = 0; i < 100; i++)
        ck_assert_uint_eq(a[i], 0xab);
    ck_assert_uint_eq(m.nblocks, 3);
    mem->free(b, mem->user_data);
    mem->free(NULL, mem->user_data);
    ck_assert_uint_eq(m.nblocks, 2);
    /* a and c are still held, as a block ngtcp2 lost would be */
    ck_assert_uint_eq(sl_h3_qmem_release(&m), 2);
    ck_assert_uint_eq(m.nblocks, 0);
    ck_assert_ptr_null(m.blocks.head);
    ck_assert_uint_eq(sl_h3_qmem_release(&m), 0);
}
END_TEST

START_TEST(test_overflow_refused)
{
    sl_h3_qmem_t m;
    sl_h3_qmem_init(&m);
    const ngtcp2_mem *mem = &m.mem;
    ck_assert_ptr_null(mem->malloc(SIZE_MAX - 4, mem->user_data));
    ck_assert_ptr_null(mem->calloc(SIZE_MAX / 2, 4, mem->user_data));
    void *p = mem->realloc(NULL, 32, mem->user_data);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_null(mem->realloc(p, SIZE_MAX - 4, mem->user_data));
    ck_assert_uint_eq(m.nblocks, 1); /* p is still valid and listed */
    mem->free(p, mem->user_data);
    ck_assert_uint_eq(sl_h3_qmem_release(&m), 0);
}
END_TEST

static Suite *qmem_suite(void)
{
    Suite *s = suite_create("h3_qmem");
    TCase *tc = sl_test_tcase("core");
    tcase_add_test(tc, test_blocks_and_release);
    tcase_add_test(tc, test_overflow_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(qmem_suite());
}
