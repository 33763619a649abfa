/* sluice - SPDX-License-Identifier: MIT
 *
 * libFuzzer entry for the HTTP/1.1 parsers (src/h1/parse.c, chunked.c).
 * The first byte picks the target: request head, response head or chunked
 * body. Each input is also fed split in two, and the results must agree:
 * resumption may never change a verdict. Build with clang only, e.g.
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *     t/fuzz/fuzz_h1.c src/h1/parse.c src/h1/chunked.c src/sl.c -o fuzz_h1
 */
#include "h1/h1_int.h"
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const sl_h1_limits_t lim = {.max_uri = 256, .max_head = 4096, .max_headers = 32};

static void check(int cond)
{
    if (!cond)
        abort();
}

static void fuzz_head(const uint8_t *p, size_t n, int response)
{
    sl_header_t hdrs[32];
    sl_h1_head_t h = {.headers = hdrs, .max_headers = 32};
    size_t used = 0;
    sl_h1_parse_status_t st = response ? sl_h1_parse_response(p, n, &lim, &h, &used)
                                       : sl_h1_parse_request(p, n, &lim, &h, &used);
    if (st == SL_H1_OK) {
        check(used <= n && used <= lim.max_head);
        check(h.nheaders <= 32);
        check(!(h.chunked && h.content_length >= 0));
        /* Every strict prefix of an accepted head is incomplete. */
        for (size_t k = used > 64 ? used - 64 : 0; k < used; k++) {
            sl_h1_head_t h2 = {.headers = hdrs, .max_headers = 32};
            size_t u2;
            sl_h1_parse_status_t s2 = response ? sl_h1_parse_response(p, k, &lim, &h2, &u2)
                                               : sl_h1_parse_request(p, k, &lim, &h2, &u2);
            check(s2 == SL_H1_INCOMPLETE);
        }
    } else if (st != SL_H1_INCOMPLETE) {
        check(h.error != NULL);
    }
}

typedef struct sink {
    size_t total;
    const uint8_t *lo, *hi;
} sink_t;

static void on_data(void *arg, const uint8_t *p, size_t n)
{
    sink_t *s = arg;
    check(p >= s->lo && p + n <= s->hi);
    s->total += n;
}

static void fuzz_chunked(const uint8_t *p, size_t n)
{
    sl_h1_chunked_t a, b;
    sink_t sa = {0, p, p + n}, sb = {0, p, p + n};
    sl_h1_chunked_init(&a, 64);
    ssize_t ra = sl_h1_chunked_decode(&a, p, n, on_data, &sa);
    /* The same bytes in two calls. */
    size_t cut = n / 2;
    sl_h1_chunked_init(&b, 64);
    ssize_t r1 = sl_h1_chunked_decode(&b, p, cut, on_data, &sb);
    if (r1 < 0) {
        check(ra == r1);
        return;
    }
    ssize_t r2 = b.done ? 0 : sl_h1_chunked_decode(&b, p + cut, n - cut, on_data, &sb);
    if (ra < 0) {
        check(r2 == ra);
        return;
    }
    check(r2 >= 0 && (size_t)(r1 + r2) == (size_t)ra && a.done == b.done);
    check(sa.total == sb.total);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0: fuzz_head(data + 1, size - 1, 0); break;
    case 1: fuzz_head(data + 1, size - 1, 1); break;
    default: fuzz_chunked(data + 1, size - 1); break;
    }
    return 0;
}
