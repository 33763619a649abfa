/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/config_life.c: a snapshot's two counts and the queue
 * the main thread empties (retire, then free), with a job's reference
 * outliving the connections.
 */
#include "config.h"
#include "helpers.h"
#include <check.h>

static sl_config_t *load(void)
{
    char err[256];
    sl_config_t *cfg =
        sl_config_load_string("{\"listen\": [{\"addr\": \"127.0.0.1:0\"}]}", "t", err, sizeof(err));
    ck_assert_msg(cfg != NULL, "%s", err);
    return cfg;
}

START_TEST(retire_then_free)
{
    sl_config_t *cfg = load();
    sl_config_hold(cfg); /* a worker */
    sl_config_hold(cfg); /* a connection */
    sl_config_release(cfg); /* the loader's: a reload replaced it */
    sl_config_release(cfg);
    ck_assert_ptr_null(sl_config_next_retired());
    sl_config_release(cfg); /* the last connection */
    sl_config_t *q = sl_config_next_retired();
    ck_assert_ptr_eq(q, cfg);
    ck_assert_int_eq(q->stage, SL_CONFIG_RETIRE);
    ck_assert_ptr_null(sl_config_next_retired());
    /* two workers asked, plus the main thread's own acknowledgement */
    sl_config_expect_acks(cfg, 2);
    sl_config_retire_worker(cfg, 0);
    sl_config_ack(cfg);
    ck_assert_ptr_null(sl_config_next_retired());
    sl_config_retire_worker(cfg, 1);
    q = sl_config_next_retired();
    ck_assert_ptr_eq(q, cfg);
    ck_assert_int_eq(q->stage, SL_CONFIG_FREE);
    sl_config_free(cfg);
}
END_TEST

START_TEST(job_reference_outlives_connections)
{
    sl_config_t *cfg = load();
    sl_config_ref(cfg); /* a job */
    sl_config_release(cfg);
    sl_config_t *q = sl_config_next_retired();
    ck_assert_ptr_eq(q, cfg);
    sl_config_expect_acks(cfg, 0);
    sl_config_ack(cfg);
    ck_assert_ptr_null(sl_config_next_retired()); /* the job still needs it */
    sl_config_unref(cfg);
    q = sl_config_next_retired();
    ck_assert_ptr_eq(q, cfg);
    ck_assert_int_eq(q->stage, SL_CONFIG_FREE);
    sl_config_free(cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config_life");
    TCase *tc = sl_test_tcase("config_life");
    tcase_add_test(tc, retire_then_free);
    tcase_add_test(tc, job_reference_outlives_connections);
    suite_add_tcase(s, tc);
    return sl_test_run(s);
}
