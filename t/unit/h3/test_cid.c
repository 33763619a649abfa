/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for the HTTP/3 connection-ID table (src/h3/endpoint.c): what
 * goes in is found, what is removed is not, tombstones neither hide later
 * entries nor pile up, growth keeps every entry, and a duplicate is
 * refused.
 */
#include "h3/h3_int.h"
#include "../helpers.h"
#include <check.h>

static ngtcp2_cid cid_of(uint32_t k, size_t len)
{
    ngtcp2_cid c;
    c.datalen = len;
    memset(c.data, 0, sizeof(c.data));
    for (size_t i = 0; i < len; i++)
        c.data[i] = (uint8_t)(k >> (8 * (i % 4))) ^ (uint8_t)i;
    return c;
}

static sl_h3_conn_t *conn_of(uint32_t k)
{
    return (sl_h3_conn_t *)(uintptr_t)(0x1000 + 16 * (uintptr_t)k);
}

START_TEST(test_add_find_remove)
{
    sl_h3_worker_t hw = {0};
    for (uint32_t k = 0; k < 5000; k++) {
        ngtcp2_cid c = cid_of(k, SL_H3_SCIDLEN);
        ck_assert_int_eq(sl_h3_cid_add(&hw, &c, conn_of(k)), 0);
    }
    ck_assert_uint_eq(hw.ncids, 5000);
    ck_assert_uint_le(hw.used * 4, hw.cap * 3); /* the load bound held through growth */
    for (uint32_t k = 0; k < 5000; k++) {
        ngtcp2_cid c = cid_of(k, SL_H3_SCIDLEN);
        ck_assert_ptr_eq(sl_h3_cid_find(&hw, c.data, c.datalen), conn_of(k));
    }
    /* An ID of another length with the same leading bytes is another ID. */
    ngtcp2_cid shorter = cid_of(7, 8);
    ck_assert_ptr_null(sl_h3_cid_find(&hw, shorter.data, shorter.datalen));
    for (uint32_t k = 0; k < 5000; k += 2) {
        ngtcp2_cid c = cid_of(k, SL_H3_SCIDLEN);
        sl_h3_cid_remove(&hw, &c, conn_of(k + 1)); /* another conn's: kept */
        ck_assert_ptr_eq(sl_h3_cid_find(&hw, c.data, c.datalen), conn_of(k));
        sl_h3_cid_remove(&hw, &c, conn_of(k));
        sl_h3_cid_remove(&hw, &c, conn_of(k)); /* twice: harmless */
    }
    ck_assert_uint_eq(hw.ncids, 2500);
    for (uint32_t k = 0; k < 5000; k++) {
        ngtcp2_cid c = cid_of(k, SL_H3_SCIDLEN);
        sl_h3_conn_t *want = k % 2 ? conn_of(k) : NULL;
        ck_assert_ptr_eq(sl_h3_cid_find(&hw, c.data, c.datalen), want);
    }
    sl_free(hw.cids);
}
END_TEST

START_TEST(test_churn_reuses_tombstones)
{
    /* A steady state of 100 live IDs with IDs coming and going: the table
     * stays small (tombstones are reused or swept by growth). */
    sl_h3_worker_t hw = {0};
    for (uint32_t k = 0; k < 100000; k++) {
        ngtcp2_cid c = cid_of(k, SL_H3_SCIDLEN);
        ck_assert_int_eq(sl_h3_cid_add(&hw, &c, conn_of(k)), 0);
        if (k >= 100) {
            ngtcp2_cid old = cid_of(k - 100, SL_H3_SCIDLEN);
            sl_h3_cid_remove(&hw, &old, conn_of(k - 100));
        }
    }
    ck_assert_uint_eq(hw.ncids, 100);
    ck_assert_uint_le(hw.cap, 1024);
    for (uint32_t k = 100000 - 100; k < 100000; k++) {
        ngtcp2_cid c = cid_of(k, SL_H3_SCIDLEN);
        ck_assert_ptr_eq(sl_h3_cid_find(&hw, c.data, c.datalen), conn_of(k));
    }
    sl_free(hw.cids);
}
END_TEST

START_TEST(test_duplicate_refused)
{
    sl_h3_worker_t hw = {0};
    ngtcp2_cid c = cid_of(42, SL_H3_SCIDLEN);
    ck_assert_int_eq(sl_h3_cid_add(&hw, &c, conn_of(1)), 0);
    ck_assert_int_eq(sl_h3_cid_add(&hw, &c, conn_of(2)), SL_ECONFLICT);
    ck_assert_ptr_eq(sl_h3_cid_find(&hw, c.data, c.datalen), conn_of(1));
    ck_assert_ptr_null(sl_h3_cid_find(&(sl_h3_worker_t){0}, c.data, c.datalen));
    sl_free(hw.cids);
}
END_TEST

static Suite *cid_suite(void)
{
    Suite *s = suite_create("h3_cid");
    TCase *tc = sl_test_tcase("core");
    tcase_add_test(tc, test_add_find_remove);
    tcase_add_test(tc, test_churn_reuses_tombstones);
    tcase_add_test(tc, test_duplicate_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(cid_suite());
}
