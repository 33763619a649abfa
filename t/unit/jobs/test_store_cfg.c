/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for the "jobs.store" section (src/jobs/config.c): the
 * memory default, redis:// and unix: URLs with password and database,
 * and every malformed URL refused with the key's JSON path.
 */
#include "config.h"
#include "jobs/jobs_int.h"
#include "../helpers.h"
#include <check.h>

static char err[512];

/* Parse {"store": store} as the jobs section; 0 or SL_EINVAL. */
static int load(const char *store, sl_jobs_store_cfg_t *out)
{
    char text[1024];
    void *state = NULL;
    snprintf(text, sizeof(text), "{\"store\": %s}", store);
    json_t *v = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(v);
    err[0] = '\0';
    int rv = sl_jobs_section.parse(v, "jobs", &state, err, sizeof(err));
    if (state)
        *out = ((sl_jobs_cfg_t *)state)->store;
    sl_jobs_section.free_state(state);
    json_decref(v);
    return rv;
}

START_TEST(memory_by_default)
{
    sl_jobs_cfg_t c;
    sl_jobs_config_defaults(&c);
    ck_assert_int_eq(c.store.redis, 0);
    ck_assert_str_eq(c.store.prefix, "sluice:");
    ck_assert_int_eq(c.store.max_events, 10000);
    sl_jobs_config_dispose(&c);
}
END_TEST

START_TEST(redis_urls)
{
    sl_jobs_store_cfg_t s;
    ck_assert_int_eq(load("{\"type\": \"redis\", \"url\": \"redis://:s3cret@db.local:6380/2\","
                          " \"prefix\": \"a:\"}",
                          &s),
                     0);
    ck_assert_int_eq(s.redis, 1);
    ck_assert_str_eq(s.host, "db.local");
    ck_assert_int_eq(s.port, 6380);
    ck_assert_int_eq(s.db, 2);
    ck_assert_str_eq(s.password, "s3cret");
    ck_assert_str_eq(s.prefix, "a:");
    ck_assert_int_eq(load("{\"type\": \"redis\", \"url\": \"redis://10.0.0.5\"}", &s), 0);
    ck_assert_str_eq(s.host, "10.0.0.5");
    ck_assert_int_eq(s.port, 6379);
    ck_assert_int_eq(s.db, 0);
    ck_assert_str_eq(s.password, "");
    ck_assert_int_eq(load("{\"type\": \"redis\", \"url\": \"unix:/run/redis.sock?db=3\"}", &s), 0);
    ck_assert_str_eq(s.unix_path, "/run/redis.sock");
    ck_assert_int_eq(s.db, 3);
}
END_TEST

START_TEST(bad_urls_name_the_key)
{
    sl_jobs_store_cfg_t s;
    static const char *const bad[] = {
        "{\"type\": \"redis\", \"url\": \"http://x\"}",
        "{\"type\": \"redis\", \"url\": \"redis://:6379\"}",
        "{\"type\": \"redis\", \"url\": \"redis://h:99999\"}",
        "{\"type\": \"redis\", \"url\": \"redis://h/x\"}",
        "{\"type\": \"redis\", \"url\": \"unix:relative.sock\"}",
        "{\"type\": \"redis\", \"url\": \"unix:/r.sock?db=x\"}",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        ck_assert_int_eq(load(bad[i], &s), SL_EINVAL);
        ck_assert_msg(strstr(err, "jobs.store.url") != NULL, "%s -> %s", bad[i], err);
    }
    ck_assert_int_eq(load("{\"type\": \"disk\"}", &s), SL_EINVAL);
    ck_assert(strstr(err, "jobs.store.type") != NULL);
    ck_assert_int_eq(load("{\"type\": \"redis\", \"bogus\": 1}", &s), SL_EINVAL);
    ck_assert(strstr(err, "jobs.store.bogus") != NULL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("jobs_store_cfg");
    TCase *tc = sl_test_tcase("store");
    tcase_add_test(tc, memory_by_default);
    tcase_add_test(tc, redis_urls);
    tcase_add_test(tc, bad_urls_name_the_key);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(suite());
}
