/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for the HTTP/1.1 head parser (src/h1/parse.c): a table of
 * request-smuggling and limit vectors with the expected answer, good
 * requests split at every byte, and response heads for the proxy.
 */
#include "h1/h1_int.h"
#include "../helpers.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#define MAXH 16

static const sl_h1_limits_t lim = {.max_uri = 64, .max_head = 1024, .max_headers = 10};
static sl_header_t hdrs[MAXH];
static sl_h1_head_t head;

static sl_h1_parse_status_t preq(const char *s, size_t len, size_t *consumed)
{
    memset(&head, 0, sizeof(head));
    head.headers = hdrs;
    head.max_headers = MAXH;
    return sl_h1_parse_request((const uint8_t *)s, len, &lim, &head, consumed);
}

static sl_h1_parse_status_t pres(const char *s, size_t len, size_t *consumed)
{
    memset(&head, 0, sizeof(head));
    head.headers = hdrs;
    head.max_headers = MAXH;
    return sl_h1_parse_response((const uint8_t *)s, len, &lim, &head, consumed);
}

typedef struct vec {
    const char *name;
    const char *in;
    size_t len; /* 0: strlen */
    int want;
} vec_t;

#define H "GET / HTTP/1.1\r\nHost: a\r\n"
#define P "POST / HTTP/1.1\r\nHost: a\r\n"

static const vec_t bad[] = {
    {"CL+TE", P "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400},
    {"TE+CL", P "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 0, 400},
    {"CL,CL differing", P "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 0, 400},
    {"CL list 1,2", P "Content-Length: 1,2\r\n\r\n", 0, 400},
    {"CL list empty elem", P "Content-Length: 5,\r\n\r\n", 0, 400},
    {"CL negative", P "Content-Length: -1\r\n\r\n", 0, 400},
    {"CL plus", P "Content-Length: +5\r\n\r\n", 0, 400},
    {"CL hex", P "Content-Length: 0x5\r\n\r\n", 0, 400},
    {"CL trailing junk", P "Content-Length: 5a\r\n\r\n", 0, 400},
    {"CL inner space", P "Content-Length: 5 5\r\n\r\n", 0, 400},
    {"CL empty", P "Content-Length:\r\n\r\n", 0, 400},
    {"CL overflow", P "Content-Length: 99999999999999999999\r\n\r\n", 0, 400},
    {"space before TE", P " Transfer-Encoding: chunked\r\n\r\n", 0, 400},
    {"space before colon", P "Transfer-Encoding : chunked\r\n\r\n", 0, 400},
    {"tab before colon", P "Content-Length\t: 5\r\n\r\n", 0, 400},
    {"TE chunked, identity", P "Transfer-Encoding: chunked, identity\r\n\r\n", 0, 400},
    {"TE identity", P "Transfer-Encoding: identity\r\n\r\n", 0, 400},
    {"TE empty", P "Transfer-Encoding: \r\n\r\n", 0, 400},
    {"TE chunked twice", P "Transfer-Encoding: chunked, chunked\r\n\r\n", 0, 400},
    {"TE two fields", P "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400},
    {"TE gzip, chunked", P "Transfer-Encoding: gzip, chunked\r\n\r\n", 0, 501},
    {"TE unknown, chunked", P "Transfer-Encoding: foo, chunked\r\n\r\n", 0, 501},
    {"TE bad token", P "Transfer-Encoding: \"chunked\"\r\n\r\n", 0, 400},
    {"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400},
    {"obs-fold", H "X-A: b\r\n c\r\n\r\n", 0, 400},
    {"obs-fold tab", H "X-A: b\r\n\tc\r\n\r\n", 0, 400},
    {"bare CR in value", H "X-A: b\rc\r\n\r\n", 0, 400},
    {"bare CR in line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"bare CR end of line", "GET / HTTP/1.1\rHost: a\r\n\r\n", 0, 400},
    {"bare CR end of head", H "\rx", 0, 400},
    {"bare LF everywhere", "GET / HTTP/1.1\nHost: a\n\n", 0, 400},
    {"bare LF in fields", "GET / HTTP/1.1\r\nHost: a\n\r\n", 0, 400},
    {"bare LF end of head", H "\n", 0, 400},
    {"NUL in value", H "X-A: b\0c\r\n\r\n", sizeof(H "X-A: b\0c\r\n\r\n") - 1, 400},
    {"NUL in target", "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n",
     sizeof("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n") - 1, 400},
    {"NUL in method", "G\0T / HTTP/1.1\r\nHost: a\r\n\r\n",
     sizeof("G\0T / HTTP/1.1\r\nHost: a\r\n\r\n") - 1, 400},
    {"NUL in name", H "X\0A: b\r\n\r\n", sizeof(H "X\0A: b\r\n\r\n") - 1, 400},
    {"DEL in value", H "X-A: b\x7f\r\n\r\n", 0, 400},
    {"CTL in value", H "X-A: b\x01\r\n\r\n", 0, 400},
    {"space in name", H "X A: b\r\n\r\n", 0, 400},
    {"empty name", H ": b\r\n\r\n", 0, 400},
    {"no colon", H "X-A\r\n\r\n", 0, 400},
    {"bad name char", H "X(A): b\r\n\r\n", 0, 400},
    {"method paren", "G(ET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"method tab", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"method empty", " / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"target obs-text", "GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"no version", "GET /\r\nHost: a\r\n\r\n", 0, 400},
    {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 0, 505},
    {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, 505},
    {"HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 0, 505},
    {"HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 0, 505},
    {"PRI preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, 505},
    {"version lowercase", "GET / http/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"not HTTP at all", "INVALID CONNECTION PREFACE\r\n\r\n", 0, SL_H1_NOT_HTTP},
    {"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
    {"version 11", "GET / HTTP/11\r\nHost: a\r\n\r\n", 0, 400},
    {"version 1.10", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 0, 400},
    {"version short", "GET / HTTP/1\r\nHost: a\r\n\r\n", 0, 400},
    {"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 0, 400},
    {"missing Host", "GET / HTTP/1.1\r\n\r\n", 0, 400},
    {"two Host", H "Host: b\r\n\r\n", 0, 400},
    {"two Host 1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 0, 400},
    {"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 0, 400},
    {"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 0, 400},
    {"Host with at", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 0, 400},
    {"long target",
     "GET /0123456789012345678901234567890123456789012345678901234567890123456789 HTTP/1.1\r\n"
     "Host: a\r\n\r\n",
     0, 414},
    {"many headers",
     H "a: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\ne: 1\r\nf: 1\r\ng: 1\r\nh: 1\r\ni: 1\r\nj: 1\r\n\r\n", 0,
     431},
};

START_TEST(test_bad_vectors)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        const vec_t *v = &bad[i];
        size_t len = v->len ? v->len : strlen(v->in), c = 0;
        int st = preq(v->in, len, &c);
        ck_assert_msg(st == v->want, "%s: got %d want %d", v->name, st, v->want);
        ck_assert_msg(head.error != NULL, "%s: no error text", v->name);
        /* No prefix of a refused head may be accepted. */
        for (size_t k = 0; k < len; k++) {
            st = preq(v->in, k, &c);
            ck_assert_msg(st == SL_H1_INCOMPLETE || st == v->want, "%s: prefix %zu gave %d",
                          v->name, k, st);
        }
    }
}
END_TEST

typedef struct good {
    const char *name;
    const char *in;
    const char *method, *target, *host;
    int minor;
    int64_t cl;
    int chunked, keep_alive, expect, upgrade;
    size_t nheaders;
} good_t;

static const good_t good[] = {
    {"simple", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", "a", 1, -1, 0, 1, 0, 0, 1},
    {"1.0", "GET /x?y=1 HTTP/1.0\r\n\r\n", "GET", "/x?y=1", "", 0, -1, 0, 0, 0, 0, 0},
    {"1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "GET", "/", "", 0, -1, 0,
     1, 0, 0, 1},
    {"close", "GET / HTTP/1.1\r\nHost: a:80\r\nConnection: foo, close\r\n\r\n", "GET", "/", "a:80",
     1, -1, 0, 0, 0, 0, 2},
    {"cl", P "Content-Length: 5\r\n\r\n", "POST", "/", "a", 1, 5, 0, 1, 0, 0, 2},
    {"cl same twice", P "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", "POST", "/", "a", 1, 5, 0,
     1, 0, 0, 3},
    {"cl list same", P "Content-Length: 7, 7\r\n\r\n", "POST", "/", "a", 1, 7, 0, 1, 0, 0, 2},
    {"te chunked", P "Transfer-Encoding: Chunked\r\n\r\n", "POST", "/", "a", 1, -1, 1, 1, 0, 0, 2},
    {"expect", P "Content-Length: 1\r\nExpect: 100-Continue\r\n\r\n", "POST", "/", "a", 1, 1, 0, 1,
     1, 0, 3},
    {"expect 1.0 ignored", "POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n",
     "POST", "/", "", 0, 1, 0, 0, 0, 0, 2},
    {"upgrade",
     "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
     "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
     "GET", "/", "a", 1, -1, 0, 1, 0, 1, 4},
    {"upgrade without connection", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n", "GET", "/",
     "a", 1, -1, 0, 1, 0, 0, 2},
    {"leading CRLF", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", "a", 1, -1, 0, 1, 0,
     0, 1},
    {"ows and obs-text", "GET * HTTP/1.1\r\nHost: a\r\nX-A:\t  v\xff v \t\r\nX-B:\r\n\r\n", "GET",
     "*", "a", 1, -1, 0, 1, 0, 0, 3},
    {"absolute-form", "OPTIONS http://a.b:8080/x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "OPTIONS",
     "http://a.b:8080/x", "[::1]:8080", 1, -1, 0, 1, 0, 0, 1},
    {"max headers",
     H "a: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\ne: 1\r\nf: 1\r\ng: 1\r\nh: 1\r\ni: 1\r\n\r\n", "GET", "/",
     "a", 1, -1, 0, 1, 0, 0, 10},
    {"max target",
     "GET /012345678901234567890123456789012345678901234567890123456789012 HTTP/1.1\r\n"
     "Host: a\r\n\r\n",
     "GET", "/012345678901234567890123456789012345678901234567890123456789012", "a", 1, -1, 0, 1, 0,
     0, 1},
};

/* sl_str_eq, but an empty expectation also matches {NULL, 0}. */
static int str_is(sl_str_t s, const char *lit)
{
    return lit[0] == '\0' ? s.n == 0 : sl_str_eq(s, lit);
}

static void check_good(const good_t *g, size_t len)
{
    ck_assert_str_eq(head.error ? head.error : "", "");
    ck_assert_msg(str_is(head.method, g->method), "%s: method", g->name);
    ck_assert_msg(str_is(head.target, g->target), "%s: target", g->name);
    ck_assert_msg(str_is(head.host, g->host), "%s: host", g->name);
    ck_assert_int_eq(head.version_minor, g->minor);
    ck_assert_int_eq(head.content_length, g->cl);
    ck_assert_int_eq(head.chunked, g->chunked);
    ck_assert_msg(head.keep_alive == (unsigned)g->keep_alive, "%s: keep_alive", g->name);
    ck_assert_int_eq(head.expect_continue, g->expect);
    ck_assert_int_eq(head.upgrade, g->upgrade);
    ck_assert_msg(head.nheaders == g->nheaders, "%s: nheaders %zu", g->name, head.nheaders);
    SL_UNUSED(len);
}

START_TEST(test_good_split_everywhere)
{
    char buf[1024];
    for (size_t i = 0; i < SL_ARRAY_LEN(good); i++) {
        const good_t *g = &good[i];
        size_t len = strlen(g->in), c = 0;
        for (size_t k = 0; k < len; k++) {
            int st = preq(g->in, k, &c);
            ck_assert_msg(st == SL_H1_INCOMPLETE, "%s: prefix %zu gave %d (%s)", g->name, k, st,
                          head.error ? head.error : "");
        }
        int st = preq(g->in, len, &c);
        ck_assert_msg(st == SL_H1_OK, "%s: got %d (%s)", g->name, st, head.error);
        ck_assert_uint_eq(c, len);
        check_good(g, len);
        /* Pipelined: the next request's bytes do not change the result. */
        snprintf(buf, sizeof(buf), "%sGET /next HTTP/1.1\r\n", g->in);
        st = preq(buf, strlen(buf), &c);
        ck_assert_int_eq(st, SL_H1_OK);
        ck_assert_uint_eq(c, len);
        check_good(g, len);
    }
}
END_TEST

START_TEST(test_headers_as_received)
{
    const char *s = "GET / HTTP/1.1\r\nHOST: a\r\nX-Mixed-Case:  v w  \r\n\r\n";
    size_t c;
    ck_assert_int_eq(preq(s, strlen(s), &c), SL_H1_OK);
    ck_assert_uint_eq(head.nheaders, 2);
    ck_assert(sl_str_eq(head.headers[0].name, "HOST"));
    ck_assert(sl_str_eq(head.headers[1].name, "X-Mixed-Case"));
    ck_assert(sl_str_eq(head.headers[1].value, "v w"));
}
END_TEST

START_TEST(test_limits_while_incomplete)
{
    size_t c;
    char buf[2048];
    /* A long target is refused before its end arrives. */
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "GET /", 5);
    ck_assert_int_eq(preq(buf, 5 + 63, &c), SL_H1_INCOMPLETE);
    ck_assert_int_eq(preq(buf, 5 + 64, &c), SL_H1_URI_TOO_LONG);
    /* A head that outgrows max_head is refused without its end. */
    int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(buf + n, 'v', sizeof(buf) - (size_t)n);
    ck_assert_int_eq(preq(buf, 1023, &c), SL_H1_INCOMPLETE);
    ck_assert_int_eq(preq(buf, 1024, &c), SL_H1_HEADERS_TOO_LARGE);
    /* ... and so is a complete one. */
    memcpy(buf + 1100, "\r\n\r\n", 4);
    ck_assert_int_eq(preq(buf, 1104, &c), SL_H1_HEADERS_TOO_LARGE);
    /* The field count is checked as each line completes. */
    n = snprintf(buf, sizeof(buf), H);
    for (int i = 0; i < 9; i++)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "x%d: y\r\n", i);
    ck_assert_int_eq(preq(buf, (size_t)n, &c), SL_H1_INCOMPLETE);
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, "z: y\r\n");
    ck_assert_int_eq(preq(buf, (size_t)n, &c), SL_H1_HEADERS_TOO_LARGE);
}
END_TEST

START_TEST(test_response)
{
    size_t c;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    size_t hl = strlen(s) - 5;
    for (size_t k = 0; k < hl; k++)
        ck_assert_int_eq(pres(s, k, &c), SL_H1_INCOMPLETE);
    ck_assert_int_eq(pres(s, strlen(s), &c), SL_H1_OK);
    ck_assert_uint_eq(c, hl);
    ck_assert_int_eq(head.status, 200);
    ck_assert(sl_str_eq(head.reason, "OK"));
    ck_assert_int_eq(head.content_length, 5);
    ck_assert_int_eq(head.keep_alive, 1);

    s = "HTTP/1.1 100 Continue\r\n\r\n";
    ck_assert_int_eq(pres(s, strlen(s), &c), SL_H1_OK);
    ck_assert_int_eq(head.status, 100);
    ck_assert(sl_str_eq(head.reason, "Continue"));

    s = "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n";
    ck_assert_int_eq(pres(s, strlen(s), &c), SL_H1_OK);
    ck_assert_int_eq(head.status, 103);
    ck_assert(sl_str_eq(head.reason, "Early Hints"));

    s = "HTTP/1.0 200 OK\r\nServer: x\r\n\r\n";
    ck_assert_int_eq(pres(s, strlen(s), &c), SL_H1_OK);
    ck_assert_int_eq(head.content_length, -1);
    ck_assert_int_eq(head.chunked, 0);
    ck_assert_int_eq(head.keep_alive, 0);
    ck_assert_int_eq(head.version_minor, 0);

    s = "HTTP/1.1 204\r\n\r\n";
    ck_assert_int_eq(pres(s, strlen(s), &c), SL_H1_OK);
    ck_assert_int_eq(head.status, 204);
    ck_assert_uint_eq(head.reason.n, 0);

    s = "HTTP/1.1 200 \r\nTransfer-Encoding: chunked\r\n\r\n";
    ck_assert_int_eq(pres(s, strlen(s), &c), SL_H1_OK);
    ck_assert_int_eq(head.chunked, 1);
    ck_assert_int_eq(head.keep_alive, 1);

    s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
    ck_assert_int_eq(pres(s, strlen(s), &c), SL_H1_OK);
    ck_assert_int_eq(head.chunked, 0);
    ck_assert_int_eq(head.keep_alive, 0); /* close-delimited */

    s = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    ck_assert_int_eq(pres(s, strlen(s), &c), SL_H1_OK);
    ck_assert_int_eq(head.keep_alive, 0);
    ck_assert_int_eq(head.content_length, 0);

    static const char *const rbad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 OK\r\n\r\n",
        "HTTP/1.1 200 OK\nServer: x\r\n\r\n",
        "HTTP/1.1 200 O\rK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(rbad); i++)
        ck_assert_msg(pres(rbad[i], strlen(rbad[i]), &c) == SL_H1_BAD, "rbad %zu", i);
}
END_TEST

START_TEST(test_base64url)
{
    uint8_t out[32];
    /* curl's HTTP2-Settings for its default settings. */
    const char *s = "AAMAAABkAAQAoAAAAAIAAAAA";
    ssize_t n = sl_base64url_decode(s, strlen(s), out, sizeof(out));
    ck_assert_int_eq(n, 18);
    ck_assert_int_eq(out[1], 3);
    ck_assert_int_eq(out[5], 0x64);
    ck_assert_int_eq(sl_base64url_decode("_-8", 3, out, sizeof(out)), 2);
    ck_assert_int_eq(out[0], 0xff);
    ck_assert_int_eq(out[1], 0xef);
    ck_assert_int_eq(sl_base64url_decode("AA==", 4, out, sizeof(out)), 1);
    ck_assert_int_eq(sl_base64url_decode("A", 1, out, sizeof(out)), -1);
    ck_assert_int_eq(sl_base64url_decode("AA+A", 4, out, sizeof(out)), -1);
    ck_assert_int_eq(sl_base64url_decode("AAAA", 4, out, 2), -1);
    ck_assert_int_eq(sl_base64url_decode("", 0, out, sizeof(out)), 0);
}
END_TEST

static Suite *parse_suite(void)
{
    Suite *s = suite_create("h1_parse");
    TCase *tc = sl_test_tcase("parse");
    tcase_set_timeout(tc, 20); /* every split of every vector */
    tcase_add_test(tc, test_bad_vectors);
    tcase_add_test(tc, test_good_split_everywhere);
    tcase_add_test(tc, test_headers_as_received);
    tcase_add_test(tc, test_limits_while_incomplete);
    tcase_add_test(tc, test_response);
    tcase_add_test(tc, test_base64url);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(parse_suite());
}
