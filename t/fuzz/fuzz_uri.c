/* sluice - SPDX-License-Identifier: MIT
 *
 * libFuzzer entry for request path normalisation (src/uri.c). The first
 * input byte picks the flags; the rest is the path (a '/' is put in front
 * when missing, as every routed path starts with one). An accepted path
 * must come out no longer, starting with '/', with no empty, "." or ".."
 * segment, only VCHAR bytes, and normalising it again must change nothing
 * (the router's answer cannot depend on how often it normalised).
 */
#include "uri.h"
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_normal(sl_str_t p)
{
    check(p.n >= 1 && p.p[0] == '/');
    for (size_t i = 0; i < p.n; i++) {
        check(sl_uri_is_target_byte((uint8_t)p.p[i]));
        if (p.p[i] != '/')
            continue;
        size_t e = i + 1;
        while (e < p.n && p.p[e] != '/')
            e++;
        size_t seg = e - i - 1;
        if (e < p.n) /* not the last: never empty */
            check(seg > 0);
        check(!(seg == 1 && p.p[i + 1] == '.'));
        check(!(seg == 2 && p.p[i + 1] == '.' && p.p[i + 2] == '.'));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned flags = data[0] & 1 ? SL_URI_KEEP_ENCODED_SLASH : 0;
    char *buf = malloc(size + 1);
    buf[0] = '/';
    size_t n = 1;
    if (size > 1 && data[1] == '/')
        n = 0;
    memcpy(buf + n, data + 1, size - 1);
    n += size - 1;
    sl_pool_t pool;
    sl_pool_init(&pool);
    sl_str_t out, again;
    const char *why = NULL;
    if (sl_uri_normalize_path((sl_str_t){buf, n}, flags, &pool, &out, &why) == 0) {
        check(out.n <= n);
        check_normal(out);
        check(sl_uri_normalize_path(out, flags, &pool, &again, &why) == 0);
        check(again.n == out.n && memcmp(again.p, out.p, out.n) == 0);
    } else {
        check(why != NULL);
    }
    sl_pool_dispose(&pool);
    free(buf);
    return 0;
}
