/* sluice - SPDX-License-Identifier: MIT
 *
 * libFuzzer entry for the HTTP cache's RFC 9111 rules (src/cache/
 * policy.c): the input is a status byte, then header lines "name: value"
 * separated by newlines, used as a response's fields and as a request's.
 * Whatever the fields say, the lifetime and the age must be finite and
 * not negative, a directive's delta-seconds never negative unless absent
 * (-1), and the Vary values of a request must fit their buffer.
 */
#include "cache/cache_int.h"
#include <ctype.h>
#include <math.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 32

static void check(int cond)
{
    if (!cond)
        abort();
}

static size_t parse_fields(char *s, size_t n, sl_header_t *h)
{
    size_t k = 0, i = 0;
    while (i < n && k < MAX_FIELDS) {
        size_t b = i;
        while (i < n && s[i] != '\n')
            i++;
        char *colon = memchr(s + b, ':', i - b);
        if (colon) {
            for (char *c = s + b; c < colon; c++)
                *c = (char)tolower((unsigned char)*c);
            h[k].name = (sl_str_t){s + b, (size_t)(colon - (s + b))};
            h[k].value = sl_str_trim_ows((sl_str_t){colon + 1, (size_t)(s + i - colon - 1)});
            k++;
        }
        i++;
    }
    return k;
}

static void check_cc(const cc_cc_t *c)
{
    const int64_t v[] = {c->max_age, c->s_maxage, c->swr, c->sie, c->min_fresh, c->max_stale};
    for (size_t i = 0; i < SL_ARRAY_LEN(v); i++)
        check(v[i] >= -1 && v[i] <= INT32_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    static const int statuses[] = {200, 203, 204, 206, 300, 301, 302, 304, 307,
                                   308, 404, 405, 410, 414, 451, 500, 501, 503};
    int status = statuses[data[0] % SL_ARRAY_LEN(statuses)];
    char *s = malloc(size);
    memcpy(s, data + 1, size - 1);
    sl_header_t h[MAX_FIELDS];
    size_t n = parse_fields(s, size - 1, h);
    cc_resp_t r = {status, h, n, {0}, 1.7e9};
    cc_cc_parse(h, n, &r.cc);
    check_cc(&r.cc);
    cc_cc_t q;
    cc_cc_parse(h, n, &q);
    (void)cc_unstorable(&r, &q, data[0] & 1);
    double life = cc_lifetime(&r), age = cc_initial_age(&r, 1.7e9 - (data[0] & 7));
    check(isfinite(life) && life >= 0);
    check(isfinite(age) && age >= 0);
    sl_req_t req;
    sl_req_init(&req, SL_PROTO_H1, NULL);
    req.headers = (sl_headers_t){h, n, MAX_FIELDS};
    const sl_header_t *vary = cc_find(h, n, "vary");
    if (vary) {
        char out[CC_VARY_MAX];
        ssize_t k = cc_vary_values(&req, vary->value, out, sizeof(out));
        check(k == SL_ETOOBIG || (k >= 0 && (size_t)k <= sizeof(out)));
    }
    sl_req_dispose(&req);
    free(s);
    return 0;
}
