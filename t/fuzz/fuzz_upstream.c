/* sluice - SPDX-License-Identifier: MIT
 *
 * libFuzzer entry for what the proxy reads from an upstream: the response
 * head parser (sl_h1_parse_response) and, after the head, the chunked
 * body decoder (sl_h1_chunked_decode), fed in pieces whose sizes come
 * from the first input byte. Invariants: consumption stays inside the
 * input, a parsed head has a status 100..999 and field names without
 * spaces, decoded body runs point into the input and never exceed it, and
 * decoding in pieces gives the same bytes as decoding at once.
 */
#include "h1/h1.h"
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXH 64

static void check(int cond)
{
    if (!cond)
        abort();
}

typedef struct sink {
    const uint8_t *lo, *hi;
    uint8_t *buf;
    size_t n;
} sink_t;

static void on_run(void *arg, const uint8_t *p, size_t n)
{
    sink_t *s = arg;
    check(p >= s->lo && p + n <= s->hi);
    memcpy(s->buf + s->n, p, n);
    s->n += n;
}

/* Decode in[0..len) in pieces of step; returns 0 ok, -1 error. */
static int decode(const uint8_t *in, size_t len, size_t step, sink_t *s)
{
    sl_h1_chunked_t d;
    sl_h1_chunked_init(&d, 1024);
    size_t off = 0;
    s->lo = in;
    s->hi = in + len;
    while (off < len && !d.done) {
        size_t k = step < len - off ? step : len - off;
        ssize_t r = sl_h1_chunked_decode(&d, in + off, k, on_run, s);
        if (r < 0)
            return -1;
        check((size_t)r <= k);
        off += (size_t)r;
        if ((size_t)r < k && !d.done)
            return -1; /* the decoder must take a whole piece unless done */
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)(data[0] % 17) + 1;
    const uint8_t *in = data + 1;
    size_t len = size - 1, used = 0;
    sl_header_t hdrs[MAXH];
    sl_h1_head_t head = {.headers = hdrs, .max_headers = MAXH};
    sl_h1_limits_t lim = {8192, 16384, MAXH};
    sl_h1_parse_status_t st = sl_h1_parse_response(in, len, &lim, &head, &used);
    if (st == SL_H1_OK) {
        check(used <= len);
        check(head.status >= 100 && head.status <= 999);
        for (size_t i = 0; i < head.nheaders; i++)
            check(head.headers[i].name.n > 0 &&
                  !memchr(head.headers[i].name.p, ' ', head.headers[i].name.n));
        in += used;
        len -= used;
    } else if (st == SL_H1_INCOMPLETE) {
        return 0;
    }
    /* The body (or the whole input after a bad head) as chunked. */
    sink_t whole = {.buf = malloc(len + 1)}, pieces = {.buf = malloc(len + 1)};
    int a = decode(in, len, len ? len : 1, &whole);
    int b = decode(in, len, step, &pieces);
    check(a == b);
    if (a == 0)
        check(whole.n == pieces.n && memcmp(whole.buf, pieces.buf, whole.n) == 0);
    check(whole.n <= len);
    free(whole.buf);
    free(pieces.buf);
    return 0;
}
