/* sluice - SPDX-License-Identifier: MIT
 *
 * RFC 9110 pieces shared by the handlers that answer from stored
 * representations (static files, the HTTP cache): HTTP-dates, the
 * entity-tag comparisons behind If-None-Match / If-Match / If-Range, and
 * Range parsing (single ranges only; several are answered whole).
 * Malformed header values are ignored, never fatal: RFC 9110 lets a
 * server ignore a Range or conditional it cannot parse.
 */
#include "http.h"
#include <stdio.h>
#include <strings.h>
#include <time.h>

static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* ---- dates ---- */

static int month_of(const char *m)
{
    for (int i = 0; i < 12; i++)
        if (memcmp(m, months[i], 3) == 0)
            return i;
    return -1;
}

/* Exactly `digits` decimal digits at p. */
static int num(const char *p, int digits)
{
    int v = 0;
    for (int i = 0; i < digits; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static int64_t make_time(int year, int mon, int day, int h, int m, int s)
{
    if (mon < 0 || day < 1 || day > 31 || h < 0 || h > 23 || m < 0 || m > 59 || s < 0 || s > 60 ||
        year < 1970)
        return -1;
    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = mon;
    tm.tm_mday = day;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm);
}

int64_t sl_http_date_parse(sl_str_t v)
{
    char b[40];
    v = sl_str_trim_ows(v);
    if (v.n >= sizeof(b) || v.n < 24)
        return -1;
    memcpy(b, v.p, v.n);
    b[v.n] = '\0';
    const char *comma = memchr(b, ',', v.n);
    if (v.n == 29 && comma == b + 3) {
        /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        if (b[4] != ' ' || b[7] != ' ' || b[11] != ' ' || b[16] != ' ' || b[19] != ':' ||
            b[22] != ':' || strcmp(b + 25, " GMT") != 0)
            return -1;
        return make_time(num(b + 12, 4), month_of(b + 8), num(b + 5, 2), num(b + 17, 2),
                         num(b + 20, 2), num(b + 23, 2));
    }
    if (comma) {
        /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT (two-digit year: 1970-2069) */
        const char *d = comma + 2;
        if (comma[1] != ' ' || strlen(d) != 22 || d[2] != '-' || d[6] != '-' || d[9] != ' ' ||
            d[12] != ':' || d[15] != ':' || strcmp(d + 18, " GMT") != 0)
            return -1;
        int yy = num(d + 7, 2);
        if (yy < 0)
            return -1;
        return make_time(yy < 70 ? 2000 + yy : 1900 + yy, month_of(d + 3), num(d, 2),
                         num(d + 10, 2), num(d + 13, 2), num(d + 16, 2));
    }
    /* asctime: Sun Nov  6 08:49:37 1994 */
    if (v.n != 24 || b[3] != ' ' || b[7] != ' ' || b[10] != ' ' || b[13] != ':' || b[16] != ':' ||
        b[19] != ' ')
        return -1;
    int day = b[8] == ' ' ? num(b + 9, 1) : num(b + 8, 2);
    return make_time(num(b + 20, 4), month_of(b + 4), day, num(b + 11, 2), num(b + 14, 2),
                     num(b + 17, 2));
}

void sl_http_date_format(int64_t t, char out[30])
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    snprintf(out, 30, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], (tm.tm_year + 1900) % 10000, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

const char *sl_http_date_now(double now, size_t *len)
{
    static __thread int64_t sec = -1;
    static __thread char str[30];
    if ((int64_t)now != sec) {
        sec = (int64_t)now;
        sl_http_date_format(sec, str);
    }
    *len = 29;
    return str;
}

/* ---- entity tags ---- */

int sl_http_etag_match(sl_str_t v, const char *etag, int weak)
{
    size_t elen = strlen(etag);
    v = sl_str_trim_ows(v);
    if (v.n == 1 && v.p[0] == '*')
        return 1;
    size_t i = 0;
    while (i < v.n) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        if (i >= v.n)
            break;
        int is_weak = 0;
        if (i + 1 < v.n && v.p[i] == 'W' && v.p[i + 1] == '/') {
            is_weak = 1;
            i += 2;
        }
        if (i >= v.n || v.p[i] != '"')
            return 0; /* malformed list: match nothing */
        const char *end = memchr(v.p + i + 1, '"', v.n - i - 1);
        if (!end)
            return 0;
        size_t tlen = (size_t)(end - (v.p + i)) + 1;
        if ((weak || !is_weak) && tlen == elen && memcmp(v.p + i, etag, elen) == 0)
            return 1;
        i += tlen;
    }
    return 0;
}

/* ---- ranges ---- */

/* Decimal digits only, no sign, fits in uint64 (else -1 / overflow). */
static int parse_u64(const char *p, size_t n, uint64_t *out)
{
    if (n == 0 || n > 19)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

/* One range-spec of the list. Returns 1 satisfiable (range set), 0
 * unsatisfiable, -1 invalid. */
static int one_range(sl_str_t s, uint64_t size, uint64_t *first, uint64_t *last)
{
    s = sl_str_trim_ows(s);
    const char *dash = memchr(s.p, '-', s.n);
    if (!dash)
        return -1;
    size_t a = (size_t)(dash - s.p), b = s.n - a - 1;
    uint64_t x, y;
    if (a == 0) {
        /* suffix-range: the last y bytes */
        if (parse_u64(dash + 1, b, &y))
            return -1;
        if (y == 0 || size == 0)
            return 0;
        *first = y >= size ? 0 : size - y;
        *last = size - 1;
        return 1;
    }
    if (parse_u64(s.p, a, &x))
        return -1;
    if (b == 0) {
        y = UINT64_MAX;
    } else if (parse_u64(dash + 1, b, &y) || y < x) {
        return -1; /* reversed: invalid, so the header is ignored */
    }
    if (x >= size)
        return 0;
    *first = x;
    *last = y >= size ? size - 1 : y;
    return 1;
}

sl_http_range_t sl_http_range_parse(sl_str_t v, uint64_t size, uint64_t *first, uint64_t *last)
{
    v = sl_str_trim_ows(v);
    if (v.n < 6 || strncasecmp(v.p, "bytes=", 6) != 0)
        return SL_HTTP_RANGE_NONE;
    sl_str_t rest = {v.p + 6, v.n - 6};
    int specs = 0, sat = 0;
    while (rest.n) {
        const char *comma = memchr(rest.p, ',', rest.n);
        size_t len = comma ? (size_t)(comma - rest.p) : rest.n;
        sl_str_t spec = sl_str_trim_ows((sl_str_t){rest.p, len});
        if (spec.n) {
            uint64_t f = 0, l = 0;
            int r = one_range(spec, size, &f, &l);
            if (r < 0)
                return SL_HTTP_RANGE_NONE;
            if (r == 1 && sat++ == 0) {
                *first = f;
                *last = l;
            }
            specs++;
        }
        if (!comma)
            break;
        rest.p += len + 1;
        rest.n -= len + 1;
    }
    if (specs == 0)
        return SL_HTTP_RANGE_NONE;
    if (sat == 0)
        return SL_HTTP_RANGE_UNSAT;
    return specs == 1 ? SL_HTTP_RANGE_ONE : SL_HTTP_RANGE_MULTI;
}
