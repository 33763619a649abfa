/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/proxyproto.c: PROXY protocol v1 and v2 headers,
 * complete, cut at every byte (every prefix asks for more, never
 * accepts), and malformed ones refused.
 */
#include "proxyproto.h"
#include "helpers.h"
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Every proper prefix of a good header needs more; the whole is taken. */
static void whole_and_prefixes(const uint8_t *p, size_t n, size_t extra, sl_pp_t *out)
{
    for (size_t k = 0; k < n; k++)
        ck_assert_msg(sl_pp_parse(p, k, out) == 0, "prefix %zu of %zu", k, n);
    ck_assert_int_eq(sl_pp_parse(p, n + extra, out), (ssize_t)n);
}

static void ck_in4(const sl_pp_t *r, const char *ip, unsigned port)
{
    const struct sockaddr_in *in = (const struct sockaddr_in *)&r->src;
    char s[INET_ADDRSTRLEN];
    ck_assert(!r->local);
    ck_assert_int_eq(in->sin_family, AF_INET);
    ck_assert_str_eq(inet_ntop(AF_INET, &in->sin_addr, s, sizeof(s)), ip);
    ck_assert_uint_eq(ntohs(in->sin_port), port);
}

START_TEST(v1_tcp4_tcp6_unknown)
{
    sl_pp_t r;
    static const char a[] = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET /";
    whole_and_prefixes((const uint8_t *)a, sizeof(a) - 1 - 5, 5, &r);
    ck_in4(&r, "192.0.2.7", 56324);
    static const char b[] = "PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
    whole_and_prefixes((const uint8_t *)b, sizeof(b) - 1, 0, &r);
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&r.src;
    char s[INET6_ADDRSTRLEN];
    ck_assert_int_eq(in6->sin6_family, AF_INET6);
    ck_assert_str_eq(inet_ntop(AF_INET6, &in6->sin6_addr, s, sizeof(s)), "2001:db8::1");
    ck_assert_uint_eq(ntohs(in6->sin6_port), 65535);
    static const char c[] = "PROXY UNKNOWN ffff::1 whatever\r\n";
    whole_and_prefixes((const uint8_t *)c, sizeof(c) - 1, 0, &r);
    ck_assert(r.local);
}
END_TEST

START_TEST(v1_refused)
{
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",          /* bare LF */
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",       /* two spaces */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",          /* a field missing */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",      /* one too many */
        "PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n",      /* not an address */
        "PROXY TCP4 ::1 ::1 1 2\r\n",                /* family mismatch */
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",    /* port range */
        "PROXY TCP4 1.2.3.4 5.6.7.8 0080 2\r\n",     /* leading zero */
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",       /* sign */
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",        /* protocol */
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",        /* case */
    };
    sl_pp_t r;
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        ck_assert_msg(sl_pp_parse((const uint8_t *)bad[i], strlen(bad[i]), &r) == SL_EINVAL,
                      "%s", bad[i]);
    /* No LF within the spec's 107 bytes: refused, not awaited. */
    char longl[200];
    memset(longl, 'x', sizeof(longl));
    memcpy(longl, "PROXY ", 6);
    ck_assert_int_eq(sl_pp_parse((const uint8_t *)longl, SL_PP_V1_MAX - 1, &r), 0);
    ck_assert_int_eq(sl_pp_parse((const uint8_t *)longl, SL_PP_V1_MAX, &r), SL_EINVAL);
}
END_TEST

static size_t v2(uint8_t *out, uint8_t vercmd, uint8_t fam, const uint8_t *body, size_t n)
{
    memcpy(out, sig, 12);
    out[12] = vercmd;
    out[13] = fam;
    out[14] = (uint8_t)(n >> 8);
    out[15] = (uint8_t)n;
    memcpy(out + 16, body, n);
    return 16 + n;
}

START_TEST(v2_proxy_local_tlvs)
{
    uint8_t h[SL_PP_V2_MAX + 8], body[64];
    sl_pp_t r;
    /* TCP4 203.0.113.9:4242 -> 10.0.0.1:443, then a TLV (skipped). */
    const uint8_t a4[] = {203, 0, 113, 9, 10, 0, 0, 1, 0x10, 0x92, 0x01, 0xBB,
                          0x01, 0x00, 0x02, 'h', '2'};
    size_t n = v2(h, 0x21, 0x11, a4, sizeof(a4));
    whole_and_prefixes(h, n, 0, &r);
    ck_in4(&r, "203.0.113.9", 4242);
    /* TCP6 */
    memset(body, 0, 36);
    body[0] = 0x20, body[1] = 0x01, body[2] = 0x0d, body[3] = 0xb8, body[15] = 5;
    body[32] = 0x04, body[33] = 0xD2;
    n = v2(h, 0x21, 0x21, body, 36);
    whole_and_prefixes(h, n, 3, &r);
    ck_assert(!r.local);
    ck_assert_int_eq(((struct sockaddr_in6 *)&r.src)->sin6_family, AF_INET6);
    ck_assert_uint_eq(ntohs(((struct sockaddr_in6 *)&r.src)->sin6_port), 1234);
    /* LOCAL (the balancer's own check), UNSPEC and unix: the connection's
     * address stands. */
    n = v2(h, 0x20, 0x00, body, 0);
    whole_and_prefixes(h, n, 0, &r);
    ck_assert(r.local);
    uint8_t unix_body[216] = {0};
    n = v2(h, 0x21, 0x31, unix_body, sizeof(unix_body));
    ck_assert_int_eq(sl_pp_parse(h, n, &r), (ssize_t)n);
    ck_assert(r.local);
}
END_TEST

START_TEST(v2_refused)
{
    uint8_t h[SL_PP_V2_MAX + 64], body[64] = {0};
    sl_pp_t r;
    size_t n = v2(h, 0x11, 0x11, body, 12); /* version 1 in a v2 block */
    ck_assert_int_eq(sl_pp_parse(h, n, &r), SL_EINVAL);
    n = v2(h, 0x22, 0x11, body, 12); /* command 2 */
    ck_assert_int_eq(sl_pp_parse(h, n, &r), SL_EINVAL);
    n = v2(h, 0x21, 0x11, body, 8); /* shorter than TCP4's addresses */
    ck_assert_int_eq(sl_pp_parse(h, n, &r), SL_EINVAL);
    n = v2(h, 0x21, 0x21, body, 20); /* shorter than TCP6's */
    ck_assert_int_eq(sl_pp_parse(h, n, &r), SL_EINVAL);
    n = v2(h, 0x21, 0x51, body, 12); /* family 5 */
    ck_assert_int_eq(sl_pp_parse(h, n, &r), SL_EINVAL);
    /* Past the bound: refused from the 16 bytes that say so. */
    h[14] = 0x04, h[15] = 0x01; /* 1025 */
    ck_assert_int_eq(sl_pp_parse(h, 16, &r), SL_EINVAL);
    /* A broken signature, wherever it breaks. */
    for (size_t i = 1; i < 12; i++) {
        memcpy(h, sig, 12);
        h[i] ^= 0x40;
        ck_assert_int_eq(sl_pp_parse(h, 16, &r), SL_EINVAL);
    }
}
END_TEST

static Suite *pp_suite(void)
{
    Suite *s = suite_create("proxyproto");
    TCase *tc = sl_test_tcase("proxyproto");
    tcase_add_test(tc, v1_tcp4_tcp6_unknown);
    tcase_add_test(tc, v1_refused);
    tcase_add_test(tc, v2_proxy_local_tlvs);
    tcase_add_test(tc, v2_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(pp_suite());
}
