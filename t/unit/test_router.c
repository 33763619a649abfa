/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/router.c: sl_router_match over a route table loaded
 * from config: exact and prefix matches, first match in file order, host
 * patterns ("name", "*.suffix", with and without a port), and no match.
 */
#include "config.h"
#include "router.h"
#include "helpers.h"
#include <check.h>

static void on_req(sl_req_t *req)
{
    (void)req;
}

static const sl_handler_def_t r_handler = {.name = "r_test", .on_req = on_req};

static sl_config_t *load(void)
{
    char err[512];
    static const char json[] =
        "{\"listen\": [{\"addr\": \"127.0.0.1:0\"}], \"routes\": ["
        "{\"path\": \"/api/admin\", \"handler\": \"r_test\"},"
        "{\"path\": \"/api/\", \"handler\": \"r_test\"},"
        "{\"path\": \"/exact\", \"match\": \"exact\", \"handler\": \"r_test\"},"
        "{\"path\": \"/\", \"host\": \"*.example.org\", \"handler\": \"r_test\"},"
        "{\"path\": \"/\", \"host\": \"Only.Example\", \"handler\": \"r_test\"},"
        "{\"path\": \"/fallback\", \"handler\": \"r_test\"}]}";
    if (!sl_router_find_handler("r_test"))
        sl_router_register(&r_handler);
    sl_router_init();
    sl_config_t *cfg = sl_config_load_string(json, "r.json", err, sizeof(err));
    ck_assert_msg(cfg != NULL, "%s", err);
    return cfg;
}

/* Index of the matched route, -1 for none. */
static int match(const sl_config_t *cfg, const char *host, const char *path)
{
    const sl_route_t *r =
        sl_router_match(cfg, (sl_str_t){host, strlen(host)}, (sl_str_t){path, strlen(path)});
    return r ? r->index : -1;
}

START_TEST(test_match)
{
    sl_config_t *cfg = load();
    ck_assert_int_eq(match(cfg, "x", "/api/admin"), 0);
    ck_assert_int_eq(match(cfg, "x", "/api/admin/users"), 0); /* prefix */
    ck_assert_int_eq(match(cfg, "x", "/api/other"), 1);       /* first match wins */
    ck_assert_int_eq(match(cfg, "x", "/api"), -1);            /* "/api/" is the prefix */
    ck_assert_int_eq(match(cfg, "x", "/exact"), 2);
    ck_assert_int_eq(match(cfg, "x", "/exact/more"), -1);
    ck_assert_int_eq(match(cfg, "a.example.org", "/x"), 3);
    ck_assert_int_eq(match(cfg, "a.b.example.org:8443", "/x"), 3);
    ck_assert_int_eq(match(cfg, "example.org", "/x"), -1); /* "*." needs a label */
    ck_assert_int_eq(match(cfg, "only.example:80", "/x"), 4);
    ck_assert_int_eq(match(cfg, "ONLY.EXAMPLE", "/x"), 4);
    ck_assert_int_eq(match(cfg, "other", "/fallback"), 5);
    ck_assert_int_eq(match(cfg, "other", "/nothing"), -1);
    sl_config_free(cfg);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("router");
    TCase *tc = sl_test_tcase("match");
    tcase_add_test(tc, test_match);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(suite());
}
