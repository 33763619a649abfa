/* sluice - SPDX-License-Identifier: MIT
 *
 * libFuzzer entry for the PROXY protocol header parser (src/proxyproto.c).
 * An accepted header is no longer than the input and its bound; every
 * proper prefix of it asks for more (conn.c consumes such bytes as
 * header); the same input parses the same way twice; an input asking for
 * more is shorter than the bound.
 */
#include "proxyproto.h"
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_pp_t r, r2;
    ssize_t n = sl_pp_parse(data, size, &r);
    check(n == SL_EINVAL || n >= 0);
    if (n == 0) {
        check(size < SL_PP_V2_MAX);
        return 0;
    }
    if (n < 0)
        return 0;
    check((size_t)n <= size && (size_t)n <= SL_PP_V2_MAX);
    check(r.local || r.srclen > 0);
    for (size_t k = 0; k < (size_t)n; k += 1 + (size_t)n / 64)
        check(sl_pp_parse(data, k, &r2) == 0);
    check(sl_pp_parse(data, (size_t)n, &r2) == n && r2.local == r.local);
    return 0;
}
