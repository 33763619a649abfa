/* sluice - SPDX-License-Identifier: MIT
 *
 * What other modules hang on jobs without jobs/ knowing them: keys in
 * every executor object (reply/'s "reply_to") and observers of job ends
 * (reply/ delivers results). Both are registered on the main thread
 * before the config is loaded and the jobs thread starts, and never
 * change after, so reading them needs no lock.
 */
#include "jobs_int.h"

static const sl_jobs_exec_key_t *keys[SL_JOBS_MAX_EXEC_KEYS];
static size_t nkeys;
static const sl_jobs_observer_t *observers[SL_JOBS_MAX_OBSERVERS];
static size_t nobservers;

int sl_jobs_exec_key_register(const sl_jobs_exec_key_t *k)
{
    for (size_t i = 0; i < nkeys; i++)
        if (keys[i] == k)
            return (int)i; /* tests and re-runs register twice */
    SL_ASSERT(nkeys < SL_JOBS_MAX_EXEC_KEYS);
    keys[nkeys] = k;
    return (int)nkeys++;
}

void *sl_jobs_exec_key_value(const sl_jobs_exec_def_t *x, int slot)
{
    return x && slot >= 0 && (size_t)slot < nkeys ? x->ext[slot] : NULL;
}

size_t sl_jobs_ext_key_names(const char **out, size_t cap)
{
    size_t n = 0;
    for (; n < nkeys && n < cap; n++)
        out[n] = keys[n]->name;
    return n;
}

int sl_jobs_ext_parse(json_t *obj, const char *path, sl_jobs_exec_def_t *x, char *err,
                      size_t errlen)
{
    for (size_t i = 0; i < nkeys; i++) {
        json_t *v = json_object_get(obj, keys[i]->name);
        if (v && keys[i]->parse(v, path, &x->ext[i], err, errlen) != 0)
            return SL_EINVAL;
    }
    return 0;
}

void sl_jobs_ext_free(sl_jobs_exec_def_t *x)
{
    for (size_t i = 0; i < nkeys; i++)
        if (x->ext[i])
            keys[i]->free(x->ext[i]);
}

void sl_jobs_observe(const sl_jobs_observer_t *o)
{
    for (size_t i = 0; i < nobservers; i++)
        if (observers[i] == o)
            return;
    SL_ASSERT(nobservers < SL_JOBS_MAX_OBSERVERS);
    observers[nobservers++] = o;
}

void sl_jobs_ext_on_end(sl_jobs_job_t *job)
{
    for (size_t i = 0; i < nobservers; i++)
        if (observers[i]->on_end)
            observers[i]->on_end(job);
}

void sl_jobs_ext_on_stop(void)
{
    for (size_t i = 0; i < nobservers; i++)
        if (observers[i]->on_stop)
            observers[i]->on_stop();
}
