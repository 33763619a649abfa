/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/fields.c's response head: names lower-cased,
 * connection-specific fields dropped, date, content-length and server
 * added once, and fields added with SL_RESP_HEADER_PLAIN passed through
 * as they are, in their place among the others; 1xx heads and trailers
 * lower-cased without connection-specific fields; every field carries the
 * caller's flags.
 */
#include "config.h"
#include "fields.h"
#include "helpers.h"
#include "req.h"
#include <check.h>

static char server_name[] = "sluice";
static sl_config_t cfg = {.server_name = server_name};

static void req_new(sl_req_t *req)
{
    sl_req_init(req, SL_PROTO_H2, NULL);
    req->cfg = &cfg;
}

static int is(const sl_nv_t *f, const char *name, const char *value)
{
    sl_str_t n = {(const char *)f->name, f->namelen}, v = {(const char *)f->value, f->valuelen};
    return sl_str_eq(n, name) && (!value || sl_str_eq(v, value));
}

static int has(const sl_nv_t *f, size_t n, const char *name, const char *value)
{
    for (size_t i = 0; i < n; i++)
        if (is(&f[i], name, value))
            return 1;
    return 0;
}

START_TEST(head_checks_fields_others_added)
{
    sl_req_t req;
    sl_nv_t f[16];
    char status[4], clen[24];
    req_new(&req);
    sl_resp_header_add(&req, "X-Mixed", "1");
    sl_resp_header_add(&req, "Connection", "close");
    sl_resp_header_add(&req, "content-length", "99");
    req.res.content_length = 13;
    size_t n = sl_fields_response(&req, 0, f, 0x6, status, clen);
    ck_assert_int_eq(n, 5); /* :status, x-mixed, date, content-length, server */
    ck_assert(has(f, n, ":status", "200"));
    ck_assert(has(f, n, "x-mixed", "1"));
    ck_assert(!has(f, n, "connection", NULL));
    ck_assert(has(f, n, "content-length", "13"));
    ck_assert(has(f, n, "server", "sluice"));
    ck_assert(has(f, n, "date", NULL));
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(f[i].flags, 0x6); /* the caller's library flags */
    sl_req_dispose(&req);
}
END_TEST

START_TEST(informational_and_trailers_checked)
{
    sl_req_t req;
    sl_headers_t hints = {0};
    sl_nv_t f[8];
    char code[4];
    req_new(&req);
    sl_headers_add(&req.pool, &hints, "Link", 4, "</a.css>", 8);
    sl_headers_add(&req.pool, &hints, "Keep-Alive", 10, "5", 1);
    size_t n = sl_fields_informational(&req, 103, &hints, f, 0, code);
    ck_assert_int_eq(n, 2);
    ck_assert(is(&f[0], ":status", "103"));
    ck_assert(is(&f[1], "link", "</a.css>"));
    sl_resp_trailer_add(&req, "Grpc-Status", "0");
    sl_resp_trailer_add(&req, "TE", "trailers");
    n = sl_fields_trailers(&req, f, 0x2);
    ck_assert_int_eq(n, 1);
    ck_assert(is(&f[0], "grpc-status", "0"));
    ck_assert_uint_eq(f[0].flags, 0x2);
    sl_req_dispose(&req);
}
END_TEST

START_TEST(plain_fields_pass_as_they_are)
{
    sl_req_t req;
    sl_nv_t f[40];
    char status[4], clen[24];
    req_new(&req);
    SL_RESP_HEADER_PLAIN(&req, "etag", "\"a\"", 3);
    sl_resp_header_add(&req, "Cache-Control", "no-cache");
    SL_RESP_HEADER_PLAIN(&req, "content-type", "text/plain", 10);
    size_t n = sl_fields_response(&req, 0, f, 0, status, clen);
    ck_assert_int_eq(n, 6); /* :status, the three, date, server */
    ck_assert(is(&f[1], "etag", "\"a\""));
    ck_assert(is(&f[2], "cache-control", NULL)); /* still lower-cased */
    ck_assert(is(&f[3], "content-type", NULL));
    ck_assert_uint_eq(req.res.plain, 0x5); /* fields 0 and 2 */
    sl_req_dispose(&req);

    /* Past 32 fields nothing is marked: they take the checks. */
    req_new(&req);
    for (int i = 0; i < 34; i++)
        SL_RESP_HEADER_PLAIN(&req, "x-many", "v", 1);
    ck_assert_uint_eq(req.res.plain, 0xffffffffu);
    ck_assert(!sl_resp_header_is_plain(&req, 32));
    ck_assert(!sl_resp_header_is_plain(&req, 33));
    n = sl_fields_response(&req, 0, f, 0, status, clen);
    ck_assert_int_eq(n, 37);
    sl_req_dispose(&req);
}
END_TEST

static Suite *fields_suite(void)
{
    Suite *s = suite_create("fields");
    TCase *tc = sl_test_tcase("core");
    tcase_add_test(tc, head_checks_fields_others_added);
    tcase_add_test(tc, plain_fields_pass_as_they_are);
    tcase_add_test(tc, informational_and_trailers_checked);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(fields_suite());
}
