/* sluice - SPDX-License-Identifier: MIT
 *
 * What an executor that sends the request on (upstream, redis) keeps of
 * it: the query, and the header fields its "headers" key names (parsed
 * once, then picked from the job's copy of the request head).
 */
#include "jobs_int.h"
#include "../req.h"
#include <stdio.h>

#define MAX_FIELDS 100

void sl_jobs_fields_free(sl_jobs_fields_t *f)
{
    for (size_t i = 0; i < f->n; i++)
        sl_free(f->v[i]);
    sl_free(f->v);
    f->v = NULL;
    f->n = 0;
}

int sl_jobs_fields_parse(json_t *a, const char *p, sl_jobs_fields_t *f, char *err, size_t errlen)
{
    static const char *const dflt[] = {"content-type", "accept", "user-agent"};
    size_t n = a ? json_array_size(a) : SL_ARRAY_LEN(dflt);
    if ((a && !json_is_array(a)) || n > MAX_FIELDS) {
        snprintf(err, errlen, "%s.headers: must be an array of up to %d names", p, MAX_FIELDS);
        return SL_EINVAL;
    }
    f->v = sl_calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const char *s = a ? json_string_value(json_array_get(a, i)) : dflt[i];
        if (!s || !*s) {
            snprintf(err, errlen, "%s.headers[%zu]: must be a header name", p, i);
            return SL_EINVAL;
        }
        char *l = sl_strdup(s);
        for (char *c = l; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        f->v[f->n++] = l;
        /* What the request writer sets, or what belongs to one hop. */
        if (sl_field_is_connection_specific((sl_str_t){l, strlen(l)}) || strcmp(l, "host") == 0 ||
            strcmp(l, "content-length") == 0) {
            snprintf(err, errlen, "%s.headers: %s is set by sluice", p, l);
            return SL_EINVAL;
        }
    }
    return 0;
}

/* The query goes with the job (params), so the request can be rebuilt
 * where the work runs. */
int sl_jobs_prepare_query(const sl_jobs_exec_def_t *x, sl_str_t query, void **params, char *err,
                          size_t errlen)
{
    SL_UNUSED(x);
    SL_UNUSED(err);
    SL_UNUSED(errlen);
    *params = sl_strndup(query.p ? query.p : "", query.n);
    return 0;
}

static int wanted(const sl_jobs_fields_t *f, const char *name, size_t n)
{
    for (size_t i = 0; i < f->n; i++)
        if (strlen(f->v[i]) == n && memcmp(f->v[i], name, n) == 0)
            return 1;
    return 0;
}

void sl_jobs_fields_each(const sl_jobs_fields_t *f, const char *headers, sl_jobs_field_fn fn,
                         void *arg)
{
    for (const char *l = headers; l && *l;) {
        const char *e = strstr(l, "\r\n"), *c = strchr(l, ':');
        if (!e)
            break;
        if (c && c < e && wanted(f, l, (size_t)(c - l)))
            fn(arg, l, (size_t)(c - l), (size_t)(e - l));
        l = e + 2;
    }
}
