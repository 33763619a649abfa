/* sluice - SPDX-License-Identifier: MIT
 *
 * Shared Check helpers for the unit tests: a checked fixture that asserts
 * the live-allocation count is back where it started when a test ends
 * (libuv's MAKE_VALGRIND_HAPPY idea), and the common main() runner.
 */
#ifndef SL_TEST_HELPERS_H
#define SL_TEST_HELPERS_H

#include "sl.h"
#include "slab.h"
#include <check.h>
#include <stdlib.h>

#define SL_TEST_TIMEOUT 10

static long sl_test_alloc_baseline;

static inline void sl_test_alloc_setup(void)
{
    sl_test_alloc_baseline = sl_alloc_count();
}

/* Every test leaves no live sl_malloc block behind. Blocks spare in the
 * thread's slab cache (request pools, nghttp2 objects) are not leaks:
 * they go back to malloc first. */
static inline void sl_test_alloc_teardown(void)
{
    sl_alloc_fail_nth(0);
    sl_slab_flush();
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline);
}

/* A TCase with the allocation fixture and a timeout. */
static inline TCase *sl_test_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, sl_test_alloc_setup, sl_test_alloc_teardown);
    tcase_set_timeout(tc, SL_TEST_TIMEOUT);
    return tc;
}

/* Run one suite (fork mode unless CK_FORK=no), print Check's summary and
 * return the process exit status. */
static inline int sl_test_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
