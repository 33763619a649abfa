/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/cpus.c: reading a cgroup CPU quota (v2 cpu.max text,
 * v1 quota/period numbers) into a worker count.
 */
#include "cpus.h"
#include "helpers.h"
#include <check.h>

START_TEST(cpu_max_v2)
{
    ck_assert_int_eq(sl_cpus_from_cpu_max("max 100000\n"), 0);
    ck_assert_int_eq(sl_cpus_from_cpu_max("200000 100000\n"), 2);
    ck_assert_int_eq(sl_cpus_from_cpu_max("150000 100000"), 2); /* rounded up */
    ck_assert_int_eq(sl_cpus_from_cpu_max("50000 100000"), 1);
    ck_assert_int_eq(sl_cpus_from_cpu_max(""), 0);
    ck_assert_int_eq(sl_cpus_from_cpu_max("garbage"), 0);
    ck_assert_int_eq(sl_cpus_from_cpu_max(NULL), 0);
}
END_TEST

START_TEST(quota_v1)
{
    ck_assert_int_eq(sl_cpus_from_quota(-1, 100000), 0);
    ck_assert_int_eq(sl_cpus_from_quota(400000, 100000), 4);
    ck_assert_int_eq(sl_cpus_from_quota(1, 100000), 1);
    ck_assert_int_eq(sl_cpus_from_quota(100000, 0), 0);
}
END_TEST

START_TEST(available_is_positive)
{
    ck_assert_int_ge(sl_cpus_available(), 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cpus");
    TCase *tc = sl_test_tcase("cpus");
    tcase_add_test(tc, cpu_max_v2);
    tcase_add_test(tc, quota_v1);
    tcase_add_test(tc, available_is_positive);
    suite_add_tcase(s, tc);
    return sl_test_run(s);
}
