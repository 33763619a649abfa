/* sluice - SPDX-License-Identifier: MIT
 *
 * HTTP/1.1 message-head parser (RFC 9112 sections 2-6) for requests (the
 * server side, src/h1/conn.c) and responses (the proxy's upstream client).
 * It is socket-free and allocation-free: strings in the result point into
 * the caller's buffer and field lines go into a caller-provided array.
 *
 * Why hand-written: Debian has no well-kept strict HTTP/1.1 parser library
 * that is also reusable as a response parser for the proxy with our limits,
 * and a table-driven parser is small. It is strict on purpose (request
 * smuggling): CRLF only, no obs-fold, no whitespace before ':', one
 * consistent Content-Length, never Content-Length with Transfer-Encoding.
 *
 * Resumption: a call that runs out of bytes returns SL_H1_INCOMPLETE and the
 * caller calls again from the start of the head with more bytes. Every byte
 * is validated as it is scanned, so bad input is refused before the head is
 * complete, and the caller keeps the total cost bounded by re-parsing only
 * when a new line ending arrived (see h1/conn.c) and by max_head.
 */
#include "h1_int.h"
#include <strings.h>

const uint8_t sl_h1_ctype[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x07, 0x06, 0x07, 0x07, 0x07, 0x07, 0x07, 0x06, 0x06, 0x07, 0x07, 0x06, 0x07, 0x07, 0x06,
    0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x06, 0x06, 0x06, 0x06, 0x06, 0x06,
    0x06, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07,
    0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x06, 0x06, 0x06, 0x07, 0x07,
    0x07, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07,
    0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x06, 0x07, 0x06, 0x07, 0x00,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
};

/* Cursor plus what the field lines said about framing; combined checks
 * (Content-Length with Transfer-Encoding, Host count) run at the end. */
typedef struct parse_state {
    const uint8_t *buf, *p, *end;
    const sl_h1_limits_t *lim;
    sl_h1_head_t *h;
    int64_t cl;
    unsigned ncl, nhost, te_chunked;
    unsigned te_seen : 1, te_last_chunked : 1, te_other : 1;
    unsigned conn_close : 1, conn_keep_alive : 1, conn_upgrade : 1, has_upgrade : 1;
} parse_state_t;

static sl_h1_parse_status_t fail(parse_state_t *ps, sl_h1_parse_status_t st, const char *why)
{
    ps->h->error = why;
    return st;
}

/* Out of bytes: a head that cannot fit max_head any more is refused now
 * instead of waiting for its end (slow-drip clients). */
static sl_h1_parse_status_t need_more(parse_state_t *ps)
{
    if ((size_t)(ps->end - ps->buf) >= ps->lim->max_head)
        return fail(ps, SL_H1_HEADERS_TOO_LARGE, "head larger than the limit");
    return SL_H1_INCOMPLETE;
}

static void head_reset(sl_h1_head_t *h)
{
    sl_header_t *v = h->headers;
    size_t max = h->max_headers;
    memset(h, 0, sizeof(*h));
    h->headers = v;
    h->max_headers = max;
    h->content_length = -1;
}

/* CRLF, strictly: a bare LF or a CR followed by anything else is refused. */
static sl_h1_parse_status_t expect_crlf(parse_state_t *ps, const char *what)
{
    const uint8_t *p = ps->p;
    if (p == ps->end)
        return need_more(ps);
    if (*p == '\r') {
        if (p + 1 == ps->end)
            return need_more(ps);
        if (p[1] != '\n')
            return fail(ps, SL_H1_BAD, "bare CR");
        ps->p = p + 2;
        return SL_H1_OK;
    }
    return fail(ps, SL_H1_BAD, *p == '\n' ? "bare LF" : what);
}

/* A request line of three tokens whose last does not even start with
 * "http/" (any case) is some other protocol (h2spec sends "INVALID
 * CONNECTION PREFACE"): SL_H1_NOT_HTTP. More tokens ("GET /a b HTTP/1.1")
 * are a malformed HTTP request: 400. */
static sl_h1_parse_status_t bad_version(parse_state_t *ps, const uint8_t *p)
{
    for (; p < ps->end; p++) {
        if (*p == ' ')
            break;
        if (*p == '\r' || *p == '\n')
            return fail(ps, SL_H1_NOT_HTTP, "not an HTTP version");
    }
    return p < ps->end ? fail(ps, SL_H1_BAD, "malformed HTTP version") : need_more(ps);
}

/* "HTTP/" DIGIT "." DIGIT; only 1.0 and 1.1 are served (505 otherwise). */
static sl_h1_parse_status_t parse_version(parse_state_t *ps)
{
    static const char pat[] = "HTTP/0.0";
    const uint8_t *p = ps->p;
    for (size_t i = 0; i < 8; i++) {
        if (p + i == ps->end)
            return need_more(ps);
        uint8_t c = p[i];
        int ok = (i == 5 || i == 7) ? (c >= '0' && c <= '9') : c == (uint8_t)pat[i];
        if (ok)
            continue;
        if (i < 5 && (c | 0x20) != (uint8_t)(pat[i] | 0x20))
            return bad_version(ps, p + i);
        return fail(ps, SL_H1_BAD, "malformed HTTP version");
    }
    if (p[5] != '1' || p[7] > '1')
        return fail(ps, SL_H1_BAD_VERSION, "unsupported HTTP version");
    ps->h->version_minor = p[7] - '0';
    ps->p = p + 8;
    return SL_H1_OK;
}

/* method SP request-target SP HTTP-version CRLF. The target bound is checked
 * before the SP arrives so a long target is refused while still incomplete. */
static sl_h1_parse_status_t parse_request_line(parse_state_t *ps)
{
    const uint8_t *p = ps->p, *end = ps->end, *m = p;
    while (p < end && sl_h1_is_token(*p))
        p++;
    if (p == end)
        return need_more(ps);
    if (*p != ' ' || p == m)
        return fail(ps, SL_H1_BAD, p == m ? "empty method" : "invalid character in method");
    ps->h->method = (sl_str_t){(const char *)m, (size_t)(p - m)};
    const uint8_t *t = ++p;
    while (p < end && (sl_h1_ctype[*p] & SL_H1_CT_TARGET))
        p++;
    if ((size_t)(p - t) > ps->lim->max_uri)
        return fail(ps, SL_H1_URI_TOO_LONG, "request-target longer than the limit");
    if (p == end)
        return need_more(ps);
    if (*p != ' ' || p == t)
        return fail(ps, SL_H1_BAD,
                    p == t ? "empty request-target" : "invalid character in request-target");
    ps->h->target = (sl_str_t){(const char *)t, (size_t)(p - t)};
    ps->p = p + 1;
    sl_h1_parse_status_t st = parse_version(ps);
    if (st != SL_H1_OK)
        return st;
    return expect_crlf(ps, "invalid character after HTTP version");
}

/* HTTP-version SP 3DIGIT [SP reason-phrase] CRLF. A missing SP before an
 * empty reason is accepted: some servers send "HTTP/1.1 200\r\n". */
static sl_h1_parse_status_t parse_status_line(parse_state_t *ps)
{
    sl_h1_parse_status_t st = parse_version(ps);
    if (st != SL_H1_OK)
        return st == SL_H1_BAD_VERSION || st == SL_H1_NOT_HTTP
                   ? fail(ps, SL_H1_BAD, "unsupported HTTP version")
                   : st;
    const uint8_t *p = ps->p, *end = ps->end;
    int status = 0;
    for (size_t i = 0; i < 4; i++) {
        if (p + i == end)
            return need_more(ps);
        uint8_t c = p[i];
        if (i == 0 ? c != ' ' : (c < '0' || c > '9'))
            return fail(ps, SL_H1_BAD, "malformed status line");
        if (i > 0)
            status = status * 10 + (c - '0');
    }
    if (status < 100)
        return fail(ps, SL_H1_BAD, "status code below 100");
    ps->h->status = status;
    p += 4;
    if (p == end)
        return need_more(ps);
    ps->h->reason = (sl_str_t){(const char *)p, 0};
    if (*p == ' ') {
        const uint8_t *r = ++p;
        while (p < end && sl_h1_is_fval(*p))
            p++;
        ps->h->reason = (sl_str_t){(const char *)r, (size_t)(p - r)};
    }
    ps->p = p;
    return expect_crlf(ps, "invalid character in reason phrase");
}

/* Next element of a comma-separated list (RFC 9110 5.6.1), OWS trimmed.
 * Returns 0 at the end of the value. Empty elements are returned as such. */
static int list_next(const char **s, const char *end, sl_str_t *elem)
{
    const char *p = *s;
    if (p > end)
        return 0;
    const char *q = memchr(p, ',', (size_t)(end - p));
    const char *e = q ? q : end;
    *s = e + 1;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *elem = (sl_str_t){p, (size_t)(e - p)};
    return 1;
}

/* Content-Length: 1*DIGIT, or a list of identical values (RFC 9110 8.6).
 * Repeated fields must agree with each other too. */
static sl_h1_parse_status_t on_content_length(parse_state_t *ps, sl_str_t v)
{
    const char *s = v.p, *end = v.p + v.n;
    sl_str_t e;
    while (list_next(&s, end, &e)) {
        int64_t n = 0;
        if (e.n == 0)
            return fail(ps, SL_H1_BAD, "empty Content-Length");
        for (size_t i = 0; i < e.n; i++) {
            unsigned d = (unsigned)(uint8_t)e.p[i] - '0';
            if (d > 9)
                return fail(ps, SL_H1_BAD, "invalid Content-Length");
            if (n > (INT64_MAX - (int64_t)d) / 10)
                return fail(ps, SL_H1_BAD, "Content-Length overflows");
            n = n * 10 + (int64_t)d;
        }
        if (ps->ncl > 0 && n != ps->cl)
            return fail(ps, SL_H1_BAD, "conflicting Content-Length values");
        ps->cl = n;
        ps->ncl++;
    }
    return SL_H1_OK;
}

static int is_token_str(sl_str_t s)
{
    if (s.n == 0)
        return 0;
    for (size_t i = 0; i < s.n; i++)
        if (!sl_h1_is_token((uint8_t)s.p[i]))
            return 0;
    return 1;
}

/* Transfer-Encoding: the codings in order, over all such fields. Only
 * chunked is implemented; the verdict is given once all fields are seen. */
static sl_h1_parse_status_t on_transfer_encoding(parse_state_t *ps, sl_str_t v)
{
    const char *s = v.p, *end = v.p + v.n;
    sl_str_t e;
    ps->te_seen = 1;
    while (list_next(&s, end, &e)) {
        if (e.n == 0)
            continue;
        if (sl_str_caseeq(e, "chunked")) {
            ps->te_chunked++;
            ps->te_last_chunked = 1;
            continue;
        }
        ps->te_last_chunked = 0;
        /* A coding with parameters is a coding we do not implement. */
        const char *semi = memchr(e.p, ';', e.n);
        sl_str_t name = {e.p, semi ? (size_t)(semi - e.p) : e.n};
        while (name.n && (name.p[name.n - 1] == ' ' || name.p[name.n - 1] == '\t'))
            name.n--;
        if (!is_token_str(name))
            return fail(ps, SL_H1_BAD, "invalid Transfer-Encoding");
        ps->te_other = 1;
    }
    return SL_H1_OK;
}

static void on_connection(parse_state_t *ps, sl_str_t v)
{
    const char *s = v.p, *end = v.p + v.n;
    sl_str_t e;
    while (list_next(&s, end, &e)) {
        if (sl_str_caseeq(e, "close"))
            ps->conn_close = 1;
        else if (sl_str_caseeq(e, "keep-alive"))
            ps->conn_keep_alive = 1;
        else if (sl_str_caseeq(e, "upgrade"))
            ps->conn_upgrade = 1;
    }
}

/* uri-host [":" port]: reg-name, IPv4 or IP-literal characters only, so a
 * Host cannot smuggle a path, userinfo or whitespace into the authority. */
static int is_valid_host(sl_str_t v)
{
    for (size_t i = 0; i < v.n; i++) {
        uint8_t c = (uint8_t)v.p[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (!memchr("-._~%!$&'()*+,;=:[]", c, 19))
            return 0;
    }
    return 1;
}

int sl_h1_absolute_form(sl_str_t target, sl_str_t *authority, sl_str_t *rest)
{
    size_t skip = 0, e;
    if (target.n >= 7 && strncasecmp(target.p, "http://", 7) == 0)
        skip = 7;
    else if (target.n >= 8 && strncasecmp(target.p, "https://", 8) == 0)
        skip = 8;
    if (!skip)
        return 0;
    for (e = skip; e < target.n && target.p[e] != '/' && target.p[e] != '?';)
        e++;
    *authority = (sl_str_t){target.p + skip, e - skip};
    if (rest)
        *rest = e < target.n ? (sl_str_t){target.p + e, target.n - e} : SL_STR("/");
    return 1;
}

static sl_h1_parse_status_t on_field(parse_state_t *ps, sl_str_t n, sl_str_t v)
{
    switch (n.n) {
    case 4:
        if (sl_str_caseeq(n, "host")) {
            if (!is_valid_host(v))
                return fail(ps, SL_H1_BAD, "invalid Host");
            ps->nhost++;
            ps->h->host = v;
        }
        break;
    case 6:
        if (sl_str_caseeq(n, "expect") && sl_str_caseeq(v, "100-continue"))
            ps->h->expect_continue = 1;
        break;
    case 7:
        if (sl_str_caseeq(n, "upgrade")) {
            ps->has_upgrade = 1;
            ps->h->upgrade_proto = v;
        }
        break;
    case 10:
        if (sl_str_caseeq(n, "connection"))
            on_connection(ps, v);
        break;
    case 14:
        if (sl_str_caseeq(n, "content-length"))
            return on_content_length(ps, v);
        break;
    case 17:
        if (sl_str_caseeq(n, "transfer-encoding"))
            return on_transfer_encoding(ps, v);
        break;
    default: break;
    }
    return SL_H1_OK;
}

/* One field line: token ":" OWS value OWS CRLF. */
static sl_h1_parse_status_t parse_field(parse_state_t *ps)
{
    const uint8_t *p = ps->p, *end = ps->end, *name = p;
    if (*p == ' ' || *p == '\t')
        return fail(ps, SL_H1_BAD, "obs-fold or whitespace before a field name");
    while (p < end && sl_h1_is_token(*p))
        p++;
    if (p == end)
        return need_more(ps);
    if (*p != ':' || p == name) {
        if (p == name)
            return fail(ps, SL_H1_BAD, *p == '\n' ? "bare LF" : "invalid field name");
        return fail(ps, SL_H1_BAD,
                    (*p == ' ' || *p == '\t') ? "whitespace before ':'" : "invalid field name");
    }
    sl_str_t n = {(const char *)name, (size_t)(p - name)};
    p++;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    const uint8_t *v = p;
    while (p < end && sl_h1_is_fval(*p))
        p++;
    if (p == end)
        return need_more(ps);
    const uint8_t *ve = p;
    ps->p = p;
    sl_h1_parse_status_t st = expect_crlf(ps, "invalid character in field value");
    if (st != SL_H1_OK)
        return st;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
    sl_h1_head_t *h = ps->h;
    if (h->nheaders >= ps->lim->max_headers || h->nheaders >= h->max_headers)
        return fail(ps, SL_H1_HEADERS_TOO_LARGE, "too many header fields");
    sl_str_t val = {(const char *)v, (size_t)(ve - v)};
    h->headers[h->nheaders++] = (sl_header_t){n, val};
    return on_field(ps, n, val);
}

/* Field lines up to the empty line; sets *consumed. */
static sl_h1_parse_status_t parse_fields(parse_state_t *ps, size_t *consumed)
{
    for (;;) {
        if ((size_t)(ps->p - ps->buf) > ps->lim->max_head)
            return fail(ps, SL_H1_HEADERS_TOO_LARGE, "head larger than the limit");
        if (ps->p == ps->end)
            return need_more(ps);
        if (*ps->p == '\r' || *ps->p == '\n') {
            sl_h1_parse_status_t st = expect_crlf(ps, "bare LF");
            if (st != SL_H1_OK)
                return st;
            break;
        }
        sl_h1_parse_status_t st = parse_field(ps);
        if (st != SL_H1_OK)
            return st;
    }
    if ((size_t)(ps->p - ps->buf) > ps->lim->max_head)
        return fail(ps, SL_H1_HEADERS_TOO_LARGE, "head larger than the limit");
    *consumed = (size_t)(ps->p - ps->buf);
    return SL_H1_OK;
}

static void set_keep_alive(parse_state_t *ps)
{
    sl_h1_head_t *h = ps->h;
    if (ps->conn_close)
        h->keep_alive = 0;
    else
        h->keep_alive = h->version_minor == 1 || ps->conn_keep_alive;
    h->upgrade = ps->conn_upgrade && ps->has_upgrade;
    h->content_length = ps->ncl ? ps->cl : -1;
}

/* Framing rules for a request (RFC 9112 6.1-6.3), checked once all fields
 * are in: these are the request-smuggling cases. */
static sl_h1_parse_status_t check_request(parse_state_t *ps)
{
    sl_h1_head_t *h = ps->h;
    if (ps->te_seen) {
        if (ps->ncl)
            return fail(ps, SL_H1_BAD, "both Content-Length and Transfer-Encoding");
        if (h->version_minor == 0)
            return fail(ps, SL_H1_BAD, "Transfer-Encoding in an HTTP/1.0 request");
        if (ps->te_chunked > 1)
            return fail(ps, SL_H1_BAD, "chunked applied more than once");
        if (!ps->te_last_chunked)
            return fail(ps, SL_H1_BAD, "Transfer-Encoding does not end in chunked");
        if (ps->te_other)
            return fail(ps, SL_H1_NOT_IMPLEMENTED, "unsupported transfer coding");
        h->chunked = 1;
    }
    if (ps->nhost > 1)
        return fail(ps, SL_H1_BAD, "more than one Host");
    sl_str_t auth;
    if (sl_h1_absolute_form(h->target, &auth, NULL) && (auth.n == 0 || !is_valid_host(auth)))
        return fail(ps, SL_H1_BAD, "invalid authority in an absolute-form target");
    if (h->version_minor == 1 && ps->nhost == 0)
        return fail(ps, SL_H1_BAD, "no Host in an HTTP/1.1 request");
    /* RFC 9110 10.1.1: ignore 100-continue from an HTTP/1.0 client. */
    if (h->version_minor == 0)
        h->expect_continue = 0;
    set_keep_alive(ps);
    return SL_H1_OK;
}

/* Framing for a response: Transfer-Encoding not ending in chunked means the
 * body runs to the close (RFC 9112 6.3 item 4). */
static sl_h1_parse_status_t check_response(parse_state_t *ps)
{
    sl_h1_head_t *h = ps->h;
    if (ps->te_seen) {
        if (ps->ncl)
            return fail(ps, SL_H1_BAD, "both Content-Length and Transfer-Encoding");
        if (ps->te_chunked > 1)
            return fail(ps, SL_H1_BAD, "chunked applied more than once");
        h->chunked = ps->te_last_chunked;
    }
    set_keep_alive(ps);
    if (ps->te_seen && !h->chunked)
        h->keep_alive = 0;
    return SL_H1_OK;
}

static void state_init(parse_state_t *ps, const uint8_t *buf, size_t len, const sl_h1_limits_t *lim,
                       sl_h1_head_t *head)
{
    memset(ps, 0, sizeof(*ps));
    ps->buf = ps->p = buf;
    ps->end = buf + len;
    ps->lim = lim;
    ps->h = head;
    head_reset(head);
}

sl_h1_parse_status_t sl_h1_parse_request(const uint8_t *buf, size_t len, const sl_h1_limits_t *lim,
                                         sl_h1_head_t *head, size_t *consumed)
{
    parse_state_t ps;
    state_init(&ps, buf, len, lim, head);
    /* RFC 9112 2.2: ignore empty lines before the request-line (some
     * clients send a CRLF after a POST body). */
    while (ps.p < ps.end && *ps.p == '\r') {
        sl_h1_parse_status_t st = expect_crlf(&ps, "bare CR");
        if (st != SL_H1_OK)
            return st;
    }
    sl_h1_parse_status_t st = parse_request_line(&ps);
    if (st == SL_H1_OK)
        st = parse_fields(&ps, consumed);
    if (st == SL_H1_OK)
        st = check_request(&ps);
    return st;
}

sl_h1_parse_status_t sl_h1_parse_response(const uint8_t *buf, size_t len, const sl_h1_limits_t *lim,
                                          sl_h1_head_t *head, size_t *consumed)
{
    parse_state_t ps;
    state_init(&ps, buf, len, lim, head);
    sl_h1_parse_status_t st = parse_status_line(&ps);
    if (st == SL_H1_OK)
        st = parse_fields(&ps, consumed);
    if (st == SL_H1_OK)
        st = check_response(&ps);
    return st;
}
