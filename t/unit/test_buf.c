/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/buf.c: the bounded chunk queue, its spare-chunk pool,
 * direct reserve/commit, iovecs, and behaviour when allocations fail.
 */
#include "buf.h"
#include "helpers.h"

#define CH SL_BUF_CHUNK_SIZE

static uint8_t pattern_byte(size_t i)
{
    return (uint8_t)((i * 131u + (i >> 8)) & 0xff);
}

static void fill_pattern(uint8_t *p, size_t from, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pattern_byte(from + i);
}

static void check_pattern(const uint8_t *p, size_t from, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(p[i] == pattern_byte(from + i), "byte %zu differs", from + i);
}

START_TEST(test_write_peek_skip_across_chunks)
{
    static uint8_t src[3 * CH + 100];
    fill_pattern(src, 0, sizeof(src));
    sl_buf_t b;
    sl_buf_init(&b, NULL, 8);
    ck_assert_int_eq(sl_buf_write(&b, src, sizeof(src)), sizeof(src));
    ck_assert_uint_eq(sl_buf_len(&b), sizeof(src));
    ck_assert_uint_eq(b.nchunks, 4);

    /* Consume in odd steps that straddle every chunk boundary. */
    size_t off = 0;
    while (!sl_buf_is_empty(&b)) {
        const uint8_t *p;
        size_t n;
        ck_assert_int_eq(sl_buf_peek(&b, &p, &n), 0);
        ck_assert_uint_gt(n, 0);
        ck_assert_uint_le(n, CH);
        size_t take = SL_MIN(n, (size_t)7777);
        check_pattern(p, off, take);
        sl_buf_skip(&b, take);
        off += take;
    }
    ck_assert_uint_eq(off, sizeof(src));
    ck_assert_uint_eq(b.nchunks, 0); /* read-empty chunks are released */
    const uint8_t *p;
    size_t n;
    ck_assert_int_eq(sl_buf_peek(&b, &p, &n), SL_EAGAIN);
    sl_buf_dispose(&b);
}
END_TEST

START_TEST(test_skip_spanning_chunks_and_read)
{
    static uint8_t src[2 * CH + 10], dst[2 * CH + 10];
    fill_pattern(src, 0, sizeof(src));
    sl_buf_t b;
    sl_buf_init(&b, NULL, 4);
    ck_assert_int_eq(sl_buf_write(&b, src, sizeof(src)), sizeof(src));
    sl_buf_skip(&b, CH + 5); /* one skip over a whole chunk and into the next */
    ck_assert_uint_eq(b.nchunks, 2);
    ck_assert_uint_eq(sl_buf_read(&b, dst, 3), 3);
    check_pattern(dst, CH + 5, 3);
    size_t rest = sl_buf_read(&b, dst, sizeof(dst));
    ck_assert_uint_eq(rest, sizeof(src) - CH - 8);
    check_pattern(dst, CH + 8, rest);
    ck_assert_uint_eq(sl_buf_read(&b, dst, sizeof(dst)), 0);
    sl_buf_dispose(&b);
}
END_TEST

START_TEST(test_bound_short_write_eagain)
{
    static uint8_t src[3 * CH];
    fill_pattern(src, 0, sizeof(src));
    sl_buf_t b;
    sl_buf_init(&b, NULL, 2);
    ck_assert_uint_eq(sl_buf_space(&b), 2 * CH);
    ck_assert_int_eq(sl_buf_write(&b, src, 100), 100);
    ck_assert_uint_eq(sl_buf_space(&b), 2 * CH - 100);
    /* Short write: stops exactly at the bound. */
    ck_assert_int_eq(sl_buf_write(&b, src + 100, sizeof(src) - 100), 2 * CH - 100);
    ck_assert(sl_buf_is_full(&b));
    ck_assert_int_eq(sl_buf_write(&b, src, 1), SL_EAGAIN);
    ck_assert_int_eq(sl_buf_write(&b, src, 0), 0);
    /* Draining the head chunk makes a chunk's worth of room again. */
    sl_buf_skip(&b, CH);
    ck_assert_uint_eq(sl_buf_space(&b), CH);
    ck_assert_int_eq(sl_buf_write(&b, src, sizeof(src)), CH);
    ck_assert_uint_eq(sl_buf_len(&b), 2 * CH);
    sl_buf_dispose(&b);

    sl_buf_init(&b, NULL, 0);
    ck_assert_int_eq(sl_buf_write(&b, src, 1), SL_EAGAIN);
    sl_buf_dispose(&b);
}
END_TEST

START_TEST(test_write_all)
{
    static uint8_t src[2 * CH + 1];
    fill_pattern(src, 0, sizeof(src));
    sl_buf_t b;
    sl_buf_init(&b, NULL, 2);
    ck_assert_int_eq(sl_buf_write_all(&b, src, sizeof(src)), SL_EAGAIN);
    ck_assert_uint_eq(sl_buf_len(&b), 0); /* nothing written */
    ck_assert_uint_eq(b.nchunks, 0);
    ck_assert_int_eq(sl_buf_write_all(&b, src, 10), 0);
    ck_assert_int_eq(sl_buf_write_all(&b, src + 10, 2 * CH - 10), 0);
    ck_assert(sl_buf_is_full(&b));
    ck_assert_int_eq(sl_buf_write_all(&b, src, 1), SL_EAGAIN);
    ck_assert_int_eq(sl_buf_write_all(&b, src, 0), 0);
    static uint8_t dst[2 * CH];
    ck_assert_uint_eq(sl_buf_read(&b, dst, sizeof(dst)), 2 * CH);
    check_pattern(dst, 0, 2 * CH);
    sl_buf_dispose(&b);
}
END_TEST

START_TEST(test_reserve_commit)
{
    sl_buf_t b;
    size_t avail;
    sl_buf_init(&b, NULL, 2);
    uint8_t *p = sl_buf_reserve(&b, &avail);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(avail, CH);
    /* A read(2) that returned EAGAIN commits 0: no chunk stays behind. */
    sl_buf_commit(&b, 0);
    ck_assert_uint_eq(b.nchunks, 0);
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline);

    p = sl_buf_reserve(&b, &avail);
    fill_pattern(p, 0, 100);
    sl_buf_commit(&b, 100);
    ck_assert_uint_eq(sl_buf_len(&b), 100);
    uint8_t *q = sl_buf_reserve(&b, &avail);
    ck_assert_ptr_eq(q, p + 100); /* contiguous with what is there */
    ck_assert_uint_eq(avail, CH - 100);
    fill_pattern(q, 100, avail);
    sl_buf_commit(&b, avail);
    q = sl_buf_reserve(&b, &avail); /* the tail is full: a second chunk */
    ck_assert_ptr_nonnull(q);
    ck_assert_uint_eq(avail, CH);
    fill_pattern(q, CH, CH);
    sl_buf_commit(&b, CH);
    ck_assert_ptr_null(sl_buf_reserve(&b, &avail)); /* at the bound */
    ck_assert_uint_eq(avail, 0);

    const uint8_t *r;
    size_t n;
    ck_assert_int_eq(sl_buf_peek(&b, &r, &n), 0);
    ck_assert_uint_eq(n, CH);
    check_pattern(r, 0, CH);
    sl_buf_skip(&b, CH);
    ck_assert_int_eq(sl_buf_peek(&b, &r, &n), 0);
    check_pattern(r, CH, CH);
    sl_buf_dispose(&b);
}
END_TEST

START_TEST(test_iov)
{
    static uint8_t src[3 * CH];
    fill_pattern(src, 0, sizeof(src));
    sl_buf_t b;
    struct iovec iov[8];
    sl_buf_init(&b, NULL, 4);
    ck_assert_int_eq(sl_buf_iov(&b, iov, 8), 0);
    ck_assert_int_eq(sl_buf_write(&b, src, 2 * CH + 500), 2 * CH + 500);
    sl_buf_skip(&b, 300);
    ck_assert_int_eq(sl_buf_iov(&b, iov, 8), 3);
    ck_assert_uint_eq(iov[0].iov_len, CH - 300);
    ck_assert_uint_eq(iov[1].iov_len, CH);
    ck_assert_uint_eq(iov[2].iov_len, 500);
    check_pattern(iov[0].iov_base, 300, iov[0].iov_len);
    check_pattern(iov[1].iov_base, CH, CH);
    check_pattern(iov[2].iov_base, 2 * CH, 500);
    ck_assert_int_eq(sl_buf_iov(&b, iov, 2), 2); /* capped by max */
    /* An empty reserved chunk at the tail is not an iovec. */
    size_t avail;
    sl_buf_write(&b, src, CH - 500);
    ck_assert_ptr_nonnull(sl_buf_reserve(&b, &avail));
    sl_buf_commit(&b, 0);
    ck_assert_int_eq(sl_buf_iov(&b, iov, 8), 3);
    sl_buf_dispose(&b);
}
END_TEST

START_TEST(test_pool_reuse)
{
    static uint8_t src[4 * CH];
    sl_buf_pool_t pool;
    sl_buf_t b;
    sl_buf_pool_init(&pool, 2);
    sl_buf_init(&b, &pool, 8);
    ck_assert_int_eq(sl_buf_write(&b, src, sizeof(src)), sizeof(src));
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline + 4);
    sl_buf_dispose(&b);
    /* Two kept as spares, two freed. */
    ck_assert_uint_eq(pool.nspare, 2);
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline + 2);
    /* Steady state: chunks come from the spare list, no allocation. */
    ck_assert_int_eq(sl_buf_write(&b, src, 2 * CH), 2 * CH);
    ck_assert_uint_eq(pool.nspare, 0);
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline + 2);
    sl_buf_skip(&b, CH); /* a drained chunk goes straight back */
    ck_assert_uint_eq(pool.nspare, 1);
    sl_buf_dispose(&b);
    ck_assert_uint_eq(pool.nspare, 2);
    sl_buf_pool_dispose(&pool);
    ck_assert_uint_eq(pool.nspare, 0);
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline);
}
END_TEST

/* One scenario exercising every allocating path. Returns 1 if an
 * allocation failed somewhere, and checks the buffer stayed consistent. */
static int alloc_scenario(sl_buf_pool_t *pool)
{
    static uint8_t src[5 * CH];
    static uint8_t dst[8 * CH];
    fill_pattern(src, 0, sizeof(src));
    sl_buf_t b;
    size_t written = 0, avail;
    int failed = 0;
    sl_buf_init(&b, pool, 8);

    ssize_t n = sl_buf_write(&b, src, 2 * CH + 7);
    if (n == SL_ENOMEM)
        failed = 1;
    else {
        ck_assert_int_gt(n, 0);
        failed |= (size_t)n < 2 * CH + 7; /* short only when allocation failed */
        written += (size_t)n;
    }
    /* write_all is all or nothing, even when an allocation fails. */
    size_t before = sl_buf_len(&b);
    int rv = sl_buf_write_all(&b, src + written, 2 * CH);
    if (rv == SL_ENOMEM) {
        failed = 1;
        ck_assert_uint_eq(sl_buf_len(&b), before);
    } else {
        ck_assert_int_eq(rv, 0);
        written += 2 * CH;
    }
    uint8_t *p = sl_buf_reserve(&b, &avail);
    if (!p)
        failed = 1;
    else {
        size_t k = SL_MIN(avail, (size_t)100);
        fill_pattern(p, written, k);
        sl_buf_commit(&b, k);
        written += k;
    }
    ck_assert_uint_eq(sl_buf_len(&b), written);
    ck_assert_uint_eq(sl_buf_read(&b, dst, sizeof(dst)), written);
    check_pattern(dst, 0, written);
    sl_buf_dispose(&b);
    return failed;
}

START_TEST(test_alloc_failures)
{
    int pooled = _i;
    sl_buf_pool_t pool;
    /* Fail the 1st, 2nd, ... allocation until a run completes without a
     * failure: every allocating path fails once, nothing leaks. */
    long nth;
    for (nth = 1; nth < 100; nth++) {
        sl_buf_pool_init(&pool, pooled ? 4 : 0);
        sl_alloc_fail_nth(nth);
        int failed = alloc_scenario(pooled ? &pool : NULL);
        sl_alloc_fail_nth(0);
        sl_buf_pool_dispose(&pool);
        ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline);
        if (!failed)
            break;
    }
    ck_assert_int_gt(nth, 3); /* the scenario does allocate several chunks */
    ck_assert_int_lt(nth, 100);
}
END_TEST

static Suite *buf_suite(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = sl_test_tcase("core");
    tcase_add_test(tc, test_write_peek_skip_across_chunks);
    tcase_add_test(tc, test_skip_spanning_chunks_and_read);
    tcase_add_test(tc, test_bound_short_write_eagain);
    tcase_add_test(tc, test_write_all);
    tcase_add_test(tc, test_reserve_commit);
    tcase_add_test(tc, test_iov);
    tcase_add_test(tc, test_pool_reuse);
    tcase_add_loop_test(tc, test_alloc_failures, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(buf_suite());
}
