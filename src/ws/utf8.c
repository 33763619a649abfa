/* sluice - SPDX-License-Identifier: MIT
 *
 * Incremental UTF-8 validation for text messages. The state carries an
 * open multi-byte sequence across calls, so a message split into
 * fragments (or reads) is checked as it arrives and fails on the first
 * invalid byte, not at the end of the message (RFC 6455 8.1). Rejects
 * overlong forms, surrogates (U+D800..DFFF) and code points past U+10FFFF.
 */
#include "ws_int.h"

void sl_ws_utf8_init(sl_ws_utf8_t *u)
{
    u->need = 0;
    u->lo = 0x80;
    u->hi = 0xbf;
}

/* Set up the sequence a lead byte b opens; -1 when b cannot lead. */
static int lead(sl_ws_utf8_t *u, uint8_t b)
{
    u->lo = 0x80;
    u->hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) {
        u->need = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
        u->need = 2;
        if (b == 0xe0)
            u->lo = 0xa0; /* overlong */
        else if (b == 0xed)
            u->hi = 0x9f; /* surrogates */
    } else if (b >= 0xf0 && b <= 0xf4) {
        u->need = 3;
        if (b == 0xf0)
            u->lo = 0x90; /* overlong */
        else if (b == 0xf4)
            u->hi = 0x8f; /* past U+10FFFF */
    } else {
        return -1;
    }
    return 0;
}

int sl_ws_utf8_feed(sl_ws_utf8_t *u, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (u->need == 0) {
            /* ASCII runs are the common case: skip 8 at a time. */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ull)
                    break;
                i += 8;
            }
            if (i == n)
                break;
            uint8_t b = p[i++];
            if (b < 0x80)
                continue;
            if (lead(u, b) != 0)
                return -1;
            continue;
        }
        uint8_t b = p[i++];
        if (b < u->lo || b > u->hi)
            return -1;
        u->need--;
        u->lo = 0x80;
        u->hi = 0xbf;
    }
    return 0;
}

int sl_ws_utf8_is_valid(const uint8_t *p, size_t n)
{
    sl_ws_utf8_t u;
    sl_ws_utf8_init(&u);
    return sl_ws_utf8_feed(&u, p, n) == 0 && sl_ws_utf8_is_complete(&u);
}
