/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/cache/policy.c (RFC 9111 rules) and the zone's
 * bounds in src/cache/zone.c (entries, bytes, LRU eviction, refs that
 * outlive eviction, purge by key and prefix).
 */
#include "cache/cache_int.h"
#include "../helpers.h"
#include <check.h>

#define H(n, v)                                                                                    \
    {                                                                                              \
        {n, sizeof(n) - 1},                                                                        \
        {                                                                                          \
            v, sizeof(v) - 1                                                                       \
        }                                                                                          \
    }

static cc_resp_t resp(int status, const sl_header_t *h, size_t n, double t)
{
    cc_resp_t r = {status, h, n, {0}, t};
    cc_cc_parse(h, n, &r.cc);
    return r;
}

START_TEST(cache_control)
{
    const sl_header_t h[] = {H("cache-control", "public, max-age=60 , s-maxage=\"30\""),
                             H("cache-control", "stale-while-revalidate=5,no-cache=\"x, y\""),
                             H("pragma", "no-cache")};
    cc_cc_t c;
    cc_cc_parse(h, 3, &c);
    ck_assert(c.pub && c.no_cache && !c.priv && !c.no_store);
    ck_assert_int_eq(c.max_age, 60);
    ck_assert_int_eq(c.s_maxage, 30);
    ck_assert_int_eq(c.swr, 5);
    ck_assert_int_eq(c.sie, -1);
    const sl_header_t up[] = {H("Cache-Control", "Max-Age=7, PRIVATE")};
    cc_cc_parse(up, 1, &c); /* an HTTP/1.1 upstream's names keep their case */
    ck_assert(c.priv && c.max_age == 7);
    const sl_header_t p[] = {H("pragma", "no-cache")};
    cc_cc_parse(p, 1, &c);
    ck_assert(c.no_cache); /* Pragma counts only without Cache-Control */
    const sl_header_t big[] = {H("cache-control", "max-age=99999999999999999999, max-stale")};
    cc_cc_parse(big, 1, &c);
    ck_assert_int_eq(c.max_age, INT32_MAX);
    ck_assert_int_eq(c.max_stale, INT32_MAX);
    const sl_header_t bad[] = {H("cache-control", "max-age=abc")};
    cc_cc_parse(bad, 1, &c);
    ck_assert(c.max_age_bad && c.max_age < 0);
}
END_TEST

START_TEST(storable)
{
    cc_cc_t q = {0};
    q.max_age = q.s_maxage = q.swr = q.sie = q.min_fresh = q.max_stale = -1;
    const sl_header_t ok[] = {H("cache-control", "max-age=60")};
    cc_resp_t r = resp(200, ok, 1, 1000);
    ck_assert_ptr_null(cc_unstorable(&r, &q, 0));
    ck_assert_str_eq(cc_unstorable(&r, &q, 1), "authorization");
    const sl_header_t pub[] = {H("cache-control", "public, max-age=60")};
    r = resp(200, pub, 1, 1000);
    ck_assert_ptr_null(cc_unstorable(&r, &q, 1));
    const sl_header_t priv[] = {H("cache-control", "private, max-age=60")};
    r = resp(200, priv, 1, 1000);
    ck_assert_str_eq(cc_unstorable(&r, &q, 0), "private");
    const sl_header_t ck[] = {H("cache-control", "max-age=60"), H("Set-Cookie", "a=1")};
    r = resp(200, ck, 2, 1000);
    ck_assert_str_eq(cc_unstorable(&r, &q, 0), "set-cookie");
    const sl_header_t vs[] = {H("cache-control", "max-age=60"), H("vary", "a, *")};
    r = resp(200, vs, 2, 1000);
    ck_assert_str_eq(cc_unstorable(&r, &q, 0), "vary-star");
    r = resp(500, ok, 1, 1000);
    ck_assert_str_eq(cc_unstorable(&r, &q, 0), "status");
    r = resp(302, ok, 1, 1000);
    ck_assert_ptr_null(cc_unstorable(&r, &q, 0)); /* explicit lifetime */
    r = resp(302, NULL, 0, 1000);
    ck_assert_str_eq(cc_unstorable(&r, &q, 0), "status");
    q.no_store = 1;
    r = resp(200, ok, 1, 1000);
    ck_assert_str_eq(cc_unstorable(&r, &q, 0), "request-no-store");
}
END_TEST

START_TEST(lifetime_and_age)
{
    /* 784111777 = Sun, 06 Nov 1994 08:49:37 GMT */
    const double t = 784111777;
    const sl_header_t s[] = {H("cache-control", "max-age=10, s-maxage=20")};
    cc_resp_t r = resp(200, s, 1, t);
    ck_assert(cc_lifetime(&r) == 20);
    const sl_header_t e[] = {H("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                             H("expires", "Sun, 06 Nov 1994 08:50:37 GMT")};
    r = resp(200, e, 2, t);
    ck_assert(cc_lifetime(&r) == 60);
    const sl_header_t bad[] = {H("expires", "0")};
    r = resp(200, bad, 1, t);
    ck_assert(cc_lifetime(&r) == 0);
    /* heuristic: a tenth of the time since Last-Modified, at most a day */
    const sl_header_t lm[] = {H("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                              H("last-modified", "Sun, 06 Nov 1994 08:32:57 GMT")};
    r = resp(200, lm, 2, t);
    ck_assert(cc_lifetime(&r) == 100);
    r = resp(302, lm, 2, t);
    ck_assert(cc_lifetime(&r) == 0); /* not heuristically cacheable */
    /* age: the larger of the apparent age and Age plus the delay */
    const sl_header_t a[] = {H("date", "Sun, 06 Nov 1994 08:49:30 GMT"), H("age", "3")};
    r = resp(200, a, 2, t);
    ck_assert(cc_initial_age(&r, t - 1) == 7);
    const sl_header_t a2[] = {H("date", "Sun, 06 Nov 1994 08:49:37 GMT"), H("age", "30")};
    r = resp(200, a2, 2, t);
    ck_assert(cc_initial_age(&r, t - 2) == 32);
}
END_TEST

/* ---- zones ---- */

static cc_entry_t *stored(cc_zone_t *z, const char *key, size_t bytes, double t)
{
    cc_entry_t *e = cc_entry_new(z, key, strlen(key), cc_key_hash(z, key, strlen(key)));
    e->resp_time = t;
    ck_assert_int_eq(cc_zone_link(e), 0);
    cc_zone_charge(e, bytes);
    cc_zone_complete(e);
    return e;
}

static int present(cc_zone_t *z, const char *key)
{
    size_t n = strlen(key);
    int found = 0;
    cc_zone_lock(z);
    for (cc_entry_t *e = cc_zone_chain(z, cc_key_hash(z, key, n)); e; e = e->hnext)
        found |= e->klen == n && memcmp(e->key, key, n) == 0;
    cc_zone_unlock(z);
    return found;
}

START_TEST(zone_bounds)
{
    cc_zone_t *z = cc_zone_acquire("t", 100000, 3);
    cc_entry_t *a = stored(z, "h/a", 1000, 1), *b = stored(z, "h/b", 1000, 2);
    cc_entry_t *c = stored(z, "h/c", 1000, 3);
    cc_entry_unref(b);
    cc_entry_unref(c);
    cc_zone_lock(z);
    cc_zone_touch(a); /* a is now the most recent: b goes first */
    cc_zone_unlock(z);
    cc_entry_t *d = stored(z, "h/d", 1000, 4);
    ck_assert(present(z, "h/a") && !present(z, "h/b") && present(z, "h/c"));
    ck_assert_uint_eq(atomic_load(&z->evictions), 1);
    /* bytes: a 60 KB entry pushes the others out; a (still held) stays
     * in memory, out of the table, and is freed at its last unref */
    cc_entry_t *big = stored(z, "h/big", 60000, 5);
    ck_assert_int_eq(cc_zone_charge(big, 30000), 0);
    ck_assert(!present(z, "h/a") || !present(z, "h/c"));
    ck_assert_uint_le(z->mem, 100000);
    ck_assert_int_eq(a->linked, present(z, "h/a"));
    cc_entry_unref(a);
    cc_entry_unref(d);
    cc_entry_unref(big);
    size_t left = z->n;
    ck_assert_uint_eq(cc_zone_purge(z, "h/", 2, 1), left);
    ck_assert_uint_eq(z->n, 0);
    ck_assert_uint_eq(z->mem, 0);
    cc_zone_release(z);
}
END_TEST

START_TEST(zone_purge_exact_and_prefix)
{
    cc_zone_t *z = cc_zone_acquire("p", 1 << 20, 100);
    const char *keys[] = {"h/x", "h/x?a=1", "h/y", "g/x"};
    for (size_t i = 0; i < 4; i++)
        cc_entry_unref(stored(z, keys[i], 10, (double)i));
    ck_assert_uint_eq(cc_zone_purge(z, "h/x", 3, 0), 1);
    ck_assert(!present(z, "h/x") && present(z, "h/x?a=1"));
    ck_assert_uint_eq(cc_zone_purge(z, "h/", 2, 1), 2);
    ck_assert(present(z, "g/x"));
    ck_assert_uint_eq(z->n, 1);
    /* the same name and size give the same zone back */
    cc_zone_t *again = cc_zone_acquire("p", 1 << 20, 100);
    ck_assert_ptr_eq(again, z);
    cc_zone_release(again);
    cc_zone_release(z);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = sl_test_tcase("policy");
    tcase_add_test(tc, cache_control);
    tcase_add_test(tc, storable);
    tcase_add_test(tc, lifetime_and_age);
    suite_add_tcase(s, tc);
    tc = sl_test_tcase("zone");
    tcase_add_test(tc, zone_bounds);
    tcase_add_test(tc, zone_purge_exact_and_prefix);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(suite());
}
