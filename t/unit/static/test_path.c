/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/static/path.c: decoding once, "." and ".." resolved
 * lexically, refusals (NUL, encoded '/', backslash, climbing above the
 * root, bad escapes), the length bound and the dotfile check.
 */
#include "static/static_int.h"
#include "../helpers.h"
#include <check.h>
#include <stdlib.h>

typedef struct norm {
    char out[64];
    size_t n;
    const char *why;
    int rv;
} norm_t;

static norm_t norm(const char *raw)
{
    norm_t r;
    memset(&r, 0, sizeof(r));
    r.rv = sl_static_path_normalize(raw, strlen(raw), r.out, sizeof(r.out), &r.n, &r.why);
    return r;
}

static void ok(const char *raw, const char *want)
{
    norm_t r = norm(raw);
    ck_assert_msg(r.rv == 0, "%s: rv %d (%s)", raw, r.rv, r.why ? r.why : "");
    ck_assert_str_eq(r.out, want);
    ck_assert_uint_eq(r.n, strlen(want));
}

static void refused(const char *raw)
{
    norm_t r = norm(raw);
    ck_assert_msg(r.rv == SL_EINVAL, "%s: rv %d out %s", raw, r.rv, r.out);
    ck_assert_ptr_nonnull(r.why);
}

START_TEST(plain_paths)
{
    ok("", "");
    ok("/", "");
    ok("a.txt", "a.txt");
    ok("/a/b.txt", "a/b.txt");
    ok("a//b///c", "a/b/c");
    ok("dir/", "dir/");
    ok("a%20b", "a b");
    ok("%41%42c", "ABc");
    ok("a+b", "a+b"); /* '+' is not a space in a path */
}
END_TEST

START_TEST(dots_resolved)
{
    ok("./a", "a");
    ok("a/./b", "a/b");
    ok("a/b/../c", "a/c");
    ok("a/b/..", "a/");
    ok("a/.", "a/");
    ok("a/..", "");
    ok("a/%2e%2e/b", "b");
    ok("a/%2E/b", "a/b");
    ok("...", "..."); /* a name, not a step */
    ok("a/..b", "a/..b");
}
END_TEST

START_TEST(refusals)
{
    refused("..");
    refused("../etc/passwd");
    refused("/../x");
    refused("a/../../x");
    refused("%2e%2e/x");
    refused("%2E%2e/x");
    refused("a/b/../../..");
    refused("a%2fb");
    refused("a%2Fb");
    refused("a%00b");
    refused("a%5cb");
    refused("a\\b");
    refused("..%5c..%5cx");
    refused("a%");
    refused("a%4");
    refused("a%zz");
    refused("a%%32%65");
}
END_TEST

START_TEST(decoded_once)
{
    /* %252e is "%2e" after one decode: a name, never a dot segment. */
    ok("%252e%252e/x", "%2e%2e/x");
}
END_TEST

START_TEST(length_bound)
{
    char raw[200];
    memset(raw, 'a', sizeof(raw) - 1);
    raw[sizeof(raw) - 1] = '\0';
    norm_t r = norm(raw);
    ck_assert_int_eq(r.rv, SL_ETOOBIG);
    memset(raw, 'a', 64);
    raw[64] = '\0';
    r = norm(raw);
    ck_assert_int_eq(r.rv, SL_ETOOBIG); /* 64 + NUL > 64 */
    raw[63] = '\0';
    r = norm(raw);
    ck_assert_int_eq(r.rv, 0);
}
END_TEST

START_TEST(dotfiles)
{
    ck_assert(sl_static_path_has_dotfile(".env", 4));
    ck_assert(sl_static_path_has_dotfile("a/.git/config", 13));
    ck_assert(!sl_static_path_has_dotfile("a/b.c", 5));
    ck_assert(!sl_static_path_has_dotfile("", 0));
    ck_assert(!sl_static_path_has_dotfile("a./b", 4));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("static_path");
    TCase *tc = sl_test_tcase("normalize");
    tcase_add_test(tc, plain_paths);
    tcase_add_test(tc, dots_resolved);
    tcase_add_test(tc, refusals);
    tcase_add_test(tc, decoded_once);
    tcase_add_test(tc, length_bound);
    tcase_add_test(tc, dotfiles);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(suite());
}
