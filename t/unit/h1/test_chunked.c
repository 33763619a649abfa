/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for the chunked decoder (src/h1/chunked.c): good bodies split
 * at every byte (and fed one byte at a time), bad hex, overflow, strict
 * CRLF, extension and trailer bounds.
 */
#include "h1/h1_int.h"
#include "../helpers.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct sink {
    char data[4096];
    size_t len;
} sink_t;

static void collect(void *arg, const uint8_t *p, size_t n)
{
    sink_t *s = arg;
    ck_assert_uint_le(s->len + n, sizeof(s->data));
    memcpy(s->data + s->len, p, n);
    s->len += n;
}

/* Decode in one call; returns the decoder's result. */
static ssize_t decode_all(const char *in, size_t len, size_t max_ext, sink_t *s, sl_h1_chunked_t *d)
{
    sl_h1_chunked_init(d, max_ext);
    s->len = 0;
    return sl_h1_chunked_decode(d, (const uint8_t *)in, len, collect, s);
}

typedef struct good {
    const char *in;
    const char *body;
} good_t;

static const good_t good[] = {
    {"5\r\nhello\r\n0\r\n\r\n", "hello"},
    {"0\r\n\r\n", ""},
    {"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", "abcde"},
    {"A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
    {"a\r\n0123456789\r\n000\r\n\r\n", "0123456789"},
    {"005;foo=bar\r\nhello\r\n0;x\r\n\r\n", "hello"},
    {"5 ;foo=\"a b\"\r\nhello\r\n0\r\n\r\n", "hello"},
    {"5\r\nhello\r\n0\r\nX-Trailer: v\r\nX-Other:\r\n\r\n", "hello"},
    {"1\r\n\r\r\n1\r\n\n\r\n0\r\n\r\n", "\r\n"},
};

START_TEST(test_good_split_everywhere)
{
    sink_t s;
    sl_h1_chunked_t d;
    for (size_t i = 0; i < SL_ARRAY_LEN(good); i++) {
        const good_t *g = &good[i];
        size_t len = strlen(g->in);
        /* Trailing bytes (the next request) are not consumed. */
        char buf[512];
        snprintf(buf, sizeof(buf), "%sGET / HTTP/1.1\r\n", g->in);
        ssize_t r = decode_all(buf, strlen(buf), 64, &s, &d);
        ck_assert_msg(r == (ssize_t)len, "good %zu: %zd", i, r);
        ck_assert(d.done);
        ck_assert_uint_eq(s.len, strlen(g->body));
        ck_assert(memcmp(s.data, g->body, s.len) == 0);
        for (size_t k = 0; k <= len; k++) {
            sl_h1_chunked_init(&d, 64);
            s.len = 0;
            ssize_t a = sl_h1_chunked_decode(&d, (const uint8_t *)g->in, k, collect, &s);
            ck_assert_int_eq(a, (ssize_t)k);
            ck_assert(d.done == (k == len));
            ssize_t b = sl_h1_chunked_decode(&d, (const uint8_t *)g->in + k, len - k, collect, &s);
            ck_assert_int_eq(b, (ssize_t)(len - k));
            ck_assert(d.done);
            ck_assert_uint_eq(s.len, strlen(g->body));
            ck_assert(memcmp(s.data, g->body, s.len) == 0);
        }
        /* One byte at a time. */
        sl_h1_chunked_init(&d, 64);
        s.len = 0;
        for (size_t k = 0; k < len; k++)
            ck_assert_int_eq(sl_h1_chunked_decode(&d, (const uint8_t *)g->in + k, 1, collect, &s),
                             1);
        ck_assert(d.done);
        ck_assert(memcmp(s.data, g->body, s.len) == 0);
        /* After the end nothing more is taken. */
        ck_assert_int_eq(sl_h1_chunked_decode(&d, (const uint8_t *)"x", 1, collect, &s), 0);
    }
}
END_TEST

typedef struct bad {
    const char *name;
    const char *in;
    ssize_t want;
} bad_t;

static const bad_t bad[] = {
    {"bad hex", "g\r\n", SL_EINVAL},
    {"empty size", "\r\n", SL_EINVAL},
    {"negative", "-1\r\n", SL_EINVAL},
    {"0x prefix", "0x5\r\nhello\r\n", SL_EINVAL},
    {"space inside size", "5 5\r\n", SL_EINVAL},
    {"leading space", " 5\r\n", SL_EINVAL},
    {"bare LF after size", "5\nhello\r\n", SL_EINVAL},
    {"bare CR after size", "5\rhello\r\n", SL_EINVAL},
    {"data too long", "5\r\nhelloX\r\n", SL_EINVAL},
    {"bare LF after data", "5\r\nhello\n0\r\n\r\n", SL_EINVAL},
    {"overflow", "11111111111111111\r\n", SL_EINVAL},
    {"NUL in ext", "5;a\0\r\n", SL_EINVAL},
    {"LF in ext", "5;a\nhello", SL_EINVAL},
    {"ext too long", "5;0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
     SL_ETOOBIG},
    {"many leading zeros",
     "00000000000000000000000000000000000000000000000000000000000000000000000005\r\n", SL_ETOOBIG},
    {"trailer obs-fold", "0\r\nX: a\r\n b\r\n\r\n", SL_EINVAL},
    {"trailer space before colon", "0\r\nX : a\r\n\r\n", SL_EINVAL},
    {"trailer bare LF", "0\r\nX: a\n\r\n", SL_EINVAL},
    {"final bare LF", "0\r\n\n", SL_EINVAL},
    {"final CR junk", "0\r\n\rx", SL_EINVAL},
    {"trailer too big",
     "0\r\nX: 0123456789012345678901234567890123456789\r\nY: "
     "0123456789012345678901234567890\r\n\r\n",
     SL_ETOOBIG},
};

START_TEST(test_bad)
{
    sink_t s;
    sl_h1_chunked_t d;
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        const bad_t *b = &bad[i];
        /* sizeof, not strlen: one vector carries a NUL. */
        size_t len = strlen(b->in);
        if (strcmp(b->name, "NUL in ext") == 0)
            len = 6;
        ssize_t r = decode_all(b->in, len, 64, &s, &d);
        ck_assert_msg(r == b->want, "%s: got %zd want %zd", b->name, r, b->want);
        ck_assert(!d.done);
    }
}
END_TEST

START_TEST(test_large_sizes)
{
    sink_t s;
    sl_h1_chunked_t d;
    /* 16 hex digits fit; the caller applies its own body limit. */
    ck_assert_int_eq(decode_all("ffffffffffffffff\r\nab", 20, 64, &s, &d), 20);
    ck_assert(d.remaining == UINT64_MAX - 2);
    ck_assert_uint_eq(s.len, 2);
    ck_assert_int_eq(decode_all("10000000000000000\r\n", 19, 64, &s, &d), SL_EINVAL);
}
END_TEST

/* Trailer fields, kept when asked, whatever the split: names folded,
 * values trimmed and NUL-terminated, one after the other. */
START_TEST(test_trailers_kept)
{
    static const char in[] = "3\r\nabc\r\n0\r\nGrpc-Status: 0 \r\nX-Sum:\tab12\r\nE:\r\n\r\n";
    size_t len = sizeof(in) - 1;
    for (size_t cut = 0; cut <= len; cut++) {
        sl_pool_t pool;
        sl_pool_init(&pool);
        sl_headers_t t = {0};
        sl_h1_chunked_t d;
        sink_t s = {.len = 0};
        sl_h1_chunked_init(&d, 64);
        d.trailers = &t;
        d.pool = &pool;
        ssize_t a = sl_h1_chunked_decode(&d, (const uint8_t *)in, cut, collect, &s);
        ck_assert_int_eq(a, (ssize_t)cut);
        ssize_t b = sl_h1_chunked_decode(&d, (const uint8_t *)in + cut, len - cut, collect, &s);
        ck_assert_int_eq(b, (ssize_t)(len - cut));
        ck_assert(d.done);
        ck_assert_uint_eq(t.n, 3);
        ck_assert_str_eq(t.v[0].name.p, "grpc-status");
        ck_assert_str_eq(t.v[0].value.p, "0");
        ck_assert_str_eq(t.v[1].name.p, "x-sum");
        ck_assert_str_eq(t.v[1].value.p, "ab12");
        ck_assert_uint_eq(t.v[2].value.n, 0);
        ck_assert_str_eq(t.v[2].name.p, "e");
        sl_pool_dispose(&pool);
    }
    /* The bound holds with fields kept: 64 bytes, not one more. */
    sl_pool_t pool;
    sl_pool_init(&pool);
    sl_headers_t t = {0};
    sl_h1_chunked_t d;
    sink_t s = {.len = 0};
    char big[200];
    int n = snprintf(big, sizeof(big), "0\r\nX: %s\r\n\r\n", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    sl_h1_chunked_init(&d, 64);
    d.trailers = &t;
    d.pool = &pool;
    ck_assert_int_eq(sl_h1_chunked_decode(&d, (const uint8_t *)big, (size_t)n, collect, &s),
                     SL_ETOOBIG);
    sl_pool_dispose(&pool);
}
END_TEST

START_TEST(test_ext_bound_per_line)
{
    sink_t s;
    sl_h1_chunked_t d;
    /* Each size line has its own budget: many short extensions are fine. */
    char buf[2048];
    size_t n = 0;
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "1;ext=%02d\r\nx\r\n", i);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "0\r\n\r\n");
    ck_assert_int_eq(decode_all(buf, n, 16, &s, &d), (ssize_t)n);
    ck_assert_uint_eq(s.len, 40);
}
END_TEST

static Suite *chunked_suite(void)
{
    Suite *s = suite_create("h1_chunked");
    TCase *tc = sl_test_tcase("chunked");
    tcase_set_timeout(tc, 20); /* every split of every vector */
    tcase_add_test(tc, test_good_split_everywhere);
    tcase_add_test(tc, test_bad);
    tcase_add_test(tc, test_large_sizes);
    tcase_add_test(tc, test_ext_bound_per_line);
    tcase_add_test(tc, test_trailers_kept);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(chunked_suite());
}
