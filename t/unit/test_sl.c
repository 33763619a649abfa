/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/sl.c helpers shared by the modules: hex and base64
 * encoding (RFC 4648 test vectors), the traceparent check, OWS and list
 * tokens, and the connection-specific field set (src/req.c).
 */
#include "sl.h"
#include "req.h"
#include "helpers.h"
#include <check.h>

START_TEST(test_base64_vectors)
{
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const out[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < SL_ARRAY_LEN(in); i++) {
        char *b = sl_base64_encode((const uint8_t *)in[i], strlen(in[i]));
        ck_assert_str_eq(b, out[i]);
        sl_free(b);
    }
}
END_TEST

/* Every length from 0 to 24, an upper-case letter at every position is
 * found (the word, the overlapping tail, the two halves, single bytes),
 * and the bytes around 'A'..'Z', also with bit 7 set, are not. */
START_TEST(test_has_upper)
{
    static const char near[] = {'@', '[', 'a', 'z', '0', (char)0xc1, (char)0xda, (char)0x80};
    char buf[32];
    for (size_t n = 0; n <= 24; n++) {
        for (size_t k = 0; k < SL_ARRAY_LEN(near); k++) {
            memset(buf, near[k], n);
            ck_assert_int_eq(sl_has_upper(buf, n), 0);
        }
        for (size_t at = 0; at < n; at++) {
            memset(buf, 'q', n);
            buf[at] = (char)('A' + at % 26);
            ck_assert_msg(sl_has_upper(buf, n), "n %zu at %zu", n, at);
            buf[at] = 'Z';
            ck_assert(sl_has_upper(buf, n));
        }
    }
}
END_TEST

START_TEST(test_hex)
{
    static const uint8_t in[] = {0x00, 0x7f, 0xa5, 0xff};
    char out[9];
    sl_hex_encode(in, sizeof(in), out);
    ck_assert_str_eq(out, "007fa5ff");
}
END_TEST

START_TEST(test_tokens)
{
    sl_str_t t = sl_str_trim_ows(SL_STR(" \t a b\t "));
    ck_assert_uint_eq(t.n, 3);
    ck_assert(memcmp(t.p, "a b", 3) == 0);
    ck_assert_uint_eq(sl_str_trim_ows(SL_STR(" \t ")).n, 0);
    sl_str_t list = SL_STR("keep-alive , Upgrade,,x-hop\t");
    ck_assert(sl_str_has_token(list, "upgrade"));
    ck_assert(sl_str_has_token_s(list, SL_STR("X-HOP")));
    ck_assert(!sl_str_has_token(list, "keep"));
    ck_assert(!sl_str_has_token_s(list, SL_STR("")));
}
END_TEST

START_TEST(test_connection_specific)
{
    static const char *const yes[] = {"Connection", "keep-alive",        "Proxy-Connection",
                                      "TE",         "transfer-encoding", "Upgrade"};
    static const char *const no[] = {"content-length", "trailer", "te2", "host",
                                     "upgrade-insecure-requests"};
    for (size_t i = 0; i < SL_ARRAY_LEN(yes); i++)
        ck_assert(sl_field_is_connection_specific((sl_str_t){yes[i], strlen(yes[i])}));
    for (size_t i = 0; i < SL_ARRAY_LEN(no); i++)
        ck_assert(!sl_field_is_connection_specific((sl_str_t){no[i], strlen(no[i])}));
}
END_TEST

/* Identifiers from sl_rand_fast do not repeat, and odd lengths fill. */
START_TEST(test_rand_fast)
{
    static uint8_t seen[2000][16];
    for (int i = 0; i < 2000; i++) {
        sl_rand_fast(seen[i], 16);
        for (int j = 0; j < i; j++)
            ck_assert(memcmp(seen[i], seen[j], 16) != 0);
    }
    uint8_t odd[13] = {0};
    sl_rand_fast(odd, sizeof(odd));
    int zero = 0;
    for (size_t i = 0; i < sizeof(odd); i++)
        zero += odd[i] == 0;
    ck_assert_int_lt(zero, 6);
}
END_TEST

START_TEST(test_traceparent)
{
    static const char ok[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    ck_assert(sl_traceparent_is_valid((sl_str_t){ok, strlen(ok)}));
    char bad[sizeof(ok)];
    static const size_t at[] = {0, 2, 10, 35, 40, 52, 54};
    for (size_t i = 0; i < SL_ARRAY_LEN(at); i++) {
        memcpy(bad, ok, sizeof(ok));
        bad[at[i]] = 'X';
        ck_assert(!sl_traceparent_is_valid((sl_str_t){bad, strlen(bad)}));
    }
    ck_assert(!sl_traceparent_is_valid((sl_str_t){ok, strlen(ok) - 1}));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("sl");
    TCase *tc = sl_test_tcase("helpers");
    tcase_add_test(tc, test_base64_vectors);
    tcase_add_test(tc, test_has_upper);
    tcase_add_test(tc, test_hex);
    tcase_add_test(tc, test_tokens);
    tcase_add_test(tc, test_connection_specific);
    tcase_add_test(tc, test_traceparent);
    tcase_add_test(tc, test_rand_fast);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(suite());
}
