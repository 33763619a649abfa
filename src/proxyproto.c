/* sluice - SPDX-License-Identifier: MIT
 *
 * PROXY protocol v1 ("PROXY TCP4 src dst sport dport\r\n") and v2 (a
 * 16-byte binary block, then addresses and TLVs). Only the source address
 * is used; TLVs are bounded and skipped. Strict: v1 fields are checked
 * (single spaces, addresses inet_pton accepts, ports 0-65535 without
 * leading zeros), v2 needs version 2, a known command and an address
 * block as long as its family says.
 */
#include "proxyproto.h"
#include <arpa/inet.h>
#include <netinet/in.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static void set_in4(sl_pp_t *out, const uint8_t *addr, const uint8_t *port)
{
    struct sockaddr_in *in = (struct sockaddr_in *)&out->src;
    memset(&out->src, 0, sizeof(out->src));
    in->sin_family = AF_INET;
    memcpy(&in->sin_addr, addr, 4);
    memcpy(&in->sin_port, port, 2); /* both in network order already */
    out->srclen = sizeof(*in);
}

static void set_in6(sl_pp_t *out, const uint8_t *addr, const uint8_t *port)
{
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->src;
    memset(&out->src, 0, sizeof(out->src));
    in6->sin6_family = AF_INET6;
    memcpy(&in6->sin6_addr, addr, 16);
    memcpy(&in6->sin6_port, port, 2);
    out->srclen = sizeof(*in6);
}

static ssize_t parse_v2(const uint8_t *p, size_t n, sl_pp_t *out)
{
    if (n < 16)
        return 0;
    size_t len = (size_t)p[14] << 8 | p[15];
    int ver = p[12] >> 4, cmd = p[12] & 0x0f, fam = p[13] >> 4, proto = p[13] & 0x0f;
    if (ver != 2 || cmd > 1 || 16 + len > SL_PP_V2_MAX)
        return SL_EINVAL;
    if (n < 16 + len)
        return 0;
    out->local = 1;
    if (cmd == 0)
        return (ssize_t)(16 + len); /* LOCAL: a health check of the balancer itself */
    if (fam == 1 && proto == 1) { /* TCP over IPv4 */
        if (len < 12)
            return SL_EINVAL;
        set_in4(out, p + 16, p + 24);
        out->local = 0;
    } else if (fam == 2 && proto == 1) { /* TCP over IPv6 */
        if (len < 36)
            return SL_EINVAL;
        set_in6(out, p + 16, p + 48);
        out->local = 0;
    } else if (fam > 3 || proto > 2) {
        return SL_EINVAL;
    } /* UNSPEC, UDP, unix: nothing to take; the connection's address stands */
    return (ssize_t)(16 + len);
}

/* A decimal port: 1-5 digits, no leading zero (but "0"), at most 65535. */
static int v1_port(const char *s, size_t n, uint16_t *out)
{
    uint64_t v;
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0') ||
        sl_str_parse_u64((sl_str_t){s, n}, 0, 65535, &v) != 0)
        return -1;
    *out = htons((uint16_t)v);
    return 0;
}

/* "TCP4 src dst sport dport" (the part after "PROXY " up to CR). */
static int parse_v1_fields(const char *s, size_t n, sl_pp_t *out)
{
    sl_str_t f[5];
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ' ')
            continue;
        if (k == 5 || i == start)
            return -1; /* too many fields, or two spaces */
        f[k++] = (sl_str_t){s + start, i - start};
        start = i + 1;
    }
    int v6 = sl_str_eq(f[0], "TCP6");
    if (k != 5 || (!v6 && !sl_str_eq(f[0], "TCP4")) || f[1].n >= INET6_ADDRSTRLEN)
        return -1;
    char ip[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
    uint8_t addr[16], dst_addr[16];
    uint16_t sport, dport;
    memcpy(ip, f[1].p, f[1].n);
    ip[f[1].n] = 0;
    if (f[2].n >= sizeof(dst))
        return -1;
    memcpy(dst, f[2].p, f[2].n);
    dst[f[2].n] = 0;
    int af = v6 ? AF_INET6 : AF_INET;
    if (inet_pton(af, ip, addr) != 1 || inet_pton(af, dst, dst_addr) != 1 ||
        v1_port(f[3].p, f[3].n, &sport) || v1_port(f[4].p, f[4].n, &dport))
        return -1;
    if (v6)
        set_in6(out, addr, (const uint8_t *)&sport);
    else
        set_in4(out, addr, (const uint8_t *)&sport);
    out->local = 0;
    return 0;
}

static ssize_t parse_v1(const uint8_t *p, size_t n, sl_pp_t *out)
{
    static const char pre[] = "PROXY ";
    size_t m = SL_MIN(n, sizeof(pre) - 1);
    if (memcmp(p, pre, m) != 0)
        return SL_EINVAL;
    const uint8_t *lf = memchr(p, '\n', SL_MIN(n, (size_t)SL_PP_V1_MAX));
    if (!lf)
        return n >= SL_PP_V1_MAX ? SL_EINVAL : 0;
    size_t end = (size_t)(lf - p); /* the LF */
    if (end < sizeof(pre) || p[end - 1] != '\r')
        return SL_EINVAL;
    const char *f = (const char *)p + sizeof(pre) - 1;
    size_t fn = end - 1 - (sizeof(pre) - 1);
    if (fn >= 7 && memcmp(f, "UNKNOWN", 7) == 0) {
        out->local = 1; /* the rest of the line is to be ignored */
        return (ssize_t)end + 1;
    }
    return parse_v1_fields(f, fn, out) == 0 ? (ssize_t)end + 1 : SL_EINVAL;
}

ssize_t sl_pp_parse(const uint8_t *p, size_t n, sl_pp_t *out)
{
    memset(out, 0, sizeof(*out));
    if (n == 0)
        return 0;
    if (p[0] == v2_sig[0]) {
        if (memcmp(p, v2_sig, SL_MIN(n, sizeof(v2_sig))) != 0)
            return SL_EINVAL;
        return parse_v2(p, n, out);
    }
    return parse_v1(p, n, out);
}
