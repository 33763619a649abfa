/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/h2/scan.c: frame boundaries found in a byte stream fed
 * whole and one byte at a time, the DATA and PRIORITY events at the right
 * byte, the PRIORITY dependency, and the "incomplete since" stamp across
 * header blocks.
 */
#include "h2/h2_int.h"
#include "../helpers.h"
#include <check.h>

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static size_t put_frame(uint8_t *p, uint32_t len, uint8_t type, uint8_t flags, uint32_t sid,
                        const uint8_t *payload)
{
    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = type;
    p[4] = flags;
    p[5] = (uint8_t)(sid >> 24);
    p[6] = (uint8_t)(sid >> 16);
    p[7] = (uint8_t)(sid >> 8);
    p[8] = (uint8_t)sid;
    if (len)
        memcpy(p + 9, payload, len);
    return 9 + len;
}

/* preface, SETTINGS(empty), HEADERS(1, 3 bytes), DATA(1, 4 bytes),
 * PRIORITY(3 depends on 3), DATA(5, 0 bytes) */
static size_t build(uint8_t *b, size_t *data1_end, size_t *prio_end, size_t *data5_end)
{
    static const uint8_t hb[] = {0x82, 0x84, 0x86};
    static const uint8_t body[] = "abcd";
    static const uint8_t pri[] = {0, 0, 0, 3, 15};
    size_t n = 0;
    memcpy(b, preface, 24);
    n = 24;
    n += put_frame(b + n, 0, NGHTTP2_SETTINGS, 0, 0, NULL);
    n += put_frame(b + n, 3, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, hb);
    *data1_end = n + 9;
    n += put_frame(b + n, 4, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, body);
    n += put_frame(b + n, 5, NGHTTP2_PRIORITY, 0, 3, pri);
    *prio_end = n;
    n += put_frame(b + n, 0, NGHTTP2_DATA, 0, 5, NULL);
    *data5_end = n;
    return n;
}

/* Scan buf in pieces of step bytes; record (event, end offset, sid). */
static int scan_all(const uint8_t *buf, size_t len, size_t step, int *evs, size_t *at,
                    int32_t *sids, int32_t *deps)
{
    sl_h2_scan_t sc;
    int n = 0;
    sl_h2_scan_init(&sc);
    for (size_t off = 0; off < len;) {
        size_t piece = step < len - off ? step : len - off, done = 0;
        while (done < piece) {
            int ev;
            done += sl_h2_scan(&sc, buf + off + done, piece - done, 1.0, &ev);
            if (ev != SL_H2_SCAN_EV_NONE) {
                evs[n] = ev;
                at[n] = off + done;
                sids[n] = sc.sid;
                deps[n] = sl_h2_scan_priority_dep(&sc);
                n++;
            }
        }
        off += piece;
    }
    ck_assert(sc.started == 0); /* ended on a frame boundary */
    return n;
}

START_TEST(test_events_whole_and_dripped)
{
    uint8_t b[256];
    size_t d1, pe, d5, len = build(b, &d1, &pe, &d5);
    size_t steps[] = {len, 1, 7};
    for (size_t k = 0; k < SL_ARRAY_LEN(steps); k++) {
        int evs[8];
        size_t at[8];
        int32_t sids[8], deps[8];
        int n = scan_all(b, len, steps[k], evs, at, sids, deps);
        ck_assert_int_eq(n, 3);
        ck_assert_int_eq(evs[0], SL_H2_SCAN_EV_DATA);
        ck_assert_uint_eq(at[0], d1);
        ck_assert_int_eq(sids[0], 1);
        ck_assert_int_eq(evs[1], SL_H2_SCAN_EV_PRIORITY);
        ck_assert_uint_eq(at[1], pe);
        ck_assert_int_eq(sids[1], 3);
        ck_assert_int_eq(deps[1], 3);
        ck_assert_int_eq(evs[2], SL_H2_SCAN_EV_DATA);
        ck_assert_uint_eq(at[2], d5);
        ck_assert_int_eq(sids[2], 5);
    }
}
END_TEST

START_TEST(test_incomplete_stamp)
{
    uint8_t b[64];
    sl_h2_scan_t sc;
    int ev;
    static const uint8_t hb[] = {0x82};
    sl_h2_scan_init(&sc);
    ck_assert_uint_eq(sl_h2_scan(&sc, (const uint8_t *)preface, 10, 5.0, &ev), 10);
    ck_assert(sc.started == 5.0); /* half a preface counts */
    ck_assert_uint_eq(sl_h2_scan(&sc, (const uint8_t *)preface + 10, 14, 6.0, &ev), 14);
    ck_assert(sc.started == 0);
    /* HEADERS without END_HEADERS: the block stays open across frames and
     * keeps the stamp of its first byte until the CONTINUATION ends it. */
    size_t n = put_frame(b, 1, NGHTTP2_HEADERS, 0, 1, hb);
    ck_assert_uint_eq(sl_h2_scan(&sc, b, n, 7.0, &ev), n);
    ck_assert(sc.started == 7.0);
    n = put_frame(b, 1, NGHTTP2_CONTINUATION, 0, 1, hb);
    sl_h2_scan(&sc, b, n, 8.0, &ev);
    ck_assert(sc.started == 7.0);
    n = put_frame(b, 1, NGHTTP2_CONTINUATION, NGHTTP2_FLAG_END_HEADERS, 1, hb);
    sl_h2_scan(&sc, b, n - 1, 9.0, &ev);
    ck_assert(sc.started == 7.0);
    sl_h2_scan(&sc, b + n - 1, 1, 9.0, &ev);
    ck_assert(sc.started == 0);
}
END_TEST

START_TEST(test_short_priority)
{
    uint8_t b[64];
    sl_h2_scan_t sc;
    int ev;
    sl_h2_scan_init(&sc);
    sl_h2_scan(&sc, (const uint8_t *)preface, 24, 1.0, &ev);
    size_t n = put_frame(b, 0, NGHTTP2_PRIORITY, 0, 0, NULL);
    ck_assert_uint_eq(sl_h2_scan(&sc, b, n, 1.0, &ev), n);
    ck_assert_int_eq(ev, SL_H2_SCAN_EV_PRIORITY);
    ck_assert_int_eq(sc.sid, 0);
    ck_assert_int_eq(sl_h2_scan_priority_dep(&sc), -1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("h2_scan");
    TCase *tc = sl_test_tcase("scan");
    tcase_add_test(tc, test_events_whole_and_dripped);
    tcase_add_test(tc, test_incomplete_stamp);
    tcase_add_test(tc, test_short_priority);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(suite());
}
