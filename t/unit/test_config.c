/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/config.c: a full valid file, the documented defaults,
 * every error class with the exact JSON path in its message, syntax errors
 * with file:line:col, bounds, SLUICE_* environment overrides and the
 * sl_conf_get_* helpers used by handlers.
 */
#include "config.h"
#include "router.h"
#include "helpers.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <unistd.h>

#ifndef SRCDIR
#define SRCDIR "" /* tests run from the top of the tree */
#endif

#define LISTEN "\"listen\": [{\"addr\": \"127.0.0.1:0\"}]"

static char err[512];

/* A route handler for the tests: option "n" (0..10, default 3). */
static int t_configure(json_t *route, const char *path, void **state, char *e, size_t elen)
{
    int64_t n;
    if (sl_conf_get_int(route, path, "n", 3, 0, 10, &n, e, elen))
        return SL_EINVAL;
    int64_t *s = sl_malloc(sizeof(*s));
    *s = n;
    *state = s;
    return 0;
}

static void t_on_req(sl_req_t *req)
{
    SL_UNUSED(req);
}

static const sl_handler_def_t t_handler = {
    .name = "t_test", .configure = t_configure, .free_state = sl_free, .on_req = t_on_req};

static const char *const env_names[] = {"SLUICE_WORKERS", "SLUICE_LOG_LEVEL", "SLUICE_ACCESS_LOG",
                                        "SLUICE_LISTEN",  "SLUICE_TLS_CERT",  "SLUICE_TLS_KEY"};

/* Runs before the allocation fixture takes its baseline. */
static void setup(void)
{
    /* The caller's environment must not leak into the expectations. */
    for (size_t i = 0; i < SL_ARRAY_LEN(env_names); i++)
        unsetenv(env_names[i]);
    if (!sl_router_find_handler("t_test"))
        sl_router_register(&t_handler);
    sl_router_init();
    err[0] = '\0';
}

static sl_config_t *load(const char *json)
{
    return sl_config_load_string(json, "t.json", err, sizeof(err));
}

/* Loading must fail with a message that starts with want. */
static void expect_error(const char *json, const char *want)
{
    sl_config_t *cfg = load(json);
    ck_assert_msg(cfg == NULL, "loaded, expected error \"%s\"\n  config: %s", want, json);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "error \"%s\"\n  expected \"%s\"", err,
                  want);
    ck_assert_int_eq(sl_alloc_count(), sl_test_alloc_baseline);
}

START_TEST(test_valid_file)
{
    static const char text[] =
        "{\n"
        "  \"workers\": 3,\n"
        "  \"access_log\": false,\n"
        "  \"log_level\": \"debug\",\n"
        "  \"server_name\": \"edge/1\",\n"
        "  \"drain_timeout_s\": 5.5,\n"
        "  \"listen\": [\n"
        "    {\"addr\": \"[::]:8443\", \"backlog\": 1024,\n"
        "     \"tls\": {\"certs\": [{\"cert\": \"a.pem\", \"key\": \"a.key\",\n"
        "                          \"names\": [\"A.Example\", \"*.b.example\"]},\n"
        "                         {\"cert\": \"c.pem\", \"key\": \"c.key\"}],\n"
        "              \"ciphers\": \"ECDHE+AESGCM\", \"min_version\": \"TLSv1.3\",\n"
        "              \"session_tickets\": false, \"self_signed\": true}},\n"
        "    {\"addr\": \"0.0.0.0:8080\", \"h2c\": false},\n"
        "    {\"addr\": \"127.0.0.1:0\", \"tls\": {\"cert\": \"d.pem\", \"key\": \"d.key\"}}\n"
        "  ],\n"
        "  \"limits\": {\"h2_max_concurrent_streams\": 250, \"max_body_bytes\": 0,\n"
        "             \"h2_max_frame_size\": 16777215, \"h2_initial_window\": 2147483647},\n"
        "  \"timeouts\": {\"stream_idle_s\": 0, \"h1_header_s\": 2.5},\n"
        "  \"routes\": [{\"path\": \"/a\", \"handler\": \"t_test\", \"n\": 7},\n"
        "             {\"path\": \"/\", \"handler\": \"t_test\"}]\n"
        "}\n";
    char path[] = "/tmp/sluice-test-config-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
    close(fd);
    sl_config_t *cfg = sl_config_load_file(path, err, sizeof(err));
    unlink(path);
    ck_assert_msg(cfg != NULL, "%s", err);

    ck_assert_str_eq(cfg->path, path);
    ck_assert_int_eq(cfg->workers, 3);
    ck_assert_int_eq(cfg->access_log, 0);
    ck_assert_str_eq(cfg->log_level, "debug");
    ck_assert_str_eq(cfg->server_name, "edge/1");
    ck_assert_double_eq(cfg->timeouts.drain_s, 5.5);
    ck_assert_double_eq(cfg->timeouts.stream_idle_s, 0);
    ck_assert_double_eq(cfg->timeouts.h1_header_s, 2.5);
    ck_assert_uint_eq(cfg->limits.h2_max_concurrent_streams, 250);
    ck_assert_int_eq(cfg->limits.max_body_bytes, 0);
    ck_assert_uint_eq(cfg->limits.h2_max_frame_size, 16777215);
    ck_assert_uint_eq(cfg->limits.h2_initial_window, 2147483647u);

    ck_assert_uint_eq(cfg->nlisteners, 3);
    ck_assert_uint_eq(cfg->ntls, 2);
    const sl_listener_cfg_t *l0 = &cfg->listeners[0], *l1 = &cfg->listeners[1];
    ck_assert_str_eq(l0->addr, "[::]:8443");
    ck_assert_int_eq(l0->ss.ss_family, AF_INET6);
    ck_assert_uint_eq(l0->sslen, sizeof(struct sockaddr_in6));
    ck_assert_int_eq(ntohs(((const struct sockaddr_in6 *)&l0->ss)->sin6_port), 8443);
    ck_assert_int_eq(l0->backlog, 1024);
    ck_assert_int_eq(l0->index, 0);
    ck_assert_ptr_eq(l0->tls, &cfg->tls_cfgs[0]);
    const sl_tls_cfg_t *t = l0->tls;
    ck_assert_uint_eq(t->ncerts, 2);
    ck_assert_str_eq(t->certs[0].cert, "a.pem");
    ck_assert_str_eq(t->certs[0].key, "a.key");
    ck_assert_uint_eq(t->certs[0].nnames, 2);
    ck_assert_str_eq(t->certs[0].names[0], "a.example"); /* lower-cased */
    ck_assert_str_eq(t->certs[0].names[1], "*.b.example");
    ck_assert_str_eq(t->certs[1].cert, "c.pem");
    ck_assert_uint_eq(t->certs[1].nnames, 0);
    ck_assert_str_eq(t->ciphers, "ECDHE+AESGCM");
    ck_assert_ptr_null(t->ciphersuites);
    ck_assert_str_eq(t->min_version, "TLSv1.3");
    ck_assert_int_eq(t->session_tickets, 0);
    ck_assert_int_eq(t->self_signed, 1);

    ck_assert_int_eq(l1->ss.ss_family, AF_INET);
    ck_assert_int_eq(ntohs(((const struct sockaddr_in *)&l1->ss)->sin_port), 8080);
    ck_assert_ptr_null(l1->tls);
    ck_assert_int_eq(l1->h2c, 0);
    ck_assert_int_eq(l1->backlog, 511);
    ck_assert_ptr_eq(cfg->listeners[2].tls, &cfg->tls_cfgs[1]);
    ck_assert_str_eq(cfg->tls_cfgs[1].certs[0].cert, "d.pem");

    size_t nroutes;
    const sl_route_t *routes = sl_router_routes(cfg, &nroutes);
    ck_assert_uint_eq(nroutes, 2);
    ck_assert_str_eq(routes[0].path, "/a");
    ck_assert_int_eq(*(int64_t *)routes[0].state, 7);
    ck_assert_int_eq(*(int64_t *)routes[1].state, 3);
    ck_assert_int_eq(routes[1].index, 1);
    ck_assert_ptr_nonnull(cfg->root);
    sl_config_free(cfg);
}
END_TEST

START_TEST(test_defaults)
{
    sl_config_t *cfg = load("{" LISTEN "}");
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_int_ge(cfg->workers, 1); /* "auto" */
    ck_assert_int_le(cfg->workers, 256);
    ck_assert_int_eq(cfg->access_log, 1);
    ck_assert_str_eq(cfg->log_level, "info");
    ck_assert_str_eq(cfg->server_name, "sluice");
    ck_assert_str_eq(cfg->path, "t.json");
    size_t nroutes;
    ck_assert_ptr_null(sl_router_routes(cfg, &nroutes));
    ck_assert_uint_eq(nroutes, 0);
    ck_assert_uint_eq(cfg->ntls, 0);
    const sl_listener_cfg_t *l = &cfg->listeners[0];
    ck_assert_int_eq(l->h2c, 1);
    ck_assert_int_eq(l->backlog, 511);
    ck_assert_ptr_null(l->tls);

    const sl_limits_t *m = &cfg->limits;
    ck_assert_uint_eq(m->h1_uri_bytes, 8192);
    ck_assert_uint_eq(m->h1_header_bytes, 65536);
    ck_assert_uint_eq(m->h1_max_headers, 100);
    ck_assert_uint_eq(m->body_window_bytes, 65536);
    ck_assert_int_eq(m->max_body_bytes, 1 << 30);
    ck_assert_uint_eq(m->conn_out_bytes, 256 * 1024);
    ck_assert_uint_eq(m->h2_max_concurrent_streams, 100);
    ck_assert_uint_eq(m->h2_initial_window, 1 << 20);
    ck_assert_uint_eq(m->h2_conn_window, 16 << 20);
    ck_assert_uint_eq(m->h2_max_frame_size, 16384);
    ck_assert_uint_eq(m->h2_header_list_bytes, 65536);
    ck_assert_uint_eq(m->h2_header_table_bytes, 4096);
    ck_assert_uint_eq(m->h2_max_continuations, 8);
    ck_assert_uint_eq(m->h2_reset_burst, 1000);
    ck_assert_uint_eq(m->h2_reset_rate, 33);
    ck_assert_uint_eq(m->h2_glitch_limit, 1000);
    ck_assert_uint_eq(m->h2_glitch_window_s, 10);
    ck_assert_uint_eq(m->h2_max_settings, 32);
    ck_assert_uint_eq(m->h2_max_outbound_ack, 1000);
    ck_assert_uint_eq(m->max_conns_per_worker, 10000);

    const sl_timeouts_t *o = &cfg->timeouts;
    ck_assert_double_eq(o->tls_handshake_s, 10);
    ck_assert_double_eq(o->h1_header_s, 10);
    ck_assert_double_eq(o->h1_keepalive_s, 75);
    ck_assert_double_eq(o->h2_idle_s, 300);
    ck_assert_double_eq(o->stream_idle_s, 300);
    ck_assert_double_eq(o->request_body_s, 60);
    ck_assert_double_eq(o->drain_s, 30);
    ck_assert_double_eq(o->linger_s, 2);
    sl_config_free(cfg);

    /* Explicit "auto", server_name null, drain via timeouts.drain_s. */
    cfg =
        load("{\"workers\": \"auto\", \"server_name\": null, \"timeouts\": {\"drain_s\": 0}," LISTEN
             "}");
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_int_eq(cfg->workers, (int)SL_MIN(SL_MAX(sysconf(_SC_NPROCESSORS_ONLN), 1), 256));
    ck_assert_ptr_null(cfg->server_name);
    ck_assert_double_eq(cfg->timeouts.drain_s, 0);
    sl_config_free(cfg);
}
END_TEST

/* One entry per error class: config text and the exact message start. */
static const struct {
    const char *json;
    const char *want;
} bad[] = {
    /* syntax: file:line:col */
    {"{\n  \"workers\": 2,\n  \"listen\": [\n    {\"addr\": \"127.0.0.1:0\",}\n  ]\n}",
     "t.json:4:"},
    {"{\n  \"workers\": 2,\n  \"workers\": 3\n}", "t.json:3:"},
    {"", "t.json:"},
    {"[1, 2]", "t.json: the top level must be a JSON object"},
    /* unknown keys at every level, with a suggestion for typos */
    {"{\"listn\": []}", "listn: unknown key (did you mean \"listen\"?)"},
    {"{" LISTEN ", \"limits\": {\"h2_max_concurent_streams\": 5}}",
     "limits.h2_max_concurent_streams: unknown key (did you mean \"h2_max_concurrent_streams\"?)"},
    {"{" LISTEN ", \"timeouts\": {\"bogus\": 5}}", "timeouts.bogus: unknown key"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"tsl\": {}}]}",
     "listen[0].tsl: unknown key (did you mean \"tls\"?)"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"tls\": {\"cert\": \"a\", \"key\": \"b\", "
     "\"cipher\": \"x\"}}]}",
     "listen[0].tls.cipher: unknown key (did you mean \"ciphers\"?)"},
    /* types */
    {"{" LISTEN ", \"limits\": []}", "limits: must be an object"},
    {"{" LISTEN ", \"limits\": {\"h1_uri_bytes\": \"big\"}}",
     "limits.h1_uri_bytes: must be an integer"},
    {"{" LISTEN ", \"limits\": {\"h1_uri_bytes\": 1024.5}}",
     "limits.h1_uri_bytes: must be an integer"},
    {"{" LISTEN ", \"timeouts\": {\"h1_header_s\": true}}",
     "timeouts.h1_header_s: must be a number (seconds)"},
    {"{" LISTEN ", \"access_log\": 1}", "access_log: must be true, false, \"stdout\" or an absolute path"},
    {"{" LISTEN ", \"log_level\": \"verbose\"}",
     "log_level: must be \"debug\", \"info\", \"warn\" or \"error\""},
    {"{" LISTEN ", \"server_name\": 5}", "server_name: must be null or a non-empty string"},
    {"{" LISTEN ", \"server_name\": \"a\\r\\nb\"}",
     "server_name: must be null or a non-empty string"},
    {"{" LISTEN ", \"routes\": {}}", "routes: must be an array"},
    /* bounds */
    {"{" LISTEN ", \"limits\": {\"h2_max_frame_size\": 100}}",
     "limits.h2_max_frame_size: must be between 16384 and 16777215 (got 100)"},
    {"{" LISTEN ", \"limits\": {\"h2_max_frame_size\": 16777216}}",
     "limits.h2_max_frame_size: must be between 16384 and 16777215 (got 16777216)"},
    {"{" LISTEN ", \"limits\": {\"h2_initial_window\": 2147483648}}",
     "limits.h2_initial_window: must be between 65535 and 2147483647 (got 2147483648)"},
    {"{" LISTEN ", \"limits\": {\"h2_max_concurrent_streams\": 0}}",
     "limits.h2_max_concurrent_streams: must be between 1 and"},
    {"{" LISTEN ", \"limits\": {\"max_body_bytes\": -1}}",
     "limits.max_body_bytes: must be between 0 and"},
    {"{" LISTEN ", \"limits\": {\"h1_uri_bytes\": 70000}}",
     "limits.h1_uri_bytes: must not exceed limits.h1_header_bytes (65536)"},
    {"{" LISTEN ", \"timeouts\": {\"h1_header_s\": 0}}",
     "timeouts.h1_header_s: must be between 0.001 and 86400 (got 0)"},
    {"{" LISTEN ", \"timeouts\": {\"stream_idle_s\": -1}}",
     "timeouts.stream_idle_s: must be between 0 and 86400 (got -1)"},
    {"{" LISTEN ", \"workers\": 0}", "workers: must be \"auto\" or an integer 1..256"},
    {"{" LISTEN ", \"workers\": 257}", "workers: must be \"auto\" or an integer 1..256"},
    {"{" LISTEN ", \"workers\": \"many\"}", "workers: must be \"auto\" or an integer 1..256"},
    {"{" LISTEN ", \"drain_timeout_s\": \"soon\"}", "drain_timeout_s: must be a number"},
    {"{" LISTEN ", \"drain_timeout_s\": 1, \"timeouts\": {\"drain_s\": 2}}",
     "drain_timeout_s: also set as timeouts.drain_s"},
    /* listeners */
    {"{}", "listen: required (or set SLUICE_LISTEN)"},
    {"{\"listen\": []}", "listen: must be an array of 1 to 64 listeners"},
    {"{\"listen\": {\"addr\": \"127.0.0.1:0\"}}", "listen: must be an array"},
    {"{\"listen\": [\"127.0.0.1:0\"]}", "listen[0]: must be an object"},
    {"{\"listen\": [{\"h2c\": true}]}", "listen[0].addr: required"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\"}, {\"addr\": \"localhost:80\"}]}",
     "listen[1].addr: bad IPv4 address"},
    {"{\"listen\": [{\"addr\": \"::1:80\"}]}",
     "listen[0].addr: bad IPv4 address (IPv6 goes in brackets"},
    {"{\"listen\": [{\"addr\": \"[::1]80\"}]}", "listen[0].addr: expected \"[IPv6]:port\""},
    {"{\"listen\": [{\"addr\": \"[zz::1]:80\"}]}", "listen[0].addr: bad IPv6 address"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:65536\"}]}", "listen[0].addr: port must be 0..65535"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:\"}]}", "listen[0].addr: port must be 0..65535"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1\"}]}", "listen[0].addr: expected \"IPv4:port\""},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:80\"}, {\"addr\": \"127.0.0.1:80\"}]}",
     "listen[1].addr: same address as listen[0]"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"h2c\": \"yes\"}]}",
     "listen[0].h2c: must be true or false"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"backlog\": 0}]}",
     "listen[0].backlog: must be between 1 and 65535 (got 0)"},
    /* TLS */
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"tls\": true}]}",
     "listen[0].tls: must be an object"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"tls\": {\"cert\": \"a.pem\"}}]}",
     "listen[0].tls.key: required"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"tls\": {}}]}", "listen[0].tls.cert: required"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"tls\": {\"cert\": \"a\", \"key\": \"b\", "
     "\"certs\": [{\"cert\": \"c\", \"key\": \"d\"}]}}]}",
     "listen[0].tls: use either \"cert\"/\"key\" or \"certs\", not both"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"tls\": {\"certs\": []}}]}",
     "listen[0].tls.certs: must be an array of 1 to 256 certificates"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"tls\": {\"certs\": [{\"cert\": \"a\", \"key\": "
     "\"b\"}, {\"cert\": \"c\", \"key\": \"d\", \"names\": [\"ok.example\", \"bad name\"]}]}}]}",
     "listen[0].tls.certs[1].names[1]: not a valid server name (\"bad name\")"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"tls\": {\"certs\": [{\"cert\": \"a\", \"key\": "
     "\"b\", \"name\": []}]}}]}",
     "listen[0].tls.certs[0].name: unknown key (did you mean \"names\"?)"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"tls\": {\"cert\": \"a\", \"key\": \"b\", "
     "\"min_version\": \"TLSv1.1\"}}]}",
     "listen[0].tls.min_version: must be \"TLSv1.2\" or \"TLSv1.3\""},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"tls\": {\"cert\": \"a\", \"key\": \"b\", "
     "\"ciphers\": \"\"}}]}",
     "listen[0].tls.ciphers: must be a non-empty string"},
    {"{\"listen\": [{\"addr\": \"127.0.0.1:0\", \"tls\": {\"cert\": \"a\", \"key\": \"b\", "
     "\"session_tickets\": 1}}]}",
     "listen[0].tls.session_tickets: must be true or false"},
    /* routes (parsed by the router, numbered by the loader) */
    {"{" LISTEN ", \"routes\": [{\"path\": \"/\", \"handler\": \"t_test\"}, 5]}",
     "routes[1]: must be an object"},
    {"{" LISTEN ", \"routes\": [{\"path\": \"/a\", \"handler\": \"t_test\"}, {\"path\": \"/b\", "
     "\"handler\": \"t_test\"}, {\"path\": \"c\", \"handler\": \"t_test\"}]}",
     "routes[2].path: must"},
    {"{" LISTEN ", \"routes\": [{\"path\": \"/a\", \"handler\": \"nope\"}]}",
     "routes[0].handler: unknown handler \"nope\""},
    {"{" LISTEN ", \"routes\": [{\"path\": \"/a\", \"handler\": \"t_test\"}, {\"path\": \"/b\", "
     "\"handler\": \"t_test\", \"n\": 11}]}",
     "routes[1].n: must be between 0 and 10 (got 11)"},
};

START_TEST(test_errors)
{
    expect_error(bad[_i].json, bad[_i].want);
}
END_TEST

START_TEST(test_syntax_error_line)
{
    sl_config_t *cfg = load("{\n\n\n  \"workers\": 2\n  \"listen\": []\n}");
    ck_assert_ptr_null(cfg);
    /* Missing comma: reported on line 5 with jansson's reason. */
    ck_assert_msg(strncmp(err, "t.json:5:", 9) == 0, "%s", err);
    ck_assert_ptr_nonnull(strchr(err + 9, ':'));

    cfg = sl_config_load_string("{\"a\": 1, \"a\": 2}", NULL, err, sizeof(err));
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strncmp(err, "(embedded):1:", 13) == 0, "%s", err);
    ck_assert_msg(strstr(err, "duplicate") != NULL, "%s", err);
}
END_TEST

START_TEST(test_file_errors)
{
    sl_config_t *cfg = sl_config_load_file("/nonexistent/sluice.json", err, sizeof(err));
    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err, "/nonexistent/sluice.json: cannot open: No such file or directory");

    char path[] = "/tmp/sluice-test-config-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "{\n  \"workers\": 1,\n  oops\n}\n", 27), 27);
    close(fd);
    cfg = sl_config_load_file(path, err, sizeof(err));
    unlink(path);
    ck_assert_ptr_null(cfg);
    char want[64];
    snprintf(want, sizeof(want), "%s:3:", path);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
}
END_TEST

START_TEST(test_bounds_inclusive)
{
    /* Both ends of a range are accepted. */
    sl_config_t *cfg =
        load("{" LISTEN ", \"workers\": 256, \"limits\": {\"h2_max_frame_size\": "
             "16384, \"h2_initial_window\": 65535, \"h2_max_concurrent_streams\": 1, "
             "\"h1_uri_bytes\": 65536}, \"timeouts\": {\"h1_header_s\": 0.001, "
             "\"h2_idle_s\": 86400}}");
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_int_eq(cfg->workers, 256);
    ck_assert_uint_eq(cfg->limits.h2_max_frame_size, 16384);
    ck_assert_uint_eq(cfg->limits.h2_initial_window, 65535);
    ck_assert_uint_eq(cfg->limits.h2_max_concurrent_streams, 1);
    ck_assert_uint_eq(cfg->limits.h1_uri_bytes, 65536);
    ck_assert_double_eq(cfg->timeouts.h1_header_s, 0.001);
    sl_config_free(cfg);
}
END_TEST

#define TLS_FILE                                                                                   \
    "{\"listen\": [{\"addr\": \"127.0.0.1:0\"}, {\"addr\": \"[::1]:0\", \"tls\": {\"cert\": "      \
    "\"f.pem\", \"key\": \"f.key\", \"min_version\": \"TLSv1.3\"}}]}"

START_TEST(test_env_overrides)
{
    setenv("SLUICE_WORKERS", "5", 1);
    setenv("SLUICE_LOG_LEVEL", "warn", 1);
    setenv("SLUICE_ACCESS_LOG", "0", 1);
    setenv("SLUICE_LISTEN", "127.0.0.1:9001, tls:[::1]:9443,tls:0.0.0.0:9444", 1);
    setenv("SLUICE_TLS_CERT", "/run/secrets/cert.pem", 1);
    sl_config_t *cfg = load(TLS_FILE);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_int_eq(cfg->workers, 5);
    ck_assert_str_eq(cfg->log_level, "warn");
    ck_assert_int_eq(cfg->access_log, 0);
    ck_assert_uint_eq(cfg->nlisteners, 3);
    ck_assert_str_eq(cfg->listeners[0].addr, "127.0.0.1:9001");
    ck_assert_ptr_null(cfg->listeners[0].tls);
    ck_assert_int_eq(cfg->listeners[0].h2c, 1);
    ck_assert_str_eq(cfg->listeners[1].addr, "[::1]:9443");
    ck_assert_int_eq(cfg->listeners[1].ss.ss_family, AF_INET6);
    ck_assert_int_eq(cfg->listeners[2].index, 2);
    /* tls: listeners use the file's first TLS object, cert replaced. */
    ck_assert_ptr_eq(cfg->listeners[1].tls, &cfg->tls_cfgs[0]);
    ck_assert_ptr_eq(cfg->listeners[2].tls, &cfg->tls_cfgs[0]);
    ck_assert_str_eq(cfg->tls_cfgs[0].min_version, "TLSv1.3");
    ck_assert_str_eq(cfg->tls_cfgs[0].certs[0].cert, "/run/secrets/cert.pem");
    ck_assert_str_eq(cfg->tls_cfgs[0].certs[0].key, "f.key");
    sl_config_free(cfg);

    /* SLUICE_LISTEN supplies a missing "listen"; "auto" workers. */
    setenv("SLUICE_WORKERS", "auto", 1);
    setenv("SLUICE_LISTEN", "127.0.0.1:0", 1);
    setenv("SLUICE_TLS_KEY", "k.pem", 1);
    cfg = load("{}");
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_int_ge(cfg->workers, 1);
    ck_assert_uint_eq(cfg->nlisteners, 1);
    sl_config_free(cfg);

    /* Cleartext-only SLUICE_LISTEN drops the file's TLS objects, so no
     * certificate is needed. */
    unsetenv("SLUICE_TLS_KEY");
    setenv("SLUICE_LISTEN", "127.0.0.1:0,[::1]:0", 1);
    cfg = load(TLS_FILE);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_uint_eq(cfg->nlisteners, 2);
    ck_assert_uint_eq(cfg->ntls, 0);
    ck_assert_ptr_null(cfg->listeners[1].tls);
    sl_config_free(cfg);

    /* Empty means unset. */
    setenv("SLUICE_TLS_KEY", "k.pem", 1);
    setenv("SLUICE_LISTEN", "", 1);
    setenv("SLUICE_WORKERS", "", 1);
    cfg = load(TLS_FILE);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_uint_eq(cfg->nlisteners, 2);
    ck_assert_str_eq(cfg->tls_cfgs[0].certs[0].key, "k.pem");
    sl_config_free(cfg);

    /* The general rule: an object, then a key inside it (outer first,
     * whatever the order in the environment), a string that is no JSON. */
    setenv("SLUICE_LIMITS__H2_MAX_SETTINGS", "64", 1);
    setenv("SLUICE_LIMITS", "{\"h2_reset_rate\": 40, \"h2_max_settings\": 5}", 1);
    setenv("SLUICE_SERVER_NAME", "edge one", 1);
    cfg = load(TLS_FILE);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_uint_eq(cfg->limits.h2_max_settings, 64);
    ck_assert_uint_eq(cfg->limits.h2_reset_rate, 40);
    ck_assert_str_eq(cfg->server_name, "edge one");
    sl_config_free(cfg);
    unsetenv("SLUICE_LIMITS__H2_MAX_SETTINGS");
    unsetenv("SLUICE_LIMITS");
    unsetenv("SLUICE_SERVER_NAME");
}
END_TEST

static const struct {
    const char *name, *value, *want;
} bad_env[] = {
    {"SLUICE_WORKERS", "0",
     "workers: must be \"auto\" or an integer 1..256 (from the environment: SLUICE_WORKERS)"},
    {"SLUICE_WORKERS", "4x", "workers: must be \"auto\" or an integer 1..256 (from the"},
    {"SLUICE_LOG_LEVEL", "loud", "log_level: must be \"debug\", \"info\", \"warn\" or "
                                 "\"error\" (from the environment: SLUICE_LOG_LEVEL)"},
    {"SLUICE_ACCESS_LOG", "yes", "access_log: a file must be an absolute path (got \"yes\") (from "
                                 "the environment: SLUICE_ACCESS_LOG)"},
    {"SLUICE_LIMITS__H2_MAX_SETTINGS", "0",
     "limits.h2_max_settings: must be between 1 and 4096 (got 0) (from the environment: "
     "SLUICE_LIMITS__H2_MAX_SETTINGS)"},
    {"SLUICE_LISTEN__0", "5", "listen[0]: must be an object (from the environment: "
                              "SLUICE_LISTEN__0)"},
    {"SLUICE_LISTEN__0__ADDR__X", "5", "SLUICE_LISTEN__0__ADDR__X: listen[0].addr.x is inside a "
                                       "value that is not an object"},
    {"SLUICE_BOGUS__X", "1", "SLUICE_BOGUS__X: \"bogus\" is not a configuration key"},
    {"SLUICE_LISTEN", "127.0.0.1:1,nowhere", "SLUICE_LISTEN[1]: expected \"IPv4:port\""},
    {"SLUICE_LISTEN", "127.0.0.1:1,", "SLUICE_LISTEN[1]: expected"},
    {"SLUICE_LISTEN", "127.0.0.1:1,127.0.0.1:1",
     "SLUICE_LISTEN[1]: same address as SLUICE_LISTEN[0]"},
    {"SLUICE_LISTEN", "tls:[::]:8443", "SLUICE_LISTEN: \"tls:[::]:8443\" needs a \"tls\" object"},
};

START_TEST(test_env_errors)
{
    setenv(bad_env[_i].name, bad_env[_i].value, 1);
    expect_error("{" LISTEN "}", bad_env[_i].want);
}
END_TEST

START_TEST(test_getters)
{
    json_error_t je;
    json_t *o =
        json_loads("{\"i\": 5, \"r\": 1.5, \"b\": true, \"s\": \"x\", \"n\": null}", 0, &je);
    int64_t i;
    int b;
    const char *s;
    ck_assert_int_eq(sl_conf_get_int(o, "h", "i", 1, 0, 10, &i, err, sizeof(err)), 0);
    ck_assert_int_eq(i, 5);
    ck_assert_int_eq(sl_conf_get_int(o, "h", "missing", 7, 0, 10, &i, err, sizeof(err)), 0);
    ck_assert_int_eq(i, 7);
    ck_assert_int_eq(sl_conf_get_int(NULL, "h", "i", 9, 0, 10, &i, err, sizeof(err)), 0);
    ck_assert_int_eq(i, 9);
    ck_assert_int_eq(sl_conf_get_int(o, "h", "i", 1, 6, 10, &i, err, sizeof(err)), SL_EINVAL);
    ck_assert_str_eq(err, "h.i: must be between 6 and 10 (got 5)");
    ck_assert_int_eq(sl_conf_get_int(o, "h", "r", 1, 0, 10, &i, err, sizeof(err)), SL_EINVAL);
    ck_assert_str_eq(err, "h.r: must be an integer");
    ck_assert_int_eq(sl_conf_get_int(o, "", "n", 1, 0, 10, &i, err, sizeof(err)), SL_EINVAL);
    ck_assert_str_eq(err, "n: must be an integer");

    ck_assert_int_eq(sl_conf_get_bool(o, "h", "b", 0, &b, err, sizeof(err)), 0);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(sl_conf_get_bool(o, "h", "missing", 1, &b, err, sizeof(err)), 0);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(sl_conf_get_bool(o, "h", "i", 0, &b, err, sizeof(err)), SL_EINVAL);
    ck_assert_str_eq(err, "h.i: must be true or false");

    ck_assert_int_eq(sl_conf_get_str(o, "h", "s", "d", &s, err, sizeof(err)), 0);
    ck_assert_str_eq(s, "x");
    ck_assert_int_eq(sl_conf_get_str(o, "h", "missing", "d", &s, err, sizeof(err)), 0);
    ck_assert_str_eq(s, "d");
    ck_assert_int_eq(sl_conf_get_str(o, "h", "n", "d", &s, err, sizeof(err)), 0);
    ck_assert_ptr_null(s); /* explicit null = none */
    ck_assert_int_eq(sl_conf_get_str(o, "routes[3]", "b", "d", &s, err, sizeof(err)), SL_EINVAL);
    ck_assert_str_eq(err, "routes[3].b: must be a string");
    json_decref(o);
}
END_TEST

START_TEST(test_dev_config_loads)
{
    /* The shipped dev default must always load; its routes and the
     * module-owned sections need the real modules (the integration tests
     * load it whole with `sluice -t`), so check the core keys here. */
    json_error_t je;
    json_t *root = json_load_file(SRCDIR "etc/sluice.json", 0, &je);
    ck_assert_msg(root != NULL, "%s", je.text);
    json_object_del(root, "routes");
    json_object_del(root, "executors");
    json_object_del(root, "jobs");
    json_object_del(root, "upstreams");
    char *text = json_dumps(root, 0);
    json_decref(root);
    sl_config_t *cfg = load(text);
    free(text);
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_uint_eq(cfg->nlisteners, 2);
    ck_assert_ptr_nonnull(cfg->listeners[0].tls);
    ck_assert_int_eq(cfg->listeners[0].tls->self_signed, 1);
    sl_config_free(cfg);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core"); /* setup first, then the leak fixture */
    /* setup first (env, handler registration), then the allocation baseline. */
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_checked_fixture(tc, sl_test_alloc_setup, sl_test_alloc_teardown);
    tcase_set_timeout(tc, SL_TEST_TIMEOUT);
    tcase_add_test(tc, test_valid_file);
    tcase_add_test(tc, test_defaults);
    tcase_add_loop_test(tc, test_errors, 0, (int)SL_ARRAY_LEN(bad));
    tcase_add_test(tc, test_syntax_error_line);
    tcase_add_test(tc, test_file_errors);
    tcase_add_test(tc, test_bounds_inclusive);
    tcase_add_test(tc, test_env_overrides);
    tcase_add_loop_test(tc, test_env_errors, 0, (int)SL_ARRAY_LEN(bad_env));
    tcase_add_test(tc, test_getters);
    tcase_add_test(tc, test_dev_config_loads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(config_suite());
}
