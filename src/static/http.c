/* sluice - SPDX-License-Identifier: MIT
 *
 * What serving a file adds to the RFC 9110 helpers of src/http.c: the
 * strong ETag of a file and Accept-Encoding for pre-compressed variants.
 * Malformed header values are ignored, never fatal.
 */
#include "static_int.h"
#include <stdio.h>
#include <strings.h>
#include <time.h>

/* splitmix64's finaliser: every input bit reaches every output bit. */
static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* 64 bits of (inode, size, mtime in ns) as 11 base64url characters: any
 * rewrite changes it, and it is 13 bytes on the wire where the three
 * numbers in hex were up to 53. HTTP/2 sends an ETag as a literal every
 * time (nghttp2 never indexes it), so its length is paid per response. */
void sl_static_etag(const struct stat *st, char out[64])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint64_t ns = (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
    uint64_t h = mix64((uint64_t)st->st_ino ^ mix64((uint64_t)st->st_size ^ mix64(ns)));
    size_t o = 0;
    out[o++] = '"';
    for (int i = 0; i < 11; i++, h >>= 6)
        out[o++] = b64[h & 63];
    out[o++] = '"';
    out[o] = '\0';
}

/* ---- Accept-Encoding ---- */

/* q-value of one list member's parameters; 1 when absent, 0 when "q=0". */
static int q_positive(sl_str_t params)
{
    while (params.n) {
        const char *semi = memchr(params.p, ';', params.n);
        size_t len = semi ? (size_t)(semi - params.p) : params.n;
        sl_str_t p = sl_str_trim_ows((sl_str_t){params.p, len});
        if (p.n >= 2 && (p.p[0] == 'q' || p.p[0] == 'Q') && p.p[1] == '=') {
            /* q=0, q=0., q=0.000 are zero; anything else with a digit > 0 is not */
            for (size_t i = 2; i < p.n; i++)
                if (p.p[i] >= '1' && p.p[i] <= '9')
                    return 1;
            return 0;
        }
        if (!semi)
            break;
        params.p += len + 1;
        params.n -= len + 1;
    }
    return 1;
}

int sl_static_accept_encoding(sl_str_t v)
{
    int yes = 0, no = 0, star = -1;
    while (v.n) {
        const char *comma = memchr(v.p, ',', v.n);
        size_t len = comma ? (size_t)(comma - v.p) : v.n;
        sl_str_t item = {v.p, len};
        const char *semi = memchr(item.p, ';', item.n);
        sl_str_t name =
            sl_str_trim_ows((sl_str_t){item.p, semi ? (size_t)(semi - item.p) : item.n});
        sl_str_t params =
            semi ? (sl_str_t){semi + 1, item.n - (size_t)(semi - item.p) - 1} : (sl_str_t){"", 0};
        int ok = q_positive(params);
        int bit = 0;
        if (sl_str_caseeq(name, "br"))
            bit = SL_STATIC_ENC_BR;
        else if (sl_str_caseeq(name, "gzip") || sl_str_caseeq(name, "x-gzip"))
            bit = SL_STATIC_ENC_GZIP;
        else if (sl_str_caseeq(name, "*"))
            star = ok;
        if (bit)
            *(ok ? &yes : &no) |= bit;
        if (!comma)
            break;
        v.p += len + 1;
        v.n -= len + 1;
    }
    /* "*" covers what the list does not name explicitly. */
    if (star == 1)
        yes |= (SL_STATIC_ENC_BR | SL_STATIC_ENC_GZIP) & ~no;
    return yes & ~no;
}
