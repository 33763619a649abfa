/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/fields.c's response head: names lower-cased,
 * connection-specific fields dropped, date, content-length and server
 * added once, and fields added with SL_RESP_HEADER_PLAIN passed through
 * as they are, in their place among the others.
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

static int has(const sl_header_t *f, size_t n, const char *name, const char *value)
{
    for (size_t i = 0; i < n; i++)
        if (sl_str_eq(f[i].name, name) && (!value || sl_str_eq(f[i].value, value)))
            return 1;
    return 0;
}

START_TEST(head_checks_fields_others_added)
{
    sl_req_t req;
    sl_header_t f[16];
    char status[4], clen[24];
    req_new(&req);
    sl_resp_header_add(&req, "X-Mixed", "1");
    sl_resp_header_add(&req, "Connection", "close");
    sl_resp_header_add(&req, "content-length", "99");
    req.res.content_length = 13;
    size_t n = sl_fields_response(&req, 0, f, status, clen);
    ck_assert_int_eq(n, 5); /* :status, x-mixed, date, content-length, server */
    ck_assert(has(f, n, ":status", "200"));
    ck_assert(has(f, n, "x-mixed", "1"));
    ck_assert(!has(f, n, "connection", NULL));
    ck_assert(has(f, n, "content-length", "13"));
    ck_assert(has(f, n, "server", "sluice"));
    ck_assert(has(f, n, "date", NULL));
    sl_req_dispose(&req);
}
END_TEST

START_TEST(plain_fields_pass_as_they_are)
{
    sl_req_t req;
    sl_header_t f[40];
    char status[4], clen[24];
    req_new(&req);
    SL_RESP_HEADER_PLAIN(&req, "etag", "\"a\"", 3);
    sl_resp_header_add(&req, "Cache-Control", "no-cache");
    SL_RESP_HEADER_PLAIN(&req, "content-type", "text/plain", 10);
    size_t n = sl_fields_response(&req, 0, f, status, clen);
    ck_assert_int_eq(n, 6); /* :status, the three, date, server */
    ck_assert(sl_str_eq(f[1].name, "etag"));
    ck_assert(sl_str_eq(f[1].value, "\"a\""));
    ck_assert(sl_str_eq(f[2].name, "cache-control")); /* still lower-cased */
    ck_assert(sl_str_eq(f[3].name, "content-type"));
    ck_assert_uint_eq(req.res.plain, 0x5); /* fields 0 and 2 */
    sl_req_dispose(&req);

    /* Past 32 fields nothing is marked: they take the checks. */
    req_new(&req);
    for (int i = 0; i < 34; i++)
        SL_RESP_HEADER_PLAIN(&req, "x-many", "v", 1);
    ck_assert_uint_eq(req.res.plain, 0xffffffffu);
    ck_assert(!sl_resp_header_is_plain(&req, 32));
    ck_assert(!sl_resp_header_is_plain(&req, 33));
    n = sl_fields_response(&req, 0, f, status, clen);
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
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(fields_suite());
}
