/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/pool.c: alignment, the inline first block, big
 * allocations in their own block, standard blocks recycled through the
 * thread's slab cache, string helpers and cleanup order.
 */
#include "pool.h"
#include "helpers.h"
#include "slab.h"
#include <stdio.h>

/* Dispose and hand the slab cache's spare blocks back to malloc, so the
 * live-block count says whether anything leaked. */
static void pool_dispose(sl_pool_t *p)
{
    sl_pool_dispose(p);
    sl_slab_flush();
}

static int in_first(const sl_pool_t *p, const void *q)
{
    const uint8_t *u = q;
    return u >= p->first && u < p->first + sizeof(p->first);
}

START_TEST(test_alignment_and_no_overlap)
{
    sl_pool_t p;
    uint8_t *prev[200];
    size_t sizes[200];
    sl_pool_init(&p);
    for (size_t i = 0; i < 200; i++) {
        sizes[i] = 1 + (i * 37) % 300;
        prev[i] = sl_pool_alloc(&p, sizes[i]);
        ck_assert_uint_eq((uintptr_t)prev[i] % 8, 0);
        memset(prev[i], (int)(i & 0xff), sizes[i]);
    }
    /* Every allocation still holds its own bytes: nothing overlapped. */
    for (size_t i = 0; i < 200; i++)
        for (size_t j = 0; j < sizes[i]; j++)
            ck_assert_uint_eq(prev[i][j], i & 0xff);
    pool_dispose(&p);
}
END_TEST

START_TEST(test_small_requests_stay_inline)
{
    sl_pool_t p;
    sl_pool_init(&p);
    for (int i = 0; i < 16; i++)
        ck_assert(in_first(&p, sl_pool_alloc(&p, 48)));
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline);
    /* The 1 KiB inline block runs out: the next block is allocated. */
    void *q = sl_pool_alloc(&p, 512);
    ck_assert(!in_first(&p, q));
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline + 1);
    pool_dispose(&p);
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline);
}
END_TEST

START_TEST(test_big_allocs_own_block)
{
    sl_pool_t p;
    sl_pool_init(&p);
    uint8_t *a = sl_pool_alloc(&p, 16);
    ck_assert(in_first(&p, a));
    uint8_t *big = sl_pool_alloc(&p, 100000);
    ck_assert_uint_eq((uintptr_t)big % 8, 0);
    memset(big, 0xab, 100000);
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline + 1);
    /* The big block did not take over: small ones continue inline. */
    uint8_t *b = sl_pool_alloc(&p, 16);
    ck_assert(in_first(&p, b));
    ck_assert_ptr_eq(b, a + 16);
    /* Just over a quarter block also gets its own block. */
    uint8_t *c = sl_pool_alloc(&p, SL_POOL_BLOCK / 4 + 8);
    ck_assert(!in_first(&p, c));
    ck_assert(in_first(&p, sl_pool_alloc(&p, 8)));
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline + 2);
    /* Zero bytes is a valid, aligned request. */
    ck_assert_ptr_nonnull(sl_pool_alloc(&p, 0));
    pool_dispose(&p);
}
END_TEST

START_TEST(test_many_blocks)
{
    sl_pool_t p;
    sl_pool_init(&p);
    for (int round = 0; round < 3; round++) {
        size_t total = 0;
        for (int i = 0; i < 1000; i++) {
            uint8_t *q = sl_pool_alloc(&p, 100);
            memset(q, i & 0xff, 100);
            total += 100;
        }
        ck_assert_uint_ge(total, 100000);
        ck_assert_int_gt(sl_alloc_count(), sl_test_alloc_baseline + 20);
        /* Reusable after dispose, and nothing is left behind. */
        pool_dispose(&p);
        ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline);
    }
}
END_TEST

START_TEST(test_standard_blocks_recycled)
{
    sl_pool_t p;
    sl_pool_init(&p);
    for (int i = 0; i < 20; i++)
        memset(sl_pool_alloc(&p, 900), 1, 900);
    long live = sl_alloc_count();
    ck_assert_int_ge(live, sl_test_alloc_baseline + 4);
    sl_pool_dispose(&p);
    /* The blocks went to the thread's slab cache (under ASan, back to
     * malloc): either way the same request again needs no more. */
    for (int i = 0; i < 20; i++)
        memset(sl_pool_alloc(&p, 900), 2, 900);
    ck_assert_int_le(sl_alloc_count(), live);
    pool_dispose(&p);
}
END_TEST

START_TEST(test_strings)
{
    sl_pool_t p;
    sl_pool_init(&p);
    char *s = sl_pool_strndup(&p, "hello world", 5);
    ck_assert_str_eq(s, "hello");
    ck_assert_str_eq(sl_pool_strndup(&p, NULL, 0), "");
    char *f = sl_pool_printf(&p, "%s-%d", "stream", 7);
    ck_assert_str_eq(f, "stream-7");
    /* The next allocation does not clobber the formatted string. */
    char *g = sl_pool_alloc(&p, 8);
    memset(g, 'x', 8);
    ck_assert_str_eq(f, "stream-7");
    /* Longer than the room left, and longer than a block. */
    char *long1 = sl_pool_printf(&p, "%0900d", 1);
    ck_assert_uint_eq(strlen(long1), 900);
    char *long2 = sl_pool_printf(&p, "%05000d|%s", 2, "end");
    ck_assert_uint_eq(strlen(long2), 5004);
    ck_assert_str_eq(long2 + 5000, "|end");
    ck_assert_str_eq(f, "stream-7");
    pool_dispose(&p);
}
END_TEST

static char tags[] = "12345L";
static char order[16];
static size_t norder;

static void record(void *arg)
{
    order[norder++] = *(const char *)arg;
}

static sl_pool_t *late_pool;

static void register_late(void *arg)
{
    record(arg);
    sl_pool_on_dispose(late_pool, record, &tags[5]);
}

START_TEST(test_cleanup_order)
{
    sl_pool_t p;
    sl_pool_init(&p);
    norder = 0;
    late_pool = &p;
    sl_pool_on_dispose(&p, record, &tags[0]);
    sl_pool_on_dispose(&p, register_late, &tags[1]);
    sl_pool_on_dispose(&p, record, &tags[2]);
    char *mem = sl_pool_alloc(&p, 3000); /* cleanups sit among blocks */
    memset(mem, 0, 3000);
    sl_pool_on_dispose(&p, record, &tags[3]);
    pool_dispose(&p);
    order[norder] = '\0';
    /* Last registered first; one added during dispose runs next. */
    ck_assert_str_eq(order, "432L1");
    /* Reused pool: cleanups from the last round do not run again. */
    norder = 0;
    sl_pool_on_dispose(&p, record, &tags[4]);
    pool_dispose(&p);
    order[norder] = '\0';
    ck_assert_str_eq(order, "5");
}
END_TEST

static Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = sl_test_tcase("core");
    tcase_add_test(tc, test_alignment_and_no_overlap);
    tcase_add_test(tc, test_small_requests_stay_inline);
    tcase_add_test(tc, test_big_allocs_own_block);
    tcase_add_test(tc, test_many_blocks);
    tcase_add_test(tc, test_standard_blocks_recycled);
    tcase_add_test(tc, test_strings);
    tcase_add_test(tc, test_cleanup_order);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(pool_suite());
}
