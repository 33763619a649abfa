/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/harness/fields.c: token and field-value checks, the
 * trailer deny-list, and HTTP/2 error code names.
 */
#include "harness/harness_int.h"
#include "../helpers.h"
#include <check.h>
#include <stdlib.h>

static sl_str_t S(const char *s)
{
    return (sl_str_t){s, strlen(s)};
}

START_TEST(tokens)
{
    ck_assert(sl_str_is_token(S("x-trace")));
    ck_assert(sl_str_is_token(S("A!#$%&'*+-.^_`|~9")));
    ck_assert(!sl_str_is_token(S("")));
    ck_assert(!sl_str_is_token(S("a b")));
    ck_assert(!sl_str_is_token(S("a:b")));
    ck_assert(!sl_str_is_token(S(":path")));
    ck_assert(!sl_str_is_token(S("a\"b")));
    ck_assert(!sl_str_is_token((sl_str_t){"a\0b", 3}));
    ck_assert(!sl_str_is_token(S("caf\xc3\xa9")));
}
END_TEST

START_TEST(field_values)
{
    ck_assert(sl_harness_is_field_value(S("")));
    ck_assert(sl_harness_is_field_value(S("a b\tc")));
    ck_assert(sl_harness_is_field_value(S("caf\xc3\xa9")));
    ck_assert(!sl_harness_is_field_value(S("a\r\nx-evil: 1")));
    ck_assert(!sl_harness_is_field_value(S("a\nb")));
    ck_assert(!sl_harness_is_field_value((sl_str_t){"a\0b", 3}));
    ck_assert(!sl_harness_is_field_value(S("a\x7f")));
    ck_assert(!sl_harness_is_field_value(S(" lead")));
    ck_assert(!sl_harness_is_field_value(S("trail\t")));
}
END_TEST

START_TEST(forbidden_trailers)
{
    ck_assert(sl_harness_is_forbidden_trailer(S("content-length")));
    ck_assert(sl_harness_is_forbidden_trailer(S("transfer-encoding")));
    ck_assert(sl_harness_is_forbidden_trailer(S("host")));
    ck_assert(sl_harness_is_forbidden_trailer(S("connection")));
    ck_assert(sl_harness_is_forbidden_trailer(S("te")));
    ck_assert(!sl_harness_is_forbidden_trailer(S("grpc-status")));
    ck_assert(!sl_harness_is_forbidden_trailer(S("x-checksum")));
}
END_TEST

START_TEST(h2_error_names)
{
    ck_assert_int_eq(sl_harness_h2_error_code(S("NO_ERROR")), 0);
    ck_assert_int_eq(sl_harness_h2_error_code(S("PROTOCOL_ERROR")), 1);
    ck_assert_int_eq(sl_harness_h2_error_code(S("INTERNAL_ERROR")), 2);
    ck_assert_int_eq(sl_harness_h2_error_code(S("FLOW_CONTROL_ERROR")), 3);
    ck_assert_int_eq(sl_harness_h2_error_code(S("STREAM_CLOSED")), 5);
    ck_assert_int_eq(sl_harness_h2_error_code(S("REFUSED_STREAM")), 7);
    ck_assert_int_eq(sl_harness_h2_error_code(S("CANCEL")), 8);
    ck_assert_int_eq(sl_harness_h2_error_code(S("cancel")), 8);
    ck_assert_int_eq(sl_harness_h2_error_code(S("ENHANCE_YOUR_CALM")), 11);
    ck_assert_int_eq(sl_harness_h2_error_code(S("HTTP_1_1_REQUIRED")), 13);
    ck_assert_int_eq(sl_harness_h2_error_code(S("8")), -1);
    ck_assert_int_eq(sl_harness_h2_error_code(S("CANCELX")), -1);
    ck_assert_int_eq(sl_harness_h2_error_code(S("")), -1);
}
END_TEST

static Suite *fields_suite(void)
{
    Suite *s = suite_create("harness_fields");
    TCase *tc = sl_test_tcase("fields");
    tcase_add_test(tc, tokens);
    tcase_add_test(tc, field_values);
    tcase_add_test(tc, forbidden_trailers);
    tcase_add_test(tc, h2_error_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(fields_suite());
}
