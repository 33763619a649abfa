/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/proxy/: balancing policies and passive health
 * (balance.c), the upstream request head, prefix rewriting, hop-by-hop
 * filtering and trusted-proxy matching (headers.c). No sockets.
 */
#include "proxy/proxy_int.h"
#include "../helpers.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

static sl_str_t S(const char *s)
{
    return (sl_str_t){s, strlen(s)};
}

static px_upstream_t up;
static px_server_t servers[3];

static px_wstate_t *ws_new(int n, px_balance_t b, const int *weights)
{
    memset(&up, 0, sizeof(up));
    memset(servers, 0, sizeof(servers));
    up.servers = servers;
    up.nservers = (size_t)n;
    up.balance = b;
    up.max_conns = 100;
    up.fail_threshold = 2;
    up.down_s = 5;
    for (int i = 0; i < n; i++) {
        servers[i].weight = weights ? weights[i] : 1;
        up.total_weight += servers[i].weight;
    }
    px_wstate_t *ws = sl_calloc(1, sizeof(*ws) + (size_t)n * sizeof(px_srvstate_t));
    ws->up = &up;
    return ws;
}

START_TEST(rr_weights)
{
    int w[3] = {2, 1, 1}, count[3] = {0};
    px_wstate_t *ws = ws_new(3, PX_RR, w);
    int down;
    for (int i = 0; i < 40; i++)
        count[px_balance_pick(ws, NULL, NULL, 0, 0, &down)]++;
    ck_assert_int_eq(count[0], 20);
    ck_assert_int_eq(count[1], 10);
    ck_assert_int_eq(count[2], 10);
    /* smooth: never the heavy server three times in a row */
    int prev = -1, run = 0;
    for (int i = 0; i < 40; i++) {
        int k = px_balance_pick(ws, NULL, NULL, 0, 0, &down);
        run = k == prev ? run + 1 : 1;
        prev = k;
        ck_assert_int_lt(run, 3);
    }
    px_wstate_free(ws, 0);
}
END_TEST

START_TEST(health_and_tried)
{
    px_wstate_t *ws = ws_new(2, PX_RR, NULL);
    int down;
    px_health_fail(ws, 0, 100.0);
    ck_assert(ws->srv[0].down_until == 0);
    px_health_fail(ws, 0, 100.0); /* threshold 2 */
    ck_assert(ws->srv[0].down_until > 100.0);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(px_balance_pick(ws, NULL, NULL, 0, 101.0, &down), 1);
    uint8_t tried[1] = {2}; /* server 1 tried already */
    ck_assert_int_eq(px_balance_pick(ws, tried, NULL, 0, 101.0, &down), -1);
    ck_assert_int_eq(down, 1);
    ck_assert(px_health_retry_after(ws, 101.0) > 3.9);
    /* back after down_s */
    ck_assert_int_eq(px_balance_pick(ws, tried, NULL, 0, 105.5, &down), 0);
    px_health_ok(ws, 0);
    ck_assert_int_eq(ws->srv[0].fails, 0);
    /* max_conns: a full server is skipped, and that is not "down" */
    ws->srv[0].nconns = 100;
    ck_assert_int_eq(px_balance_pick(ws, tried, NULL, 0, 200.0, &down), -1);
    ck_assert_int_eq(down, 0);
    px_wstate_free(ws, 0);
}
END_TEST

START_TEST(active_check_down)
{
    px_wstate_t *ws = ws_new(2, PX_HASH, NULL);
    int down;
    up.health.interval_s = 7;
    /* a failed active check takes a server out for every policy ... */
    ws->srv[1].hc_down = 1;
    for (int i = 0; i < 8; i++) {
        char key[8];
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(px_balance_pick(ws, NULL, key, strlen(key), 1.0, &down), 0);
    }
    /* ... and counts as down (503) with Retry-After at least one interval */
    ws->srv[0].hc_down = 1;
    ck_assert_int_eq(px_balance_pick(ws, NULL, "k", 1, 1.0, &down), -1);
    ck_assert_int_eq(down, 1);
    ck_assert(px_health_retry_after(ws, 1.0) >= 7.0);
    ws->srv[0].hc_down = ws->srv[1].hc_down = 0;
    ck_assert_int_ne(px_balance_pick(ws, NULL, "k", 1, 1.0, &down), -1);
    up.health.interval_s = 0;
    px_wstate_free(ws, 0);
}
END_TEST

START_TEST(least_and_hash)
{
    px_wstate_t *ws = ws_new(3, PX_LEAST_CONN, NULL);
    int down;
    ws->srv[0].active = 3;
    ws->srv[1].active = 1;
    ws->srv[2].active = 2;
    ck_assert_int_eq(px_balance_pick(ws, NULL, NULL, 0, 0, &down), 1);
    px_wstate_free(ws, 0);
    ws = ws_new(3, PX_HASH, NULL);
    int a = px_balance_pick(ws, NULL, "alice", 5, 0, &down);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(px_balance_pick(ws, NULL, "alice", 5, 0, &down), a);
    int seen[3] = {0};
    char key[16];
    for (int i = 0; i < 300; i++) {
        int n = snprintf(key, sizeof(key), "user%d", i);
        seen[px_balance_pick(ws, NULL, key, (size_t)n, 0, &down)]++;
    }
    ck_assert(seen[0] > 50 && seen[1] > 50 && seen[2] > 50);
    /* the key's server down: the next one takes over */
    ws->srv[a].down_until = 10;
    ck_assert_int_ne(px_balance_pick(ws, NULL, "alice", 5, 1, &down), a);
    px_wstate_free(ws, 0);
}
END_TEST

static void target(const char *path, const char *query, const char *strip, const char *repl,
                   const char *want)
{
    sl_req_t req;
    px_route_t rt;
    char out[256];
    memset(&rt, 0, sizeof(rt));
    sl_req_init(&req, SL_PROTO_H1, NULL);
    req.path = S(path);
    req.query = S(query);
    rt.strip_prefix = (char *)strip;
    rt.replace_prefix = (char *)repl;
    ssize_t n = px_rewrite_target(&req, &rt, out, sizeof(out));
    ck_assert_int_ge(n, 0);
    out[n] = 0;
    ck_assert_str_eq(out, want);
    sl_req_dispose(&req);
}

START_TEST(rewrite)
{
    target("/api/x", "a=1", "/api", NULL, "/x?a=1");
    target("/api", "", "/api", NULL, "/");
    target("/api/x", "", "/api", "/", "/x");
    target("/api/x", "", "/api/", "/v2", "/v2/x");
    target("/api/x", "", "/api", "/v2/", "/v2/x");
    target("/other/x", "", "/api", "/v2", "/other/x");
}
END_TEST

START_TEST(request_head)
{
    sl_req_t req;
    px_route_t rt;
    px_upstream_t u;
    char sname[] = "127.0.0.1:9";
    px_server_t srv = {.name = sname, .host = sname};
    char out[2048];
    memset(&rt, 0, sizeof(rt));
    memset(&u, 0, sizeof(u));
    u.keepalive = 4;
    rt.up = &u;
    rt.request_id = rt.traceparent = 1;
    sl_req_init(&req, SL_PROTO_H2, NULL);
    req.method = S("POST");
    req.path = S("/p");
    req.authority = S("example.com");
    req.scheme = S("http"); /* what the client claims; the connection is TLS */
    req.tls.version = "TLSv1.3";
    req.peer = "[::1]:5555";
    req.content_length = 5;
    const char *h[][2] = {{"connection", "x-hop, close"}, {"x-hop", "1"},    {"te", "trailers"},
                          {"x-forwarded-for", "6.6.6.6"}, {"upgrade", "ws"}, {"x-ok", "yes"},
                          {"proxy-authorization", "p"},   {"host", "evil"}};
    for (size_t i = 0; i < SL_ARRAY_LEN(h); i++)
        sl_headers_add(&req.pool, &req.headers, h[i][0], strlen(h[i][0]), h[i][1], strlen(h[i][1]));
    px_head_in_t in = {&req, &rt, &srv, 1, "rid", "tp"};
    ssize_t n = px_build_request(&in, out, sizeof(out) - 1);
    ck_assert_int_gt(n, 0);
    out[n] = 0;
    ck_assert_msg(strncmp(out, "POST /p HTTP/1.1\r\nhost: example.com\r\n", 37) == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "\r\nx-ok: yes\r\n"));
    ck_assert_ptr_nonnull(strstr(out, "\r\nx-forwarded-for: ::1\r\n"));
    ck_assert_ptr_nonnull(
        strstr(out, "\r\nforwarded: for=\"[::1]\";proto=https;host=\"example.com\"\r\n"));
    ck_assert_ptr_nonnull(strstr(out, "\r\nvia: 2 sluice\r\n"));
    ck_assert_ptr_nonnull(strstr(out, "\r\ncontent-length: 5\r\n\r\n"));
    ck_assert_ptr_null(strstr(out, "x-hop"));
    ck_assert_ptr_null(strstr(out, "te: "));
    ck_assert_ptr_null(strstr(out, "upgrade"));
    ck_assert_ptr_null(strstr(out, "proxy-"));
    ck_assert_ptr_null(strstr(out, "6.6.6.6"));
    ck_assert_ptr_null(strstr(out, "evil"));
    ck_assert_int_eq(px_build_request(&in, out, 40), SL_ETOOBIG);

    /* The same request as HTTP/2 fields: pseudo-fields first, no
     * HTTP/1.1 framing, te: trailers kept, per-request ids not indexed. */
    nghttp2_nv nv[32];
    px_nv_out_t h2 = {nv, px_build_request_nv_max(&in), 1, S("")};
    ck_assert_uint_le(h2.cap, SL_ARRAY_LEN(nv));
    n = px_build_request_nv(&in, &h2, out, sizeof(out));
    ck_assert_int_gt(n, 4);
    const char *want[][2] = {{":method", "POST"}, {":scheme", "https"}, {":path", "/p"},
                             {":authority", "example.com"}};
    for (size_t i = 0; i < SL_ARRAY_LEN(want); i++) {
        ck_assert_uint_eq(nv[i].namelen, strlen(want[i][0]));
        ck_assert(memcmp(nv[i].name, want[i][0], nv[i].namelen) == 0);
        ck_assert_uint_eq(nv[i].valuelen, strlen(want[i][1]));
        ck_assert(memcmp(nv[i].value, want[i][1], nv[i].valuelen) == 0);
    }
    int te = 0, rid = 0, cl = 0;
    for (ssize_t i = 4; i < n; i++) {
        sl_str_t name = {(const char *)nv[i].name, nv[i].namelen};
        sl_str_t value = {(const char *)nv[i].value, nv[i].valuelen};
        ck_assert_msg(name.p[0] != ':', "pseudo-field after regular ones");
        ck_assert(!sl_str_eq(name, "transfer-encoding") && !sl_str_eq(name, "connection") &&
                  !sl_str_eq(name, "host") && !sl_str_eq(name, "x-hop"));
        te += sl_str_eq(name, "te") && sl_str_eq(value, "trailers");
        rid += sl_str_eq(name, "x-request-id") && nv[i].flags == NGHTTP2_NV_FLAG_NO_INDEX;
        cl += sl_str_eq(name, "content-length") && sl_str_eq(value, "5");
        if (sl_str_eq(name, "forwarded"))
            ck_assert(sl_str_eq(value, "for=\"[::1]\";proto=https;host=\"example.com\""));
    }
    ck_assert_int_eq(te + rid + cl, 3);
    h2.cap = 5;
    ck_assert_int_eq(px_build_request_nv(&in, &h2, out, sizeof(out)), SL_ETOOBIG);
    sl_req_dispose(&req);
}
END_TEST

START_TEST(cidr)
{
    px_cidr_t c[2];
    px_route_t rt;
    char ip[64];
    memset(&rt, 0, sizeof(rt));
    ck_assert_int_eq(px_cidr_parse("10.0.0.0/8", &c[0]), 0);
    ck_assert_int_eq(px_cidr_parse("fd00::/8", &c[1]), 0);
    ck_assert_int_ne(px_cidr_parse("10.0.0.0/33", &c[0]), 0);
    ck_assert_int_ne(px_cidr_parse("nope", &c[0]), 0);
    ck_assert_int_eq(px_cidr_parse("10.0.0.0/8", &c[0]), 0);
    rt.trusted = c;
    rt.ntrusted = 2;
    ck_assert(px_ip_trusted(&rt, "10.1.2.3"));
    ck_assert(!px_ip_trusted(&rt, "11.1.2.3"));
    ck_assert(px_ip_trusted(&rt, "fd12::1"));
    ck_assert(!px_ip_trusted(&rt, "fe80::1"));
    px_peer_ip("[::1]:80", ip, sizeof(ip));
    ck_assert_str_eq(ip, "::1");
    px_peer_ip("1.2.3.4:80", ip, sizeof(ip));
    ck_assert_str_eq(ip, "1.2.3.4");
    ck_assert(px_is_hop_header(S("X-Foo"), S("close, x-foo")));
    ck_assert(px_is_hop_header(S("Proxy-Connection"), S("")));
    ck_assert(!px_is_hop_header(S("x-foobar"), S("x-foo")));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("proxy");
    TCase *tc = sl_test_tcase("balance");
    tcase_add_test(tc, rr_weights);
    tcase_add_test(tc, health_and_tried);
    tcase_add_test(tc, least_and_hash);
    tcase_add_test(tc, active_check_down);
    suite_add_tcase(s, tc);
    tc = sl_test_tcase("headers");
    tcase_add_test(tc, rewrite);
    tcase_add_test(tc, request_head);
    tcase_add_test(tc, cidr);
    suite_add_tcase(s, tc);
    return sl_test_run(s);
}
