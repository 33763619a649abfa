/* sluice - SPDX-License-Identifier: MIT
 *
 * permessage-deflate (RFC 7692) with zlib raw deflate: negotiation of the
 * four parameters, inflating a received message with a hard bound on the
 * output (a decompression bomb stops at max_message_bytes: close 1009),
 * and deflating outgoing messages. The zlib streams are created on first
 * use, so a session that never sends holds no deflate state (~140 KiB).
 */
#include "ws_int.h"
#include <stdio.h>
#include <stdlib.h>

#define DEFLATE_LEVEL 1 /* speed over ratio: a gateway relays, it does not archive */
#define DEFLATE_MEMLEVEL 8
#define INFLATE_START 4096

/* "10" or "\"10\"" in 8..15; -1 otherwise. */
static int window_bits(sl_str_t v)
{
    if (v.n >= 2 && v.p[0] == '"' && v.p[v.n - 1] == '"')
        v.p++, v.n -= 2;
    int64_t x = sl_str_to_u64(v);
    return x >= 8 && x <= 15 ? (int)x : -1;
}

typedef struct offer {
    int snct, cnct, sbits, cbits; /* -1 absent; cbits 0 = present without value */
} offer_t;

/* Parse "permessage-deflate; a; b=1" into o. Returns 0 when it is a
 * permessage-deflate offer we can accept. */
static int parse_offer(sl_str_t s, offer_t *o)
{
    *o = (offer_t){-1, -1, -1, -1};
    const char *end = s.p + s.n;
    const char *semi = memchr(s.p, ';', s.n);
    sl_str_t name = sl_str_trim_ows((sl_str_t){s.p, semi ? (size_t)(semi - s.p) : s.n});
    if (!sl_str_caseeq(name, "permessage-deflate"))
        return -1;
    while (semi) {
        const char *p = semi + 1;
        semi = memchr(p, ';', (size_t)(end - p));
        sl_str_t param =
            sl_str_trim_ows((sl_str_t){p, semi ? (size_t)(semi - p) : (size_t)(end - p)});
        const char *eq = memchr(param.p, '=', param.n);
        sl_str_t key = sl_str_trim_ows((sl_str_t){param.p, eq ? (size_t)(eq - param.p) : param.n});
        sl_str_t val =
            eq ? sl_str_trim_ows((sl_str_t){eq + 1, param.n - (size_t)(eq - param.p) - 1})
               : (sl_str_t){NULL, 0};
        if (sl_str_caseeq(key, "server_no_context_takeover") && !eq && o->snct < 0) {
            o->snct = 1;
        } else if (sl_str_caseeq(key, "client_no_context_takeover") && !eq && o->cnct < 0) {
            o->cnct = 1;
        } else if (sl_str_caseeq(key, "server_max_window_bits") && eq && o->sbits < 0) {
            if ((o->sbits = window_bits(val)) < 0)
                return -1;
        } else if (sl_str_caseeq(key, "client_max_window_bits") && o->cbits < 0) {
            o->cbits = eq ? window_bits(val) : 0;
            if (o->cbits < 0)
                return -1;
        } else {
            return -1; /* unknown or repeated parameter: decline this offer */
        }
    }
    /* zlib cannot deflate with an 8-bit window (it uses 9): decline. */
    return o->sbits == 8 ? -1 : 0;
}

int sl_ws_pmd_negotiate(const sl_req_t *req, sl_ws_pmd_t *pmd, char *resp, size_t cap)
{
    for (size_t i = 0; i < req->headers.n; i++) {
        const sl_header_t *h = &req->headers.v[i];
        if (!sl_str_eq(h->name, "sec-websocket-extensions"))
            continue;
        const char *p = h->value.p, *end = p + h->value.n;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            sl_str_t one = {p, comma ? (size_t)(comma - p) : (size_t)(end - p)};
            p = comma ? comma + 1 : end;
            offer_t o;
            if (parse_offer(one, &o) != 0)
                continue;
            memset(pmd, 0, sizeof(*pmd));
            pmd->enabled = 1;
            pmd->server_no_context_takeover = o.snct == 1;
            pmd->client_no_context_takeover = o.cnct == 1;
            pmd->server_max_window_bits = o.sbits > 0 ? o.sbits : 15;
            int n = snprintf(resp, cap, "permessage-deflate%s%s",
                             o.snct == 1 ? "; server_no_context_takeover" : "",
                             o.cnct == 1 ? "; client_no_context_takeover" : "");
            if (o.sbits > 0 && n > 0 && (size_t)n < cap)
                n += snprintf(resp + n, cap - (size_t)n, "; server_max_window_bits=%d", o.sbits);
            return n > 0 && (size_t)n < cap;
        }
    }
    return 0;
}

int sl_ws_pmd_inflate(sl_ws_pmd_t *pmd, uint8_t *buf, size_t len, size_t max, uint8_t **out,
                      size_t *outlen)
{
    if (!pmd->inf_ready) {
        memset(&pmd->inf, 0, sizeof(pmd->inf));
        if (inflateInit2(&pmd->inf, -15) != Z_OK)
            return SL_ENOMEM;
        pmd->inf_ready = 1;
    }
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    memcpy(buf + len, tail, 4); /* RFC 7692 7.2.2: the caller left room */
    size_t cap = SL_MIN(max + 1, SL_MAX((size_t)INFLATE_START, len * 4));
    uint8_t *o = sl_try_malloc(cap ? cap : 1);
    if (!o)
        return SL_ENOMEM;
    z_stream *z = &pmd->inf;
    z->next_in = buf;
    z->avail_in = (uInt)(len + 4);
    size_t have = 0;
    int rc = 0;
    for (;;) {
        z->next_out = o + have;
        z->avail_out = (uInt)(cap - have);
        int zr = inflate(z, Z_SYNC_FLUSH);
        have = cap - z->avail_out;
        if (have > max) {
            rc = SL_ETOOBIG; /* one byte past the bound is proof enough */
            break;
        }
        if (zr == Z_STREAM_END) {
            /* A final block: the next message starts a fresh stream. */
            inflateReset(z);
            break;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            rc = SL_EINVAL;
            break;
        }
        if (z->avail_in == 0 && z->avail_out > 0)
            break;
        if (z->avail_out == 0) {
            size_t ncap = SL_MIN(max + 1, cap * 2);
            uint8_t *no = ncap > cap ? sl_try_realloc(o, ncap) : NULL;
            if (!no) {
                rc = ncap > cap ? SL_ENOMEM : SL_ETOOBIG;
                break;
            }
            o = no;
            cap = ncap;
        } else if (zr == Z_BUF_ERROR) {
            rc = SL_EINVAL;
            break;
        }
    }
    if (rc != 0) {
        sl_free(o);
        inflateReset(z);
        return rc;
    }
    if (pmd->client_no_context_takeover)
        inflateReset(z);
    *out = o;
    *outlen = have;
    return 0;
}

int sl_ws_pmd_deflate(sl_ws_pmd_t *pmd, const uint8_t *in, size_t len, uint8_t **out,
                      size_t *outlen)
{
    if (!pmd->def_ready) {
        memset(&pmd->def, 0, sizeof(pmd->def));
        if (deflateInit2(&pmd->def, DEFLATE_LEVEL, Z_DEFLATED, -pmd->server_max_window_bits,
                         DEFLATE_MEMLEVEL, Z_DEFAULT_STRATEGY) != Z_OK)
            return SL_ENOMEM;
        pmd->def_ready = 1;
    }
    z_stream *z = &pmd->def;
    size_t cap = deflateBound(z, len) + 16;
    uint8_t *o = sl_try_malloc(cap);
    if (!o)
        return SL_ENOMEM;
    z->next_in = (Bytef *)(uintptr_t)in;
    z->avail_in = (uInt)len;
    z->next_out = o;
    z->avail_out = (uInt)cap;
    int zr = deflate(z, Z_SYNC_FLUSH);
    size_t n = cap - z->avail_out;
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    if (n == 0 && len == 0 && zr == Z_BUF_ERROR) {
        /* Nothing pending after the last flush: zlib writes nothing. An
         * empty stored block says "empty message" (RFC 7692 7.2.3.6). */
        o[0] = 0x00;
        n = 5;
    } else if ((zr != Z_OK && zr != Z_BUF_ERROR) || z->avail_in != 0 || n < 4 ||
               memcmp(o + n - 4, tail, 4) != 0) {
        sl_free(o);
        deflateReset(z);
        return SL_ENOMEM;
    }
    if (pmd->server_no_context_takeover)
        deflateReset(z);
    *out = o;
    *outlen = n - 4; /* drop the 00 00 ff ff of the sync flush */
    return 0;
}

void sl_ws_pmd_dispose(sl_ws_pmd_t *pmd)
{
    if (pmd->def_ready)
        deflateEnd(&pmd->def);
    if (pmd->inf_ready)
        inflateEnd(&pmd->inf);
    pmd->def_ready = pmd->inf_ready = 0;
}
