/* sluice - SPDX-License-Identifier: MIT
 *
 * A frame-boundary scanner that walks the client's byte stream just ahead
 * of nghttp2. nghttp2 hides where a frame starts and ends and drops some
 * frames without a callback (PRIORITY with RFC 7540 priorities off,
 * unknown types, DATA on streams it has forgotten), so the session uses
 * this to stop before each DATA header (the stream-state check needs
 * nghttp2 to have processed every earlier frame), to read the PRIORITY
 * payload, and to time frames and header blocks that never complete.
 * Socket-free and allocation-free; about 40 bytes per connection.
 */
#include "h2_int.h"

#define PREFACE_LEN 24

void sl_h2_scan_init(sl_h2_scan_t *sc)
{
    memset(sc, 0, sizeof(*sc));
    sc->left = PREFACE_LEN;
    sc->phase = SL_H2_SCAN_PREFACE;
}

static int head_complete(sl_h2_scan_t *sc)
{
    const uint8_t *h = sc->hd;
    sc->length = (uint32_t)h[0] << 16 | (uint32_t)h[1] << 8 | h[2];
    sc->type = h[3];
    sc->flags = h[4];
    sc->sid = (int32_t)(((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8]) &
                        0x7fffffffu);
    sc->pri_got = 0;
    /* A header block runs from HEADERS (or PUSH_PROMISE, which a server
     * never accepts) to the frame that carries END_HEADERS. */
    if (sc->type == NGHTTP2_HEADERS || sc->type == NGHTTP2_PUSH_PROMISE ||
        sc->type == NGHTTP2_CONTINUATION)
        sc->in_block = !(sc->flags & NGHTTP2_FLAG_END_HEADERS);
    sc->phase = SL_H2_SCAN_PAYLOAD;
    sc->left = sc->length;
    return sc->type == NGHTTP2_DATA ? SL_H2_SCAN_EV_DATA : SL_H2_SCAN_EV_NONE;
}

/* The frame (or preface) ended: back to a boundary. */
static void unit_done(sl_h2_scan_t *sc)
{
    sc->phase = SL_H2_SCAN_HEAD;
    sc->hd_got = 0;
    sc->left = 9;
    if (!sc->in_block)
        sc->started = 0;
}

size_t sl_h2_scan(sl_h2_scan_t *sc, const uint8_t *p, size_t len, double now, int *ev)
{
    size_t i = 0;
    *ev = SL_H2_SCAN_EV_NONE;
    while (i < len) {
        if (sc->started == 0)
            sc->started = now;
        if (sc->phase == SL_H2_SCAN_HEAD) {
            size_t k = SL_MIN((size_t)(9 - sc->hd_got), len - i);
            memcpy(sc->hd + sc->hd_got, p + i, k);
            sc->hd_got = (uint8_t)(sc->hd_got + k);
            i += k;
            if (sc->hd_got < 9)
                break;
            *ev = head_complete(sc);
            if (sc->left == 0) {
                if (sc->type == NGHTTP2_PRIORITY)
                    *ev = SL_H2_SCAN_EV_PRIORITY; /* empty: nghttp2 judges the length */
                unit_done(sc);
            }
            if (*ev != SL_H2_SCAN_EV_NONE)
                return i;
            continue;
        }
        size_t k = SL_MIN(sc->left, len - i);
        if (sc->phase == SL_H2_SCAN_PAYLOAD && sc->type == NGHTTP2_PRIORITY) {
            for (size_t j = 0; j < k && sc->pri_got < sizeof(sc->pri); j++)
                sc->pri[sc->pri_got++] = p[i + j];
        }
        i += k;
        sc->left -= (uint32_t)k;
        if (sc->left > 0)
            break;
        int was_priority = sc->phase == SL_H2_SCAN_PAYLOAD && sc->type == NGHTTP2_PRIORITY;
        unit_done(sc);
        if (was_priority) {
            *ev = SL_H2_SCAN_EV_PRIORITY;
            return i;
        }
    }
    return i;
}

int32_t sl_h2_scan_priority_dep(const sl_h2_scan_t *sc)
{
    if (sc->pri_got < 4)
        return -1;
    return (int32_t)(((uint32_t)sc->pri[0] << 24 | (uint32_t)sc->pri[1] << 16 |
                      (uint32_t)sc->pri[2] << 8 | sc->pri[3]) &
                     0x7fffffffu);
}
