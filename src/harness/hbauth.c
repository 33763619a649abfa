/* sluice - SPDX-License-Identifier: MIT
 *
 * httpbin's credentials and cookies: basic-auth/USER/PASS and bearer
 * (200 {"authenticated": true, ...} or 401 with the challenge a client
 * must answer), cookies (the Cookie fields as an object), cookies/set
 * and cookies/delete (Set-Cookie, then 302 back to cookies). These are
 * test fixtures: the password is in the URL and compared as is.
 */
#include "harness_int.h"
#include <stdio.h>
#include <strings.h>

static void challenge(sl_req_t *req, const char *www)
{
    req->cbs = &sl_req_discard_cbs;
    sl_resp_header_add(req, "www-authenticate", www);
    req->res.status = 401;
    req->res.content_length = 0;
    sl_resp_send(req, NULL, 0, 1);
}

void sl_harness_hb_basic_auth(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    const char *slash = memchr(cx->arg.p, '/', cx->arg.n);
    if (!slash || memchr(slash + 1, '/', cx->arg.n - (size_t)(slash + 1 - cx->arg.p))) {
        sl_harness_bad_request(req, "basic-auth/USER/PASS");
        return;
    }
    sl_str_t user = {cx->arg.p, (size_t)(slash - cx->arg.p)};
    char *pair = sl_pool_printf(&req->pool, "%.*s", (int)cx->arg.n, cx->arg.p);
    pair[user.n] = ':';
    char *want = sl_base64_encode((const uint8_t *)pair, cx->arg.n);
    const sl_header_t *h = sl_req_header(req, "authorization");
    size_t wn = strlen(want);
    int ok = h && h->value.n == 6 + wn && strncasecmp(h->value.p, "basic ", 6) == 0 &&
             memcmp(h->value.p + 6, want, wn) == 0;
    sl_free(want);
    if (!ok) {
        challenge(req, "Basic realm=\"Fake Realm\"");
        return;
    }
    sl_harness_json(req, 200,
                    json_pack("{s:b, s:o}", "authenticated", 1, "user",
                              sl_harness_jstr(&req->pool, user.p, user.n)));
}

void sl_harness_hb_bearer(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    const sl_header_t *h = sl_req_header(req, "authorization");
    if (!h || h->value.n <= 7 || strncasecmp(h->value.p, "bearer ", 7) != 0) {
        challenge(req, "Bearer");
        return;
    }
    sl_harness_json(req, 200,
                    json_pack("{s:b, s:o}", "authenticated", 1, "token",
                              sl_harness_jstr(&req->pool, h->value.p + 7, h->value.n - 7)));
}

/* The Cookie fields ("a=1; b=2", HTTP/2 crumbs joined) as an object. */
static json_t *cookie_object(sl_req_t *req)
{
    json_t *o = json_object();
    for (size_t i = 0; i < req->headers.n; i++) {
        const sl_header_t *h = &req->headers.v[i];
        if (!sl_str_eq(h->name, "cookie"))
            continue;
        size_t k = 0;
        while (k < h->value.n) {
            size_t s = k;
            while (k < h->value.n && h->value.p[k] != ';')
                k++;
            sl_str_t c = sl_str_trim_ows((sl_str_t){h->value.p + s, k - s});
            k++;
            const char *eq = memchr(c.p, '=', c.n);
            if (!eq || eq == c.p)
                continue;
            sl_str_t name = {c.p, (size_t)(eq - c.p)}, value = {eq + 1, c.n - name.n - 1};
            char *key = sl_pool_printf(&req->pool, "%.*s", (int)name.n, name.p);
            json_object_set_new(o, key, sl_harness_jstr(&req->pool, value.p, value.n));
        }
    }
    return o;
}

/* Back to cookies, relative to the route, after Set-Cookie. */
static void back_to_cookies(sl_req_t *req)
{
    sl_resp_header_add(req, "location",
                       sl_pool_printf(&req->pool, "%scookies", sl_harness_prefix(req)));
    req->cbs = &sl_req_discard_cbs;
    req->res.status = 302;
    req->res.content_length = 0;
    sl_resp_send(req, NULL, 0, 1);
}

static int cookie_ok(sl_str_t name, sl_str_t value)
{
    if (!sl_str_is_token(name))
        return 0;
    for (size_t i = 0; i < value.n; i++) { /* RFC 6265 cookie-octet */
        unsigned char c = (unsigned char)value.p[i];
        if (c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\')
            return 0;
    }
    return 1;
}

void sl_harness_hb_cookies(sl_harness_ctx_t *cx)
{
    sl_req_t *req = cx->req;
    int set = sl_str_eq(cx->arg, "set"), del = sl_str_eq(cx->arg, "delete");
    if (!cx->arg.n) {
        sl_harness_json(req, 200, json_pack("{s:o}", "cookies", cookie_object(req)));
        return;
    }
    if (!set && !del) {
        sl_harness_bad_request(req, "cookies, cookies/set?name=value or cookies/delete?name");
        return;
    }
    for (size_t i = 0; i < cx->q.n; i++) {
        sl_str_t n = cx->q.v[i].name, v = set ? cx->q.v[i].value : (sl_str_t){"", 0};
        if (!cookie_ok(n, v)) {
            sl_harness_bad_request(req, "a cookie name must be a token, a value cookie-octets");
            return;
        }
        sl_resp_header_add(
            req, "set-cookie",
            set ? sl_pool_printf(&req->pool, "%.*s=%.*s; Path=/", (int)n.n, n.p, (int)v.n, v.p)
                : sl_pool_printf(&req->pool,
                                 "%.*s=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/",
                                 (int)n.n, n.p));
    }
    back_to_cookies(req);
}
