/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/ws/: the incremental UTF-8 validator (tables of byte
 * strings, fed whole and byte by byte), the Sec-WebSocket-Accept value
 * (RFC 6455 1.3 example), and permessage-deflate inflate bounds.
 */
#include "../helpers.h"
#include "ws/ws_int.h"
#include <zlib.h>

typedef struct utf8_case {
    const char *s;
    size_t n;
    int valid;   /* whole string valid and complete */
    int fail_at; /* index of the first invalid byte, -1 when none */
} utf8_case_t;

#define C(lit, v, f)                                                                               \
    {                                                                                              \
        lit, sizeof(lit) - 1, v, f                                                                 \
    }
static const utf8_case_t cases[] = {
    C("", 1, -1),
    C("hello", 1, -1),
    C("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 1, -1),
    C("\xf0\x9f\x98\x80", 1, -1),
    C("\xf4\x8f\xbf\xbf", 1, -1), /* U+10FFFF */
    C("\xef\xbf\xbf", 1, -1),     /* U+FFFF */
    C("\xe2\x82", 0, -1),         /* open at the end */
    C("\xc0\xaf", 0, 0),          /* overlong */
    C("\xe0\x80\xaf", 0, 1),      /* overlong 3-byte */
    C("\xed\xa0\x80", 0, 1),      /* surrogate */
    C("\xf4\x90\x80\x80", 0, 1),  /* past U+10FFFF */
    C("\xf5\x80\x80\x80", 0, 0),
    C("\xff", 0, 0),
    C("abc\x80", 0, 3),               /* lone continuation */
    C("0123456789abcdef\xce", 0, -1), /* ASCII fast path then open */
    C("0123456789abcdef\xce\x41", 0, 17),
};

START_TEST(test_utf8_whole_and_bytewise)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        const utf8_case_t *c = &cases[i];
        ck_assert_msg(sl_ws_utf8_is_valid((const uint8_t *)c->s, c->n) == c->valid, "case %zu", i);
        sl_ws_utf8_t u;
        sl_ws_utf8_init(&u);
        int failed_at = -1;
        for (size_t k = 0; k < c->n; k++) {
            if (sl_ws_utf8_feed(&u, (const uint8_t *)c->s + k, 1) != 0) {
                failed_at = (int)k;
                break;
            }
        }
        ck_assert_msg(failed_at == c->fail_at, "case %zu: failed at %d, want %d", i, failed_at,
                      c->fail_at);
    }
}
END_TEST

START_TEST(test_accept_value)
{
    char out[29];
    sl_ws_accept_value("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
END_TEST

START_TEST(test_has_token)
{
    ck_assert(sl_str_has_token(SL_STR("keep-alive, Upgrade"), "upgrade"));
    ck_assert(!sl_str_has_token(SL_STR("keep-alive, Upgraded"), "upgrade"));
}
END_TEST

/* A compressed run of zeros inflates past the bound: cut at max + 1. */
START_TEST(test_inflate_bomb_cut)
{
    static uint8_t zeros[1 << 20];
    uint8_t *z = sl_malloc(1 << 16);
    z_stream s;
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(deflateInit2(&s, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    s.next_in = zeros;
    s.avail_in = sizeof(zeros);
    s.next_out = z;
    s.avail_out = (1 << 16) - 4;
    ck_assert_int_eq(deflate(&s, Z_SYNC_FLUSH), Z_OK);
    size_t n = (1 << 16) - 4 - s.avail_out - 4;
    deflateEnd(&s);
    sl_ws_pmd_t pmd;
    memset(&pmd, 0, sizeof(pmd));
    pmd.enabled = 1;
    uint8_t *out = NULL;
    size_t outlen = 0;
    ck_assert_int_eq(sl_ws_pmd_inflate(&pmd, z, n, 65536, &out, &outlen), SL_ETOOBIG);
    ck_assert_int_eq(sl_ws_pmd_inflate(&pmd, z, n, sizeof(zeros), &out, &outlen), 0);
    ck_assert_uint_eq(outlen, sizeof(zeros));
    sl_free(out);
    /* garbage is refused */
    memset(z, 0xff, 16);
    ck_assert_int_eq(sl_ws_pmd_inflate(&pmd, z, 16, 65536, &out, &outlen), SL_EINVAL);
    sl_ws_pmd_dispose(&pmd);
    sl_free(z);
}
END_TEST

/* Deflate then inflate, with and without context takeover. */
START_TEST(test_deflate_roundtrip)
{
    for (int nct = 0; nct < 2; nct++) {
        sl_ws_pmd_t a, b;
        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        a.enabled = b.enabled = 1;
        a.server_max_window_bits = 15;
        a.server_no_context_takeover = nct;
        b.client_no_context_takeover = nct;
        const char *msgs[] = {"hello hello hello", "", "hello again hello"};
        for (size_t i = 0; i < 3; i++) {
            uint8_t *z = NULL, *out = NULL;
            size_t zn = 0, on = 0;
            size_t len = strlen(msgs[i]);
            ck_assert_int_eq(sl_ws_pmd_deflate(&a, (const uint8_t *)msgs[i], len, &z, &zn), 0);
            uint8_t *zz = sl_malloc(zn + 4);
            memcpy(zz, z, zn);
            ck_assert_int_eq(sl_ws_pmd_inflate(&b, zz, zn, 1024, &out, &on), 0);
            ck_assert_uint_eq(on, len);
            ck_assert(len == 0 || memcmp(out, msgs[i], len) == 0);
            sl_free(z);
            sl_free(zz);
            sl_free(out);
        }
        sl_ws_pmd_dispose(&a);
        sl_ws_pmd_dispose(&b);
    }
}
END_TEST

/* Every allocation of a deflate/inflate round fails in turn (the output
 * buffers and the inflate buffer's growth): each call answers SL_ENOMEM
 * or succeeds, leaks nothing, and the next message still round-trips. */
START_TEST(test_deflate_alloc_failures)
{
    static uint8_t msg[200000];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)(i * 7 % 251);
    long nth;
    for (nth = 1; nth < 50; nth++) {
        sl_ws_pmd_t a, b;
        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        a.enabled = b.enabled = 1;
        a.server_max_window_bits = 15;
        uint8_t *z = NULL, *zz = NULL, *out = NULL;
        size_t zn = 0, on = 0;
        int failed = 0;
        sl_alloc_fail_nth(nth);
        int r = sl_ws_pmd_deflate(&a, msg, sizeof(msg), &z, &zn);
        ck_assert(r == 0 || r == SL_ENOMEM);
        failed |= r != 0;
        if (r == 0) {
            zz = sl_try_malloc(zn + 4);
            if (zz) {
                memcpy(zz, z, zn);
                r = sl_ws_pmd_inflate(&b, zz, zn, sizeof(msg), &out, &on);
                ck_assert(r == 0 || r == SL_ENOMEM);
                failed |= r != 0;
                ck_assert(r != 0 || (on == sizeof(msg) && memcmp(out, msg, on) == 0));
            } else {
                failed = 1;
            }
        }
        sl_alloc_fail_nth(0);
        sl_free(z);
        sl_free(zz);
        sl_free(out);
        sl_ws_pmd_dispose(&a);
        sl_ws_pmd_dispose(&b);
        ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline);
        if (!failed)
            break; /* every allocation of the round has been failed once */
    }
    ck_assert_int_gt(nth, 3); /* the inflate buffer did grow */
    ck_assert_int_lt(nth, 50);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ws");
    TCase *tc = sl_test_tcase("ws");
    tcase_add_test(tc, test_utf8_whole_and_bytewise);
    tcase_add_test(tc, test_accept_value);
    tcase_add_test(tc, test_has_token);
    tcase_add_test(tc, test_inflate_bomb_cut);
    tcase_add_test(tc, test_deflate_roundtrip);
    tcase_add_test(tc, test_deflate_alloc_failures);
    suite_add_tcase(s, tc);
    return sl_test_run(s);
}
