/* sluice - SPDX-License-Identifier: MIT
 *
 * Allocation wrappers with a fail-the-Nth-call hook for tests, the assert
 * handler, clocks and small string helpers shared by every module.
 */
#include "sl.h"
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

static atomic_long fail_countdown; /* 0 = off; else fail when it reaches 1 */
static atomic_long live_blocks;

void sl_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "sluice: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

static int should_fail(void)
{
    long v = atomic_load(&fail_countdown);
    while (v > 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &v, v - 1))
            return v == 1;
    }
    return 0;
}

void sl_alloc_fail_nth(long n)
{
    atomic_store(&fail_countdown, n);
}

long sl_alloc_count(void)
{
    return atomic_load(&live_blocks);
}

static void oom(size_t n)
{
    fprintf(stderr, "sluice: out of memory allocating %zu bytes\n", n);
    abort();
}

void *sl_try_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    void *p = malloc(n ? n : 1);
    if (p)
        atomic_fetch_add(&live_blocks, 1);
    return p;
}

void *sl_try_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    void *q = realloc(p, n ? n : 1);
    if (q && !p)
        atomic_fetch_add(&live_blocks, 1);
    return q;
}

void *sl_malloc(size_t n)
{
    void *p = sl_try_malloc(n);
    if (!p)
        oom(n);
    return p;
}

void *sl_calloc(size_t n, size_t sz)
{
    if (sz && n > SIZE_MAX / sz)
        oom(SIZE_MAX);
    void *p = sl_malloc(n * sz);
    memset(p, 0, n * sz);
    return p;
}

void *sl_realloc(void *p, size_t n)
{
    void *q = sl_try_realloc(p, n);
    if (!q)
        oom(n);
    return q;
}

char *sl_strndup(const char *s, size_t n)
{
    char *d = sl_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *sl_strdup(const char *s)
{
    return s ? sl_strndup(s, strlen(s)) : NULL;
}

char *sl_strdup_printf(size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    SL_ASSERT(n >= 0);
    char *s = sl_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    if (len)
        *len = (size_t)n;
    return s;
}

void sl_free(void *p)
{
    if (!p)
        return;
    atomic_fetch_sub(&live_blocks, 1);
    free(p);
}

void sl_hex_encode(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

char *sl_base64_encode(const uint8_t *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = sl_malloc((n + 2) / 3 * 4 + 1), *w = o;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *w++ = tab[v >> 18 & 63];
        *w++ = tab[v >> 12 & 63];
        *w++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *w++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *w = '\0';
    return o;
}

int sl_traceparent_is_valid(sl_str_t v)
{
    if (v.n != 55 || v.p[2] != '-' || v.p[35] != '-' || v.p[52] != '-')
        return 0;
    for (size_t i = 0; i < v.n; i++) {
        char c = v.p[i];
        if (i != 2 && i != 35 && i != 52 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}

int sl_hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

sl_str_t sl_str_trim_ows(sl_str_t s)
{
    while (s.n && (*s.p == ' ' || *s.p == '\t'))
        s.p++, s.n--;
    while (s.n && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
        s.n--;
    return s;
}

int sl_str_is_token(sl_str_t s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (s.n == 0)
        return 0;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c && strchr(extra, c))))
            return 0;
    }
    return 1;
}

int sl_str_has_token(sl_str_t v, const char *tok)
{
    return sl_str_has_token_s(v, (sl_str_t){tok, strlen(tok)});
}

int sl_str_has_token_s(sl_str_t v, sl_str_t tok)
{
    const char *s = v.p, *end = v.p + v.n;
    if (tok.n == 0)
        return 0;
    while (s < end) {
        const char *e = memchr(s, ',', (size_t)(end - s));
        if (!e)
            e = end;
        sl_str_t el = sl_str_trim_ows((sl_str_t){s, (size_t)(e - s)});
        if (el.n == tok.n && strncasecmp(el.p, tok.p, tok.n) == 0)
            return 1;
        s = e + 1;
    }
    return 0;
}

int sl_str_parse_u64(sl_str_t s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (s.n == 0)
        return SL_EINVAL;
    uint64_t v = 0;
    int over = 0;
    for (size_t i = 0; i < s.n; i++) {
        unsigned d = (unsigned char)s.p[i] - '0';
        if (d > 9)
            return SL_EINVAL;
        if (v > (UINT64_MAX - d) / 10)
            over = 1; /* keep scanning: a later non-digit is still EINVAL */
        else
            v = v * 10 + d;
    }
    if (over || v < min || v > max)
        return SL_ETOOBIG;
    *out = v;
    return 0;
}

int64_t sl_str_to_u64(sl_str_t s)
{
    uint64_t v;
    return sl_str_parse_u64(s, 0, INT64_MAX, &v) == 0 ? (int64_t)v : -1;
}

size_t sl_u64_format(char *out, uint64_t v)
{
    char t[20];
    size_t i = sizeof(t);
    do
        t[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    size_t n = sizeof(t) - i;
    memcpy(out, t + i, n);
    out[n] = '\0';
    return n;
}

uint64_t sl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static __thread uint64_t clock_cached;

void sl_clock_tick(void)
{
    clock_cached = sl_now_ns();
}

uint64_t sl_clock_ns(void)
{
    return clock_cached ? clock_cached : sl_now_ns();
}

uint64_t sl_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static __thread uint64_t rng[4];

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
    uint64_t r = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return r;
}

void sl_rand_fast(void *buf, size_t n)
{
    if (!(rng[0] | rng[1] | rng[2] | rng[3])) {
        /* Seed once per thread; a failed getrandom still gives distinct
         * threads distinct streams. */
        if (getrandom(rng, sizeof(rng), 0) != (ssize_t)sizeof(rng)) {
            rng[0] = sl_now_ns();
            rng[1] = (uint64_t)(uintptr_t)&rng;
        }
        rng[3] |= 1; /* never all zero */
    }
    uint8_t *p = buf;
    while (n) {
        uint64_t r = rng_next();
        size_t k = SL_MIN(n, sizeof(r));
        memcpy(p, &r, k);
        p += k;
        n -= k;
    }
}

static int8_t b64url_val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return (int8_t)(c - 'A');
    if (c >= 'a' && c <= 'z')
        return (int8_t)(c - 'a' + 26);
    if (c >= '0' && c <= '9')
        return (int8_t)(c - '0' + 52);
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

ssize_t sl_base64url_decode(const char *in, size_t len, uint8_t *out, size_t outcap)
{
    while (len > 0 && in[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -1;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int8_t v = b64url_val((uint8_t)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == outcap)
                return -1;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return (ssize_t)n;
}
