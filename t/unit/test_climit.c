/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/climit.c: which addresses count as one client
 * (IPv4 whole, v4-mapped as IPv4, IPv6 by prefix), and the count itself:
 * refused at the limit, freed on release, entries gone at zero.
 */
#include "climit.h"
#include "helpers.h"
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>

static sl_climit_key_t key6(const char *ip, unsigned prefix)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    sl_climit_key_t k;
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
    ck_assert_int_eq(sl_climit_key_of((struct sockaddr *)&a, prefix, &k), 0);
    return k;
}

static sl_climit_key_t key4(const char *ip)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    sl_climit_key_t k;
    ck_assert_int_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    ck_assert_int_eq(sl_climit_key_of((struct sockaddr *)&a, 64, &k), 0);
    return k;
}

static int same(sl_climit_key_t a, sl_climit_key_t b)
{
    return memcmp(&a, &b, sizeof(a)) == 0;
}

START_TEST(grouping)
{
    ck_assert(same(key6("2001:db8:1:2::1", 64), key6("2001:db8:1:2:ffff::9", 64)));
    ck_assert(!same(key6("2001:db8:1:2::1", 64), key6("2001:db8:1:3::1", 64)));
    ck_assert(!same(key6("2001:db8:1:2::1", 128), key6("2001:db8:1:2::2", 128)));
    /* a prefix that is not a whole byte */
    ck_assert(same(key6("2001:db8::", 36), key6("2001:db8:0fff::", 36)));
    ck_assert(!same(key6("2001:db8::", 36), key6("2001:db8:1000::", 36)));
    ck_assert(same(key6("::ffff:192.0.2.7", 64), key4("192.0.2.7")));
    ck_assert(!same(key4("192.0.2.7"), key4("192.0.2.8")));
    struct sockaddr u = {.sa_family = AF_UNIX};
    sl_climit_key_t k;
    ck_assert_int_eq(sl_climit_key_of(&u, 64, &k), SL_EINVAL);
}
END_TEST

START_TEST(counting)
{
    sl_climit_key_t a = key4("198.51.100.1"), b = key4("198.51.100.2");
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(sl_climit_take(&a, 3), 0);
    ck_assert_int_eq(sl_climit_take(&a, 3), SL_ELIMIT);
    ck_assert_int_eq(sl_climit_take(&b, 3), 0); /* another client is served */
    ck_assert_uint_eq(sl_climit_count(&a), 3);
    sl_climit_release(&a);
    ck_assert_int_eq(sl_climit_take(&a, 3), 0);
    for (int i = 0; i < 3; i++)
        sl_climit_release(&a);
    sl_climit_release(&b);
    ck_assert_uint_eq(sl_climit_count(&a), 0);
    ck_assert_uint_eq(sl_climit_count(&b), 0);
}
END_TEST

static Suite *climit_suite(void)
{
    Suite *s = suite_create("climit");
    TCase *tc = sl_test_tcase("climit");
    tcase_add_test(tc, grouping);
    tcase_add_test(tc, counting);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(climit_suite());
}
