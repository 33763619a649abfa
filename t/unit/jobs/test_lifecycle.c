/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/jobs/lifecycle.c with the real jobs thread and the
 * builtin ticker: a cancel that reaches the jobs thread before the job's
 * start (the job is still being created) cancels it, and an aborted job
 * fails with its reason instead of succeeding.
 */
#include "jobs/jobs_int.h"
#include "../helpers.h"
#include <check.h>
#include <time.h>
#include <unistd.h>

static sl_jobs_exec_def_t def;
static char xname[] = "tick", xtype[] = "text/plain";

static void start(void)
{
    char err[256];
    json_t *o = json_pack("{s:s}", "kind", "ticker");
    memset(&def, 0, sizeof(def));
    def.name = xname;
    def.content_type = xtype;
    def.ops = &sl_jobs_exec_builtin;
    def.concurrency = 4;
    def.queue = 4;
    ck_assert_int_eq(def.ops->parse(o, "t", &def.opts, err, sizeof(err)), 0);
    json_decref(o);
    ck_assert_int_eq(sl_jobs_start(NULL), 0);
}

static void stop(void)
{
    sl_jobs_stop();
    def.ops->free_opts(def.opts);
}

static sl_jobs_job_t *create(const char *query)
{
    char err[256];
    void *params = NULL;
    int existing;
    sl_jobs_job_t *job;
    sl_jobs_spec_t spec = {
        .exec = &def, .route = "/t", .method = SL_STR("GET"), .path = SL_STR("/t")};
    ck_assert_int_eq(
        def.ops->prepare(&def, (sl_str_t){query, strlen(query)}, &params, err, sizeof(err)), 0);
    atomic_fetch_add(&def.admitted, 1); /* what sl_jobs_submit does first */
    ck_assert_int_eq(sl_jobs_store_create(&spec, params, &job, &existing), 0);
    return job;
}

static sl_jobs_state_t wait_final(sl_jobs_job_t *job, sl_jobs_info_t *info)
{
    for (int i = 0; i < 500; i++) {
        sl_jobs_job_info(job, info);
        if (sl_jobs_state_is_final(info->state))
            return info->state;
        usleep(10000);
    }
    ck_abort_msg("the job never ended");
    return SL_JOBS_QUEUED;
}

/* The race the API leaves open: DELETE /jobs/{id} from another worker
 * lands between the job entering the table and its start command. */
START_TEST(cancel_before_start)
{
    start();
    sl_jobs_job_t *job = create("n=1000&interval_ms=10");
    sl_jobs_cancel(job);            /* the cancel is queued first ... */
    sl_jobs_lifecycle_enqueue(job); /* ... then the start */
    sl_jobs_info_t info;
    ck_assert_int_eq(wait_final(job, &info), SL_JOBS_CANCELLED);
    ck_assert_uint_eq(info.data_bytes, 0); /* it never ran */
    ck_assert_int_eq(atomic_load(&def.admitted), 0);
    sl_jobs_job_unref(job);
    stop();
}
END_TEST

START_TEST(abort_fails_the_job)
{
    start();
    sl_jobs_job_t *job = create("n=1000&interval_ms=10");
    sl_jobs_lifecycle_enqueue(job);
    usleep(50000);
    sl_jobs_abort(job, "client_aborted");
    sl_jobs_info_t info;
    ck_assert_int_eq(wait_final(job, &info), SL_JOBS_FAILED);
    ck_assert(sl_jobs_is_aborted(job));
    sl_jobs_job_unref(job);
    stop();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("jobs_lifecycle");
    TCase *tc = sl_test_tcase("lifecycle");
    tcase_add_test(tc, cancel_before_start);
    tcase_add_test(tc, abort_fails_the_job);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(suite());
}
