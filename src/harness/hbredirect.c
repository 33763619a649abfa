/* sluice - SPDX-License-Identifier: MIT
 *
 * httpbin's redirects: redirect/N (relative Locations, or absolute with
 * ?absolute=true), relative-redirect/N, absolute-redirect/N (each 302 to
 * the same endpoint with N-1, and at the end to get), and redirect-to?url=
 * &status_code= (300..308). redirect-to only goes to a relative reference
 * or to this same origin (scheme, host and port of the request): it is
 * never an open redirect that a link could aim at another site.
 */
#include "harness_int.h"
#include <stdio.h>
#include <strings.h>

#define MAX_REDIRECTS 100

static void redirect(sl_req_t *req, int status, const char *location)
{
    sl_resp_header_add(req, "location", location);
    req->cbs = &sl_req_discard_cbs;
    req->res.status = status;
    req->res.content_length = 0;
    sl_resp_send(req, NULL, 0, 1);
}

void sl_harness_hb_redirect(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    uint64_t n;
    int rv = sl_str_parse_u64(cx->arg, 1, MAX_REDIRECTS, &n);
    if (rv != 0) {
        sl_harness_bad_param(req, "N", rv, 1, MAX_REDIRECTS);
        return;
    }
    const sl_str_t *abs_q = sl_query_find(&cx->q, "absolute");
    int absolute = sl_str_eq(cx->name, "absolute-redirect") ||
                   (sl_str_eq(cx->name, "redirect") && abs_q && sl_str_eq(*abs_q, "true"));
    const char *kind = absolute ? "absolute-redirect" : "relative-redirect";
    char *next = n > 1 ? sl_pool_printf(&req->pool, "%s%s/%llu", sl_harness_prefix(req), kind,
                                        (unsigned long long)(n - 1))
                       : sl_pool_printf(&req->pool, "%sget", sl_harness_prefix(req));
    if (absolute) {
        sl_str_t s = sl_req_conn_scheme(req);
        next = sl_pool_printf(&req->pool, "%.*s://%.*s%s", (int)s.n, s.p, (int)req->authority.n,
                              req->authority.p, next);
    }
    redirect(req, 302, next);
}

/* A reference that stays on this origin: "/path" (not "//host"), a
 * relative path, or an absolute URL whose scheme and authority are the
 * request's own. */
static int same_origin(sl_req_t *req, sl_str_t url)
{
    for (size_t i = 0; i < url.n; i++)
        if ((unsigned char)url.p[i] <= 0x20 || url.p[i] == 0x7f || url.p[i] == '\\')
            return 0; /* no spaces or backslashes that browsers read as "/" */
    if (url.n >= 2 && url.p[0] == '/' && url.p[1] == '/')
        return 0;
    const char *colon = memchr(url.p, ':', url.n);
    const char *slash = memchr(url.p, '/', url.n);
    if (!colon || (slash && slash < colon))
        return url.n > 0; /* no scheme: relative */
    sl_str_t s = sl_req_conn_scheme(req);
    char *own = sl_pool_printf(&req->pool, "%.*s://%.*s", (int)s.n, s.p, (int)req->authority.n,
                               req->authority.p);
    size_t on = strlen(own);
    return url.n >= on && strncasecmp(url.p, own, on) == 0 &&
           (url.n == on || url.p[on] == '/' || url.p[on] == '?');
}

void sl_harness_hb_redirect_to(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    const sl_str_t *url = sl_query_find(&cx->q, "url");
    uint64_t code;
    int rv = sl_query_find_u64(&cx->q, "status_code", 302, 300, 308, &code);
    if (rv != 0) {
        sl_harness_bad_param(req, "status_code", rv, 300, 308);
        return;
    }
    if (!url || !same_origin(req, *url)) {
        sl_harness_bad_request(req, "url: a relative reference or this same origin only");
        return;
    }
    redirect(req, (int)code, sl_pool_printf(&req->pool, "%.*s", (int)url->n, url->p));
}
