/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/jobs/store.c: sequence numbers, reading from a
 * cursor, retention with an explicit dropped range, the END event and
 * final state, TTL expiry into tombstones (410) and their bound (404),
 * listing in creation order, Idempotency-Key reuse, and mirrors of
 * jobs held in Redis (events put at their own seq, a gap read as a
 * dropped range, END setting the final state, one job per id).
 */
#include "jobs/jobs_int.h"
#include "../helpers.h"
#include <check.h>
#include <stdlib.h>

static char xname[] = "x", xtype[] = "text/plain";
static sl_jobs_exec_def_t xdef = {.name = xname, .content_type = xtype};

static void setup_with(int64_t retain, int64_t tombs, int64_t budget, int64_t per_owner)
{
    sl_jobs_cfg_t cfg = {.max_jobs = 100,
                         .retain_bytes = retain,
                         .ttl_s = 1,
                         .heartbeat_s = 1,
                         .shards = 4,
                         .max_tombstones = tombs,
                         .max_wait_s = 1,
                         .max_jobs_per_owner = per_owner,
                         .max_retained_bytes = budget};
    sl_jobs_store_init(&cfg);
}

static void setup(int64_t retain, int64_t tombs)
{
    setup_with(retain, tombs, 256 << 20, 100);
}

static int try_create(const char *idem, const char *owner, sl_jobs_job_t **job)
{
    sl_jobs_spec_t spec = {.exec = &xdef,
                           .route = "/r",
                           .owner = owner,
                           .method = SL_STR("GET"),
                           .path = SL_STR("/r")};
    if (idem)
        spec.idem_key = (sl_str_t){idem, strlen(idem)};
    int existing;
    return sl_jobs_store_create(&spec, NULL, job, &existing);
}

static sl_jobs_job_t *create(const char *idem)
{
    sl_jobs_job_t *job;
    ck_assert_int_eq(try_create(idem, NULL, &job), 0);
    return job;
}

static void unref_all(sl_jobs_event_t **ev, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sl_jobs_event_unref(ev[i]);
}

START_TEST(read_from_cursor)
{
    setup(1 << 20, 10);
    sl_jobs_job_t *job = create(NULL);
    sl_jobs_event_t *ev[8];
    sl_jobs_read_t r;
    ck_assert_uint_eq(sl_jobs_emit(job, SL_JOBS_EV_DATA, "a", 1), 1);
    ck_assert_uint_eq(sl_jobs_emit(job, SL_JOBS_EV_DATA, "bb", 2), 2);
    ck_assert_uint_eq(sl_jobs_emit(job, SL_JOBS_EV_PROGRESS, "{}", 2), 3);
    size_t n = sl_jobs_read(job, 1, ev, 8, &r);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(ev[0]->seq, 2);
    ck_assert(memcmp(ev[0]->data, "bb", 2) == 0);
    ck_assert_int_eq(ev[1]->type, SL_JOBS_EV_PROGRESS);
    ck_assert_int_eq(r.ended, 0);
    unref_all(ev, n);
    ck_assert_uint_eq(sl_jobs_read(job, 3, ev, 8, &r), 0);
    sl_jobs_store_end(job, SL_JOBS_SUCCEEDED, 0);
    ck_assert_uint_eq(sl_jobs_emit(job, SL_JOBS_EV_DATA, "late", 4), 0); /* after END */
    n = sl_jobs_read(job, 3, ev, 8, &r);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(ev[0]->type, SL_JOBS_EV_END);
    ck_assert_int_eq(r.ended, 1);
    unref_all(ev, n);
    sl_jobs_info_t info;
    sl_jobs_job_info(job, &info);
    ck_assert_int_eq(info.state, SL_JOBS_SUCCEEDED);
    ck_assert_uint_eq(info.data_bytes, 3);
    ck_assert_uint_eq(info.last_seq, 4);
    sl_jobs_job_unref(job);
    sl_jobs_store_dispose();
}
END_TEST

START_TEST(retention_drops_oldest_and_says_so)
{
    char big[400];
    memset(big, 'x', sizeof(big));
    setup(1024, 10);
    sl_jobs_job_t *job = create(NULL);
    for (int i = 0; i < 10; i++)
        sl_jobs_emit(job, SL_JOBS_EV_DATA, big, sizeof(big));
    sl_jobs_event_t *ev[16];
    sl_jobs_read_t r;
    ck_assert_uint_eq(sl_jobs_read(job, 0, ev, 16, &r), 0);
    ck_assert_uint_eq(r.dropped_from, 1);
    ck_assert_uint_gt(r.dropped_to, 1);
    size_t n = sl_jobs_read(job, r.dropped_to, ev, 16, &r);
    ck_assert_uint_ge(n, 1);
    ck_assert_uint_eq(r.dropped_from, 0);
    ck_assert_uint_eq(ev[n - 1]->seq, 10);
    unref_all(ev, n);
    sl_jobs_info_t info;
    sl_jobs_job_info(job, &info);
    ck_assert_uint_eq(info.first_seq, info.dropped_upto + 1);
    /* a reader holding a dropped event keeps it alive */
    n = sl_jobs_read(job, 9, ev, 1, &r);
    for (int i = 0; i < 5; i++)
        sl_jobs_emit(job, SL_JOBS_EV_DATA, big, sizeof(big));
    ck_assert_uint_eq(ev[0]->seq, 10);
    ck_assert_int_eq(ev[0]->data[0], 'x');
    unref_all(ev, n);
    sl_jobs_job_unref(job);
    sl_jobs_store_dispose();
}
END_TEST

START_TEST(expiry_tombstones_bounded)
{
    setup(1 << 20, 1);
    sl_jobs_job_t *a = create(NULL), *b = create(NULL);
    char ida[SL_JOBS_ID_LEN + 1], idb[SL_JOBS_ID_LEN + 1];
    strcpy(ida, sl_jobs_job_id(a));
    strcpy(idb, sl_jobs_job_id(b));
    sl_jobs_store_end(a, SL_JOBS_SUCCEEDED, 0);
    sl_jobs_job_unref(a);
    int expired;
    sl_jobs_store_sweep(sl_wall_ms() + 500); /* not yet */
    a = sl_jobs_find((sl_str_t){ida, SL_JOBS_ID_LEN}, &expired);
    ck_assert_ptr_nonnull(a);
    sl_jobs_job_unref(a);
    sl_jobs_store_sweep(sl_wall_ms() + 2000);
    ck_assert_ptr_null(sl_jobs_find((sl_str_t){ida, SL_JOBS_ID_LEN}, &expired));
    ck_assert_int_eq(expired, 1);
    /* a running job never expires; a second tombstone pushes out the first */
    ck_assert_ptr_nonnull(b);
    sl_jobs_store_end(b, SL_JOBS_FAILED, 1);
    sl_jobs_job_unref(b);
    sl_jobs_store_sweep(sl_wall_ms() + 2000);
    ck_assert_ptr_null(sl_jobs_find((sl_str_t){idb, SL_JOBS_ID_LEN}, &expired));
    ck_assert_int_eq(expired, 1);
    ck_assert_ptr_null(sl_jobs_find((sl_str_t){ida, SL_JOBS_ID_LEN}, &expired));
    ck_assert_int_eq(expired, 0);
    sl_jobs_store_dispose();
}
END_TEST

START_TEST(list_in_creation_order_and_idempotency)
{
    setup(1 << 20, 10);
    sl_jobs_job_t *j[5], *out[8];
    for (int i = 0; i < 5; i++)
        j[i] = create(i == 4 ? "key" : NULL);
    sl_jobs_job_t *again = create("key");
    ck_assert_ptr_eq(again, j[4]);
    sl_jobs_job_unref(again);
    size_t n = sl_jobs_list(-1, NULL, NULL, (sl_str_t){NULL, 0}, out, 3);
    ck_assert_uint_eq(n, 3);
    for (size_t i = 1; i < n; i++)
        ck_assert_int_lt(strcmp(sl_jobs_job_id(out[i - 1]), sl_jobs_job_id(out[i])), 0);
    const char *last = sl_jobs_job_id(out[2]);
    sl_jobs_job_t *rest[8];
    size_t m = sl_jobs_list(-1, "/r", NULL, (sl_str_t){last, strlen(last)}, rest, 8);
    ck_assert_uint_eq(m, 2);
    ck_assert_uint_eq(sl_jobs_list(SL_JOBS_SUCCEEDED, NULL, NULL, (sl_str_t){NULL, 0}, rest + m, 1),
                      0);
    for (size_t i = 0; i < n; i++)
        sl_jobs_job_unref(out[i]);
    for (size_t i = 0; i < m; i++)
        sl_jobs_job_unref(rest[i]);
    for (int i = 0; i < 5; i++)
        sl_jobs_job_unref(j[i]);
    sl_jobs_store_dispose();
}
END_TEST

/* One owner's share; the slot frees when a job expires. */
START_TEST(per_owner_share)
{
    setup_with(1 << 20, 10, 256 << 20, 2);
    sl_jobs_job_t *a, *b, *c, *d;
    ck_assert_int_eq(try_create(NULL, "aaaa", &a), 0);
    ck_assert_int_eq(try_create(NULL, "aaaa", &b), 0);
    ck_assert_int_eq(try_create(NULL, "aaaa", &c), SL_ELIMIT);
    ck_assert_int_eq(try_create(NULL, "bbbb", &d), 0); /* another owner */
    sl_jobs_store_end(a, SL_JOBS_SUCCEEDED, 0);
    sl_jobs_store_sweep(sl_wall_ms() + 2000);
    ck_assert_int_eq(try_create(NULL, "aaaa", &c), 0);
    sl_jobs_job_unref(a);
    sl_jobs_job_unref(b);
    sl_jobs_job_unref(c);
    sl_jobs_job_unref(d);
    sl_jobs_store_dispose();
}
END_TEST

/* Past max_retained_bytes, finished jobs lose their events oldest-ended
 * first (keeping END), then the producing job sheds its own; new jobs are
 * refused while the total is over. */
START_TEST(global_budget)
{
    static char big[4096];
    setup_with(1 << 20, 10, 16384, 100);
    sl_jobs_job_t *old = create(NULL), *run = create(NULL), *x;
    sl_jobs_event_t *ev[8];
    sl_jobs_read_t r;
    for (int i = 0; i < 3; i++)
        sl_jobs_emit(old, SL_JOBS_EV_DATA, big, sizeof(big));
    sl_jobs_store_end(old, SL_JOBS_SUCCEEDED, 0);
    ck_assert_int_le(sl_jobs_budget_total(), 16384);
    for (int i = 0; i < 3; i++)
        sl_jobs_emit(run, SL_JOBS_EV_DATA, big, sizeof(big));
    /* the finished job went first: its data is gone, its END is not */
    ck_assert_uint_eq(sl_jobs_read(old, 0, ev, 8, &r), 0);
    ck_assert_uint_eq(r.dropped_from, 1);
    ck_assert_uint_eq(r.dropped_to, 3);
    size_t n = sl_jobs_read(old, 3, ev, 8, &r);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(ev[0]->type, SL_JOBS_EV_END);
    unref_all(ev, n);
    ck_assert_int_le(sl_jobs_budget_total(), 16384);
    /* nothing finished left to shed: the producer sheds its own */
    for (int i = 0; i < 4; i++)
        sl_jobs_emit(run, SL_JOBS_EV_DATA, big, sizeof(big));
    ck_assert_int_le(sl_jobs_budget_total(), 16384 + (int)sizeof(big) + 64);
    n = sl_jobs_read(run, 0, ev, 8, &r);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_gt(r.dropped_to, 0);
    /* new jobs: refused while at the budget (one event bigger than the
     * whole budget cannot be shed: it is the newest) */
    static char huge[20000];
    ck_assert_int_eq(try_create(NULL, NULL, &x), 0);
    sl_jobs_job_unref(x);
    sl_jobs_emit(run, SL_JOBS_EV_DATA, huge, sizeof(huge));
    ck_assert(sl_jobs_budget_full());
    ck_assert_int_eq(try_create(NULL, NULL, &x), SL_ENOMEM);
    sl_jobs_job_unref(old);
    sl_jobs_job_unref(run);
    sl_jobs_store_dispose();
    ck_assert_int_eq(sl_jobs_budget_total(), 0);
}
END_TEST

START_TEST(mirror_put_and_adopt)
{
    setup(1 << 20, 10);
    sl_jobs_mirror_meta_t m = {.id = "01HZZZZZZZZZZZZZZZZZZZZZZZ", .owner = "", .route = "/r",
                               .executor = "w", .method = "GET", .path = "/r"};
    sl_jobs_job_t *job = sl_jobs_store_mirror_new(&m), *twin = sl_jobs_store_mirror_new(&m);
    ck_assert_int_eq(sl_jobs_store_put(job, 1, SL_JOBS_EV_STARTED, "{}", 2), 0);
    ck_assert_int_eq(sl_jobs_store_put(job, 1, SL_JOBS_EV_STARTED, "{}", 2), 0); /* again */
    ck_assert_int_eq(sl_jobs_store_put(job, 5, SL_JOBS_EV_DATA, "abc", 3), 0);   /* 2-4 trimmed */
    sl_jobs_info_t info;
    sl_jobs_job_info(job, &info);
    ck_assert_int_eq(info.state, SL_JOBS_RUNNING);
    ck_assert_int_eq(info.dropped_upto, 4);
    ck_assert_int_eq(info.last_seq, 5);
    sl_jobs_event_t *ev[4];
    sl_jobs_read_t rd;
    ck_assert_uint_eq(sl_jobs_read(job, 0, ev, 4, &rd), 0);
    ck_assert_int_eq(rd.dropped_from, 1);
    ck_assert_int_eq(rd.dropped_to, 4);
    const char *end = "{\"state\":\"cancelled\",\"exit_code\":-1}";
    ck_assert_int_eq(sl_jobs_store_put(job, 6, SL_JOBS_EV_END, end, strlen(end)), 1);
    sl_jobs_job_info(job, &info);
    ck_assert_int_eq(info.state, SL_JOBS_CANCELLED);
    ck_assert_int_eq(sl_jobs_store_put(job, 7, SL_JOBS_EV_DATA, "x", 1), 1); /* after the end */
    /* One job per id in the table: a second mirror gets the first. */
    sl_jobs_job_t *in = sl_jobs_store_adopt(job), *again = sl_jobs_store_adopt(twin);
    ck_assert_ptr_eq(in, job);
    ck_assert_ptr_eq(again, job);
    int expired;
    sl_jobs_job_t *found = sl_jobs_find((sl_str_t){m.id, SL_JOBS_ID_LEN}, &expired);
    ck_assert_ptr_eq(found, job);
    sl_jobs_job_unref(found);
    sl_jobs_job_unref(again);
    sl_jobs_job_unref(in);
    sl_jobs_job_unref(twin);
    sl_jobs_job_unref(job);
    sl_jobs_store_dispose();
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("jobs_store");
    TCase *tc = sl_test_tcase("store");
    tcase_add_test(tc, read_from_cursor);
    tcase_add_test(tc, retention_drops_oldest_and_says_so);
    tcase_add_test(tc, expiry_tombstones_bounded);
    tcase_add_test(tc, list_in_creation_order_and_idempotency);
    tcase_add_test(tc, per_owner_share);
    tcase_add_test(tc, global_budget);
    tcase_add_test(tc, mirror_put_and_adopt);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(store_suite());
}
