/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/query.c: raw lookups, percent-decoding, query
 * splitting with its bounds, and bounded decimal parsing (sl.c).
 */
#include "query.h"
#include "helpers.h"
#include <check.h>
#include <stdlib.h>

static sl_str_t S(const char *s)
{
    return (sl_str_t){s, strlen(s)};
}

typedef struct parsed {
    sl_query_param_t v[8];
    char scratch[256];
    size_t n;
    const char *why;
    int rv;
} parsed_t;

static void parse(parsed_t *p, const char *raw, size_t max)
{
    memset(p, 0, sizeof(*p));
    p->rv = sl_query_parse(S(raw), p->v, max, p->scratch, sizeof(p->scratch), &p->n, &p->why);
}

START_TEST(decode_plain_plus_and_escapes)
{
    char out[64];
    ssize_t n = sl_query_pct_decode("a+b%20c%2Fd%41%7e", 17, out);
    ck_assert_int_eq(n, 9);
    ck_assert(memcmp(out, "a b c/dA~", 9) == 0);
    n = sl_query_pct_decode("%00x", 4, out);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(out[0], 0);
    ck_assert_int_eq(out[1], 'x');
    n = sl_query_pct_decode("", 0, out);
    ck_assert_int_eq(n, 0);
}
END_TEST

START_TEST(decode_refuses_broken_escapes)
{
    char out[16];
    static const char *const bad[] = {"%", "%4", "a%", "%zz", "%4g", "%g4", "ab%2"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        ck_assert_int_eq(sl_query_pct_decode(bad[i], strlen(bad[i]), out), SL_EINVAL);
}
END_TEST

START_TEST(decode_in_place)
{
    char buf[] = "x%41y+z";
    ssize_t n = sl_query_pct_decode(buf, strlen(buf), buf);
    ck_assert_int_eq(n, 5);
    ck_assert(memcmp(buf, "xAy z", 5) == 0);
}
END_TEST

START_TEST(query_pairs)
{
    parsed_t p;
    parse(&p, "a=1&b=%20two&flag&=empty&&c=x%3Dy", 8);
    ck_assert_int_eq(p.rv, 0);
    ck_assert_uint_eq(p.n, 5);
    ck_assert(sl_str_eq(p.v[0].name, "a") && sl_str_eq(p.v[0].value, "1"));
    ck_assert(sl_str_eq(p.v[1].name, "b") && sl_str_eq(p.v[1].value, " two"));
    ck_assert(sl_str_eq(p.v[2].name, "flag") && p.v[2].value.n == 0);
    ck_assert(p.v[3].name.n == 0 && sl_str_eq(p.v[3].value, "empty"));
    ck_assert(sl_str_eq(p.v[4].name, "c") && sl_str_eq(p.v[4].value, "x=y"));
    /* Every piece is NUL-terminated for sl_resp_* calls. */
    for (size_t i = 0; i < p.n; i++) {
        ck_assert_int_eq(p.v[i].name.p[p.v[i].name.n], '\0');
        ck_assert_int_eq(p.v[i].value.p[p.v[i].value.n], '\0');
    }
}
END_TEST

START_TEST(query_empty_and_separators_only)
{
    parsed_t p;
    parse(&p, "", 8);
    ck_assert_int_eq(p.rv, 0);
    ck_assert_uint_eq(p.n, 0);
    parse(&p, "&&&", 8);
    ck_assert_int_eq(p.rv, 0);
    ck_assert_uint_eq(p.n, 0);
}
END_TEST

START_TEST(query_count_bound)
{
    parsed_t p;
    parse(&p, "a=1&b=2&c=3", 3);
    ck_assert_int_eq(p.rv, 0);
    ck_assert_uint_eq(p.n, 3);
    parse(&p, "a=1&b=2&c=3&d=4", 3);
    ck_assert_int_eq(p.rv, SL_ETOOBIG);
    ck_assert_ptr_nonnull(p.why);
    /* Empty segments do not count against the bound. */
    parse(&p, "a=1&&&&b=2", 2);
    ck_assert_int_eq(p.rv, 0);
}
END_TEST

START_TEST(query_bad_escape)
{
    parsed_t p;
    parse(&p, "a=%zz", 8);
    ck_assert_int_eq(p.rv, SL_EINVAL);
    ck_assert_ptr_nonnull(p.why);
    parse(&p, "%4=1", 8);
    ck_assert_int_eq(p.rv, SL_EINVAL);
}
END_TEST

START_TEST(query_scratch_is_enough)
{
    /* Worst cases for the raw.n + 1 scratch rule: names without values. */
    static const char *const raws[] = {"a", "a&b&c", "=", "==", "a=&=b&c"};
    for (size_t i = 0; i < SL_ARRAY_LEN(raws); i++) {
        sl_query_param_t v[8];
        size_t len = strlen(raws[i]), n;
        char *scratch = malloc(len + 1);
        const char *why;
        ck_assert_int_eq(sl_query_parse(S(raws[i]), v, 8, scratch, len + 1, &n, &why), 0);
        free(scratch);
    }
}
END_TEST

START_TEST(query_get_last_wins)
{
    parsed_t p;
    parse(&p, "n=1&m=2&n=3", 8);
    sl_query_t q = {p.v, p.n};
    const sl_str_t *v = sl_query_find(&q, "n");
    ck_assert_ptr_nonnull(v);
    ck_assert(sl_str_eq(*v, "3"));
    ck_assert_ptr_null(sl_query_find(&q, "x"));
}
END_TEST

START_TEST(u64_bounds)
{
    uint64_t v = 7;
    ck_assert_int_eq(sl_str_parse_u64(S("0"), 0, 10, &v), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(sl_str_parse_u64(S("0010"), 0, 10, &v), 0);
    ck_assert_uint_eq(v, 10);
    ck_assert_int_eq(sl_str_parse_u64(S("11"), 0, 10, &v), SL_ETOOBIG);
    ck_assert_int_eq(sl_str_parse_u64(S("4"), 5, 10, &v), SL_ETOOBIG);
    ck_assert_int_eq(sl_str_parse_u64(S("18446744073709551615"), 0, UINT64_MAX, &v), 0);
    ck_assert(v == UINT64_MAX);
    ck_assert_int_eq(sl_str_parse_u64(S("18446744073709551616"), 0, UINT64_MAX, &v), SL_ETOOBIG);
    ck_assert_int_eq(sl_str_parse_u64(S("99999999999999999999999"), 0, UINT64_MAX, &v), SL_ETOOBIG);
}
END_TEST

START_TEST(u64_malformed)
{
    uint64_t v = 0;
    static const char *const bad[] = {"", "-1", "+1", " 1", "1 ", "1e3", "0x10", "1.0", "١"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        ck_assert_int_eq(sl_str_parse_u64(S(bad[i]), 0, UINT64_MAX, &v), SL_EINVAL);
    /* Overflow followed by junk is malformed, not out of range. */
    ck_assert_int_eq(sl_str_parse_u64(S("99999999999999999999x"), 0, UINT64_MAX, &v), SL_EINVAL);
}
END_TEST

START_TEST(query_u64_default_and_errors)
{
    parsed_t p;
    parse(&p, "chunk=100&seed=abc", 8);
    sl_query_t q = {p.v, p.n};
    uint64_t v = 0;
    ck_assert_int_eq(sl_query_find_u64(&q, "absent", 42, 0, 100, &v), 0);
    ck_assert_uint_eq(v, 42);
    ck_assert_int_eq(sl_query_find_u64(&q, "chunk", 1, 1, 100, &v), 0);
    ck_assert_uint_eq(v, 100);
    ck_assert_int_eq(sl_query_find_u64(&q, "chunk", 1, 1, 99, &v), SL_ETOOBIG);
    ck_assert_int_eq(sl_query_find_u64(&q, "seed", 0, 0, UINT64_MAX, &v), SL_EINVAL);
}
END_TEST

START_TEST(raw_lookup)
{
    sl_str_t v;
    sl_str_t q = S("a=1&flag&b=%20x&a=2&ab=9&=z&");
    ck_assert_int_eq(sl_query_get(q, "a", &v), 0);
    ck_assert(sl_str_eq(v, "2")); /* the last wins */
    ck_assert_int_eq(sl_query_get(q, "flag", &v), 0);
    ck_assert_uint_eq(v.n, 0);
    ck_assert_int_eq(sl_query_get(q, "b", &v), 0);
    ck_assert(sl_str_eq(v, "%20x")); /* raw: not decoded */
    ck_assert_int_eq(sl_query_get(q, "c", &v), SL_EAGAIN);
    ck_assert_int_eq(sl_query_get(S(""), "a", &v), SL_EAGAIN);
    uint64_t n;
    ck_assert_int_eq(sl_query_get_u64(q, "ab", 3, 0, 100, &n), 0);
    ck_assert_uint_eq(n, 9);
    ck_assert_int_eq(sl_query_get_u64(q, "zz", 3, 0, 100, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(sl_query_get_u64(q, "ab", 3, 10, 100, &n), SL_ETOOBIG);
    ck_assert_int_eq(sl_query_get_u64(q, "b", 3, 0, 100, &n), SL_EINVAL);
    ck_assert_int_eq(sl_query_get_u64(q, "flag", 3, 0, 100, &n), SL_EINVAL);
    ck_assert_int_eq(sl_str_to_u64(S("9223372036854775807")), INT64_MAX);
    ck_assert_int_eq(sl_str_to_u64(S("9223372036854775808")), -1);
    ck_assert_int_eq(sl_str_to_u64(S("12a")), -1);
}
END_TEST

static Suite *query_suite(void)
{
    Suite *s = suite_create("query");
    TCase *tc = sl_test_tcase("query");
    tcase_add_test(tc, decode_plain_plus_and_escapes);
    tcase_add_test(tc, decode_refuses_broken_escapes);
    tcase_add_test(tc, decode_in_place);
    tcase_add_test(tc, query_pairs);
    tcase_add_test(tc, query_empty_and_separators_only);
    tcase_add_test(tc, query_count_bound);
    tcase_add_test(tc, query_bad_escape);
    tcase_add_test(tc, query_scratch_is_enough);
    tcase_add_test(tc, query_get_last_wins);
    tcase_add_test(tc, u64_bounds);
    tcase_add_test(tc, u64_malformed);
    tcase_add_test(tc, query_u64_default_and_errors);
    tcase_add_test(tc, raw_lookup);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(query_suite());
}
