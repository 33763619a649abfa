/* sluice - SPDX-License-Identifier: MIT
 *
 * Allocation wrappers with a fail-the-Nth-call hook for tests, the assert
 * handler, clocks and small string helpers shared by every module.
 */
#include "sl.h"
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
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

void sl_free(void *p)
{
    if (!p)
        return;
    atomic_fetch_sub(&live_blocks, 1);
    free(p);
}

int sl_str_caseeq(sl_str_t a, const char *lit)
{
    size_t n = strlen(lit);
    return a.n == n && strncasecmp(a.p, lit, n) == 0;
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

int sl_str_has_token(sl_str_t v, const char *tok)
{
    const char *s = v.p, *end = v.p + v.n;
    while (s < end) {
        const char *e = memchr(s, ',', (size_t)(end - s));
        if (!e)
            e = end;
        sl_str_t el = {s, (size_t)(e - s)};
        while (el.n && (*el.p == ' ' || *el.p == '\t'))
            el.p++, el.n--;
        while (el.n && (el.p[el.n - 1] == ' ' || el.p[el.n - 1] == '\t'))
            el.n--;
        if (sl_str_caseeq(el, tok))
            return 1;
        s = e + 1;
    }
    return 0;
}

int64_t sl_str_to_u64(sl_str_t s)
{
    if (s.n == 0 || s.n > 18)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return -1;
        v = v * 10 + (s.p[i] - '0');
    }
    return v;
}

uint64_t sl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t sl_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
