/* sluice - SPDX-License-Identifier: MIT
 *
 * RFC 9111 as pure functions: Cache-Control directives of requests and
 * responses, whether a response may be stored by a shared cache (section
 * 3), its freshness lifetime and age (4.2), and the Vary match of a
 * request against a stored variant (4.1). Nothing here allocates or
 * locks; the fill (fill.c) and the lookup (cache.c) call it.
 */
#include "cache_int.h"
#include "../http.h"
#include <strings.h>

#define HEURISTIC_MAX_S 86400.0 /* RFC 9111 4.2.2: a tenth of the age, at most a day */

/* ---- Cache-Control ---- */

/* The argument of a directive: a delta-seconds (digits), else -1. A
 * quoted value ("60") is tolerated as senders write it. */
static int64_t delta_seconds(sl_str_t v)
{
    if (v.n >= 2 && v.p[0] == '"' && v.p[v.n - 1] == '"')
        v = (sl_str_t){v.p + 1, v.n - 2};
    uint64_t x;
    int rc = sl_str_parse_u64(v, 0, UINT64_MAX, &x);
    if (rc == SL_ETOOBIG)
        return INT32_MAX; /* RFC 9111 1.2.2: too large is "infinity" (2^31) */
    return rc == 0 ? (int64_t)SL_MIN(x, (uint64_t)INT32_MAX) : -1;
}

static void directive(cc_cc_t *c, sl_str_t name, sl_str_t v, int has_value)
{
#define IS(lit) sl_str_caseeq(name, lit)
    if (IS("no-store"))
        c->no_store = 1;
    else if (IS("no-cache"))
        c->no_cache = 1; /* no-cache="field": treated as the whole response */
    else if (IS("private"))
        c->priv = 1;
    else if (IS("public"))
        c->pub = 1;
    else if (IS("must-revalidate"))
        c->must_revalidate = 1;
    else if (IS("proxy-revalidate"))
        c->must_revalidate = 1; /* a shared cache treats both alike */
    else if (IS("only-if-cached"))
        c->only_if_cached = 1;
    else if (IS("max-age"))
        c->max_age = has_value ? delta_seconds(v) : -1, c->max_age_bad = c->max_age < 0;
    else if (IS("s-maxage"))
        c->s_maxage = has_value ? delta_seconds(v) : -1;
    else if (IS("stale-while-revalidate"))
        c->swr = has_value ? delta_seconds(v) : -1;
    else if (IS("stale-if-error"))
        c->sie = has_value ? delta_seconds(v) : -1;
    else if (IS("min-fresh"))
        c->min_fresh = has_value ? delta_seconds(v) : -1;
    else if (IS("max-stale"))
        c->max_stale = has_value ? delta_seconds(v) : INT32_MAX; /* bare: any staleness */
#undef IS
}

/* One field value: directives separated by commas, "name[=value]". */
static void parse_value(cc_cc_t *c, sl_str_t v)
{
    size_t i = 0;
    while (i < v.n) {
        size_t s = i;
        int quoted = 0;
        while (i < v.n && (quoted || v.p[i] != ',')) {
            if (v.p[i] == '"')
                quoted = !quoted;
            i++;
        }
        sl_str_t d = sl_str_trim_ows((sl_str_t){v.p + s, i - s});
        i++;
        const char *eq = memchr(d.p, '=', d.n);
        sl_str_t name = eq ? sl_str_trim_ows((sl_str_t){d.p, (size_t)(eq - d.p)}) : d;
        sl_str_t val =
            eq ? sl_str_trim_ows((sl_str_t){eq + 1, d.n - (size_t)(eq - d.p) - 1}) : (sl_str_t){0};
        if (name.n)
            directive(c, name, val, eq != NULL);
    }
}

void cc_cc_parse(const sl_header_t *h, size_t n, cc_cc_t *c)
{
    memset(c, 0, sizeof(*c));
    c->max_age = c->s_maxage = c->swr = c->sie = c->min_fresh = c->max_stale = -1;
    int pragma_no_cache = 0, seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (sl_str_caseeq(h[i].name, "cache-control")) {
            parse_value(c, h[i].value);
            seen = 1;
        } else if (sl_str_caseeq(h[i].name, "pragma") && sl_str_has_token(h[i].value, "no-cache")) {
            pragma_no_cache = 1;
        }
    }
    if (!seen && pragma_no_cache)
        c->no_cache = 1; /* RFC 9111 5.4: Pragma only without Cache-Control */
}

/* HTTP/1.1 upstreams' field names keep their case (the request model
 * lower-cases only requests): every comparison here ignores it. */
const sl_header_t *cc_find(const sl_header_t *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (sl_str_caseeq(h[i].name, name))
            return &h[i];
    return NULL;
}

/* ---- storing (RFC 9111 3) ---- */

/* RFC 9110 15.1: heuristically cacheable by default. */
static int heuristic_status(int s)
{
    return s == 200 || s == 203 || s == 204 || s == 300 || s == 301 || s == 308 || s == 404 ||
           s == 405 || s == 410 || s == 414 || s == 501;
}

/* Statuses this cache stores at all: the heuristic ones, and a few more
 * when the response gives an explicit lifetime. 206 never comes (fills
 * send no Range), 304 is a revalidation's answer. */
static int understood(int s, int explicit_fresh)
{
    return heuristic_status(s) ||
           (explicit_fresh && (s == 302 || s == 303 || s == 307 || s == 403 || s == 451));
}

const char *cc_unstorable(const cc_resp_t *r, const cc_cc_t *req_cc, int req_has_auth)
{
    const cc_cc_t *c = &r->cc;
    if (req_cc->no_store)
        return "request-no-store";
    if (c->no_store)
        return "no-store";
    if (c->priv)
        return "private";
    if (cc_find(r->h, r->n, "set-cookie"))
        return "set-cookie";
    const sl_header_t *vary = cc_find(r->h, r->n, "vary");
    if (vary && sl_str_has_token(vary->value, "*"))
        return "vary-star";
    if (req_has_auth && !c->pub && c->s_maxage < 0 && !c->must_revalidate)
        return "authorization"; /* RFC 9111 3.5 */
    int explicit_fresh =
        c->s_maxage >= 0 || (c->max_age >= 0) || cc_find(r->h, r->n, "expires") != NULL;
    if (!understood(r->status, explicit_fresh))
        return "status";
    return NULL;
}

/* ---- freshness (RFC 9111 4.2) ---- */

static double header_date(const sl_header_t *h, size_t n, const char *name)
{
    const sl_header_t *f = cc_find(h, n, name);
    return f ? (double)sl_http_date_parse(f->value) : -1;
}

double cc_lifetime(const cc_resp_t *r)
{
    const cc_cc_t *c = &r->cc;
    if (c->s_maxage >= 0)
        return (double)c->s_maxage;
    if (c->max_age >= 0)
        return (double)c->max_age;
    if (c->max_age_bad)
        return 0; /* a malformed max-age makes the response stale (RFC 9111 4.2.1) */
    double date = header_date(r->h, r->n, "date");
    if (date < 0)
        date = r->resp_time;
    if (cc_find(r->h, r->n, "expires")) {
        double exp = header_date(r->h, r->n, "expires");
        return exp < 0 ? 0 : SL_MAX(0, exp - date); /* invalid Expires: already expired */
    }
    double lm = header_date(r->h, r->n, "last-modified");
    if (lm >= 0 && lm <= date && (heuristic_status(r->status) || c->pub))
        return SL_MIN(HEURISTIC_MAX_S, (date - lm) / 10);
    return 0;
}

double cc_initial_age(const cc_resp_t *r, double request_time)
{
    double date = header_date(r->h, r->n, "date");
    double apparent = date < 0 ? 0 : SL_MAX(0, r->resp_time - date);
    const sl_header_t *a = cc_find(r->h, r->n, "age");
    double age_value = 0;
    if (a) {
        int64_t v = delta_seconds(sl_str_trim_ows(a->value));
        age_value = v > 0 ? (double)v : 0;
    }
    double corrected = age_value + SL_MAX(0, r->resp_time - request_time);
    return SL_MAX(apparent, corrected);
}

/* ---- Vary (RFC 9111 4.1) ---- */

/* The request's value for one field name: its fields joined with ", "
 * (as a list field would be) into out; returns the length, or
 * SL_ETOOBIG. */
static ssize_t request_value(const sl_req_t *req, sl_str_t name, char *out, size_t cap)
{
    size_t len = 0;
    int first = 1;
    for (size_t i = 0; i < req->headers.n; i++) {
        const sl_header_t *f = &req->headers.v[i];
        if (f->name.n != name.n || strncasecmp(f->name.p, name.p, name.n) != 0)
            continue;
        sl_str_t v = sl_str_trim_ows(f->value);
        if (len + v.n + 2 > cap)
            return SL_ETOOBIG;
        if (!first)
            out[len++] = ',', out[len++] = ' ';
        memcpy(out + len, v.p, v.n);
        len += v.n;
        first = 0;
    }
    return (ssize_t)len;
}

ssize_t cc_vary_values(const sl_req_t *req, sl_str_t vary, char *out, size_t cap)
{
    size_t len = 0, i = 0;
    while (i < vary.n) {
        size_t s = i;
        while (i < vary.n && vary.p[i] != ',')
            i++;
        sl_str_t name = sl_str_trim_ows((sl_str_t){vary.p + s, i - s});
        i++;
        if (!name.n)
            continue;
        ssize_t n = request_value(req, name, out + len, cap - len);
        if (n < 0 || len + (size_t)n + 1 > cap)
            return SL_ETOOBIG;
        len += (size_t)n;
        out[len++] = '\n'; /* a value never holds a newline */
    }
    return (ssize_t)len;
}
