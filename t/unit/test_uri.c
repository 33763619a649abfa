/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/uri.c: the path normalisation table (RFC 3986 6.2.2:
 * percent-encoding of unreserved characters, case of the hex digits, dot
 * segments, empty segments) and the paths refused with a reason.
 */
#include "uri.h"
#include "helpers.h"
#include <check.h>

static const struct {
    const char *in, *out; /* out NULL: refused */
    unsigned flags;
} cases[] = {
    {"/", "/", 0},
    {"/a/b", "/a/b", 0},
    {"/a/b/", "/a/b/", 0},
    {"/api//admin", "/api/admin", 0},
    {"//x", "/x", 0},
    {"/api/./admin", "/api/admin", 0},
    {"/api/.", "/api/", 0},
    {"/api/%61dmin", "/api/admin", 0},
    {"/api/%2e%2E/admin", "/admin", 0},
    {"/api/../admin", "/admin", 0},
    {"/public/../admin", "/admin", 0},
    {"/a/b/../../c", "/c", 0},
    {"/a/..", "/", 0},
    {"/a/b/..", "/a/", 0},
    {"/...", "/...", 0},
    {"/a/..b/.c", "/a/..b/.c", 0},
    {"/%7euser/%7Efile", "/~user/~file", 0},
    {"/a%20b", "/a%20b", 0},
    {"/a%3fb", "/a%3Fb", 0},
    {"/x%2fy", "/x%2Fy", SL_URI_KEEP_ENCODED_SLASH},
    {"//attacker.example/../sub", "/sub", 0},
    {"/x%2fy", NULL, 0},
    {"/x%2Fy", NULL, 0},
    {"/..", NULL, 0},
    {"/a/../..", NULL, 0},
    {"/%2e%2e/etc", NULL, 0},
    {"/a%zz", NULL, 0},
    {"/a%4", NULL, 0},
    {"/a%", NULL, 0},
    {"/a%00b", NULL, 0},
    {"/api/%61b\x18", NULL, 0}, /* fuzz_uri: a bad byte after a '%' */
    {"/a b", NULL, 0},
    {"/a\x7f", NULL, 0},
    {"/a\xc3\xa9", NULL, 0},
};

START_TEST(test_table)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_pool_t pool;
        sl_str_t out = {0};
        const char *why = NULL;
        sl_pool_init(&pool);
        sl_str_t in = {cases[i].in, strlen(cases[i].in)};
        int rv = sl_uri_normalize_path(in, cases[i].flags, &pool, &out, &why);
        if (cases[i].out) {
            ck_assert_msg(rv == 0, "%s: refused (%s)", cases[i].in, why);
            ck_assert_msg(out.n == strlen(cases[i].out) && memcmp(out.p, cases[i].out, out.n) == 0,
                          "%s -> %.*s, want %s", cases[i].in, (int)out.n, out.p, cases[i].out);
        } else {
            ck_assert_msg(rv == SL_EINVAL, "%s: accepted as %.*s", cases[i].in, (int)out.n, out.p);
            ck_assert_ptr_nonnull(why);
        }
        sl_pool_dispose(&pool);
    }
}
END_TEST

START_TEST(test_no_copy_when_normal)
{
    sl_pool_t pool;
    sl_str_t out;
    const char *why;
    static const char p[] = "/static/app.js";
    sl_pool_init(&pool);
    ck_assert_int_eq(sl_uri_normalize_path((sl_str_t){p, sizeof(p) - 1}, 0, &pool, &out, &why), 0);
    ck_assert_ptr_eq(out.p, p);
    sl_pool_dispose(&pool);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("uri");
    TCase *tc = sl_test_tcase("normalize");
    tcase_add_test(tc, test_table);
    tcase_add_test(tc, test_no_copy_when_normal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(suite());
}
