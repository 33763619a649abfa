/* sluice - SPDX-License-Identifier: MIT
 *
 * The HTTP/1.1 request head sent upstream, and the response header filter.
 * Hop-by-hop fields (RFC 9110 7.6.1: Connection and the fields it names,
 * Keep-Alive, TE, Transfer-Encoding, Upgrade, Proxy-*) never cross the
 * proxy. Forwarding fields (Forwarded, X-Forwarded-For/-Proto/-Host) from
 * the client are kept only when the client is a trusted proxy; otherwise
 * they are dropped and written afresh, so a client cannot forge its
 * address. Framing (Content-Length / chunked) is always our own.
 */
#include "proxy_int.h"
#include <arpa/inet.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

/* Text "name: value\r\n" into p, or (nv set) HTTP/2 fields: names and
 * plain values are referenced where they live (they outlive the build,
 * and nghttp2 copies them at submit), values put together here are
 * written to p. */
typedef struct out {
    char *p;
    size_t n, cap;
    int overflow;
    nghttp2_nv *nv;
    size_t nnv, nvcap, vstart;
    const char *name;
    size_t nn;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->overflow || o->cap - o->n < n) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

static void puts_(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

static void add_nv(out_t *o, const char *name, size_t nn, const char *val, size_t vn,
                   uint8_t flags)
{
    if (o->nnv == o->nvcap) {
        o->overflow = 1;
        return;
    }
    o->nv[o->nnv++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)val, nn, vn, flags};
}

/* A value put together piece by piece: field_begin, put..., field_end. */
static void field_begin(out_t *o, const char *name, size_t nn)
{
    if (o->nv) {
        o->name = name, o->nn = nn, o->vstart = o->n;
        return;
    }
    put(o, name, nn);
    put(o, ": ", 2);
}

static void field_end(out_t *o, uint8_t flags)
{
    if (o->nv)
        add_nv(o, o->name, o->nn, o->p + o->vstart, o->n - o->vstart, flags);
    else
        put(o, "\r\n", 2);
}

static void header_f(out_t *o, const char *name, size_t nn, const char *val, size_t vn,
                     uint8_t flags)
{
    if (o->nv) {
        add_nv(o, name, nn, val, vn, flags);
        return;
    }
    put(o, name, nn);
    put(o, ": ", 2);
    put(o, val, vn);
    put(o, "\r\n", 2);
}

static void header(out_t *o, const char *name, size_t nn, const char *val, size_t vn)
{
    header_f(o, name, nn, val, vn, NGHTTP2_NV_FLAG_NONE);
}

int px_is_hop_header(sl_str_t n, sl_str_t connection)
{
    if (sl_field_is_connection_specific(n) || (n.n > 6 && strncasecmp(n.p, "proxy-", 6) == 0))
        return 1;
    return sl_str_has_token_s(connection, n);
}

static int in_list(char *const *list, size_t n, sl_str_t name)
{
    for (size_t i = 0; i < n; i++)
        if (sl_str_caseeq(name, list[i]))
            return 1;
    return 0;
}

static int in_set(const sl_header_t *set, size_t n, sl_str_t name)
{
    for (size_t i = 0; i < n; i++)
        if (name.n == set[i].name.n && strncasecmp(name.p, set[i].name.p, name.n) == 0)
            return 1;
    return 0;
}

int px_trailer_dropped(sl_str_t name)
{
    /* RFC 9110 6.5.1: no framing or routing fields in a trailer section. */
    return px_is_hop_header(name, (sl_str_t){"", 0}) || sl_str_caseeq(name, "content-length") ||
           sl_str_caseeq(name, "host");
}

ssize_t px_build_trailers(const sl_headers_t *t, char *out, size_t cap)
{
    out_t o = {.p = out, .cap = cap};
    put(&o, "0\r\n", 3);
    for (size_t i = 0; i < t->n; i++)
        if (!px_trailer_dropped(t->v[i].name))
            header(&o, t->v[i].name.p, t->v[i].name.n, t->v[i].value.p, t->v[i].value.n);
    put(&o, "\r\n", 2);
    return o.overflow ? SL_ETOOBIG : (ssize_t)o.n;
}

int px_resp_header_dropped(const px_route_t *rt, sl_str_t name, sl_str_t connection)
{
    return px_is_hop_header(name, connection) || sl_str_caseeq(name, "content-length") ||
           in_list(rt->remove_resp_headers, rt->nremove_resp, name) ||
           in_set(rt->set_resp_headers, rt->nset_resp, name);
}

void px_peer_ip(const char *peer, char *out, size_t cap)
{
    sl_str_t ip = sl_peer_ip(peer);
    size_t n = SL_MIN(ip.n, cap - 1);
    memcpy(out, ip.p, n);
    out[n] = 0;
}

int px_cidr_parse(const char *s, px_cidr_t *c)
{
    char ip[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n >= sizeof(ip))
        return SL_EINVAL;
    memcpy(ip, s, n);
    ip[n] = 0;
    memset(c, 0, sizeof(*c));
    if (inet_pton(AF_INET, ip, c->addr) == 1)
        c->family = AF_INET;
    else if (inet_pton(AF_INET6, ip, c->addr) == 1)
        c->family = AF_INET6;
    else
        return SL_EINVAL;
    int max = c->family == AF_INET ? 32 : 128;
    c->bits = max;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || b < 0 || b > max)
            return SL_EINVAL;
        c->bits = (int)b;
    }
    return 0;
}

static int cidr_match(const px_cidr_t *c, int family, const uint8_t *a)
{
    if (c->family != family)
        return 0;
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, a, (size_t)full) != 0)
        return 0;
    if (!rest)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (a[full] & mask);
}

int px_ip_trusted(const px_route_t *rt, const char *ip)
{
    uint8_t a[16];
    int fam = AF_INET;
    if (!rt->ntrusted)
        return 0;
    if (inet_pton(AF_INET, ip, a) != 1) {
        if (inet_pton(AF_INET6, ip, a) != 1)
            return 0;
        fam = AF_INET6;
    }
    for (size_t i = 0; i < rt->ntrusted; i++)
        if (cidr_match(&rt->trusted[i], fam, a))
            return 1;
    return 0;
}

ssize_t px_rewrite_target(const sl_req_t *req, const px_route_t *rt, char *buf, size_t cap)
{
    out_t o = {.p = buf, .cap = cap};
    /* The normalised path is what the router matched; the raw one only
     * for apps that need their own encoding back (route opt-in). */
    sl_str_t path = rt->forward_raw_path && req->raw_path.n ? req->raw_path : req->path;
    size_t sn = rt->strip_prefix ? strlen(rt->strip_prefix) : 0;
    if (sn && path.n >= sn && memcmp(path.p, rt->strip_prefix, sn) == 0) {
        sl_str_t rest = {path.p + sn, path.n - sn};
        const char *repl = rt->replace_prefix ? rt->replace_prefix : "";
        size_t rn = strlen(repl);
        /* "/api" + "/x" -> "/x"; "/v2/" + "/x" -> "/v2/x": never "//". */
        if (rn && repl[rn - 1] == '/' && rest.n && rest.p[0] == '/')
            rn--;
        put(&o, repl, rn);
        if (rn && repl[rn - 1] != '/' && rest.n && rest.p[0] != '/')
            put(&o, "/", 1);
        put(&o, rest.p, rest.n);
        if (o.n == 0)
            put(&o, "/", 1);
    } else {
        put(&o, path.p, path.n);
    }
    if (req->query.n) {
        put(&o, "?", 1);
        put(&o, req->query.p, req->query.n);
    }
    return o.overflow ? SL_ETOOBIG : (ssize_t)o.n;
}

/* Forwarded (RFC 7239) node: IPv6 quoted and bracketed. */
static void forwarded_for(out_t *o, const char *ip)
{
    if (strchr(ip, ':')) {
        puts_(o, "for=\"[");
        puts_(o, ip);
        puts_(o, "]\"");
    } else {
        puts_(o, "for=");
        puts_(o, ip[0] ? ip : "unknown");
    }
}

static void forwarding(out_t *o, const sl_req_t *req, const px_route_t *rt)
{
    char ip[64];
    px_peer_ip(req->peer, ip, sizeof(ip));
    int trust = px_ip_trusted(rt, ip);
    const sl_header_t *xff = trust ? sl_req_header(req, "x-forwarded-for") : NULL;
    const sl_header_t *fwd = trust ? sl_req_header(req, "forwarded") : NULL;
    const sl_header_t *xfp = trust ? sl_req_header(req, "x-forwarded-proto") : NULL;
    const sl_header_t *xfh = trust ? sl_req_header(req, "x-forwarded-host") : NULL;
    /* From the connection: a cleartext h2 client may claim :scheme https. */
    sl_str_t proto = sl_req_conn_scheme(req);

    field_begin(o, "x-forwarded-for", 15);
    if (xff) {
        put(o, xff->value.p, xff->value.n);
        put(o, ", ", 2);
    }
    puts_(o, ip);
    field_end(o, NGHTTP2_NV_FLAG_NONE);
    if (xfp)
        header(o, "x-forwarded-proto", 17, xfp->value.p, xfp->value.n);
    else
        header(o, "x-forwarded-proto", 17, proto.p, proto.n);
    if (xfh)
        header(o, "x-forwarded-host", 16, xfh->value.p, xfh->value.n);
    else if (req->authority.n)
        header(o, "x-forwarded-host", 16, req->authority.p, req->authority.n);
    field_begin(o, "forwarded", 9);
    if (fwd) {
        put(o, fwd->value.p, fwd->value.n);
        put(o, ", ", 2);
    }
    forwarded_for(o, ip);
    put(o, ";proto=", 7);
    put(o, proto.p, proto.n);
    if (req->authority.n && !memchr(req->authority.p, '"', req->authority.n)) {
        put(o, ";host=\"", 7);
        put(o, req->authority.p, req->authority.n);
        put(o, "\"", 1);
    }
    field_end(o, NGHTTP2_NV_FLAG_NONE);
}

static int peer_trusted(const sl_req_t *req, const px_route_t *rt)
{
    char ip[64];
    px_peer_ip(req->peer, ip, sizeof(ip));
    return px_ip_trusted(rt, ip);
}

/* The verified TLS client certificate, for the app: ours when the client
 * showed one; a trusted proxy's (it terminated TLS itself) otherwise;
 * never one a client wrote. */
static int client_cert_field(sl_str_t n)
{
    return sl_str_caseeq(n, "x-client-cert-subject") || sl_str_caseeq(n, "x-client-cert-sha256");
}

static void client_cert(out_t *o, const sl_req_t *req)
{
    if (!req->tls.client_fp)
        return;
    header(o, "x-client-cert-subject", 21, req->tls.client_subject,
           strlen(req->tls.client_subject));
    header(o, "x-client-cert-sha256", 20, req->tls.client_fp, strlen(req->tls.client_fp));
}

/* Dropped from the client's fields: hop-by-hop, what we write ourselves,
 * forwarding fields from untrusted clients, the route's removals. */
static int request_field_dropped(const sl_req_t *req, const px_route_t *rt, sl_str_t n,
                                 sl_str_t conn)
{
    if (client_cert_field(n) && (req->tls.client_fp || !peer_trusted(req, rt)))
        return 1;
    if (px_is_hop_header(n, conn) || sl_str_caseeq(n, "host") ||
        sl_str_caseeq(n, "content-length") || sl_str_caseeq(n, "expect") ||
        sl_str_caseeq(n, "via") || (rt->request_id && sl_str_caseeq(n, "x-request-id")) ||
        (rt->traceparent && sl_str_caseeq(n, "traceparent")) ||
        sl_str_caseeq(n, "x-forwarded-for") ||
        sl_str_caseeq(n, "x-forwarded-proto") || sl_str_caseeq(n, "x-forwarded-host") ||
        sl_str_caseeq(n, "forwarded"))
        return 1;
    return in_list(rt->remove_headers, rt->nremove, n) || in_set(rt->set_headers, rt->nset, n);
}

static void host_field(out_t *o, const sl_req_t *req, const px_route_t *rt, const px_server_t *srv)
{
    const char *name = o->nv ? ":authority" : "host";
    size_t nn = o->nv ? 10 : 4;
    switch (rt->host_mode) {
    case PX_HOST_UPSTREAM: header(o, name, nn, srv->host, strlen(srv->host)); break;
    case PX_HOST_FIXED: header(o, name, nn, rt->host_value, strlen(rt->host_value)); break;
    default:
        if (req->authority.n)
            header(o, name, nn, req->authority.p, req->authority.n);
        else
            header(o, name, nn, srv->host, strlen(srv->host));
    }
}

void px_head_set(char **head, size_t *len, size_t *off, const char *buf, size_t n)
{
    sl_free(*head);
    *head = sl_malloc(n ? n : 1);
    memcpy(*head, buf, n);
    *len = n;
    *off = 0;
}

char *px_head_scratch(void)
{
    static __thread char scratch[PX_REQ_HEAD_MAX];
    return scratch;
}

/* The request line (text) or the pseudo-fields (nv) and the host. */
static int start_line(out_t *o, const px_head_in_t *in, const px_nv_out_t *h2)
{
    const sl_req_t *req = in->req;
    if (o->nv) {
        header(o, ":method", 7, req->method.p, req->method.n);
        header(o, ":scheme", 7, h2->tls ? "https" : "http", h2->tls ? 5 : 4);
        field_begin(o, ":path", 5);
    } else {
        put(o, req->method.p, req->method.n);
        put(o, " ", 1);
    }
    ssize_t tn = px_rewrite_target(req, in->rt, o->p + o->n, o->overflow ? 0 : o->cap - o->n);
    if (tn < 0)
        return SL_ETOOBIG;
    o->n += (size_t)tn;
    if (o->nv)
        field_end(o, NGHTTP2_NV_FLAG_NONE);
    else
        puts_(o, " HTTP/1.1\r\n");
    host_field(o, req, in->rt, in->srv);
    if (o->nv && h2->protocol.n) /* pseudo-fields first (RFC 9113 8.3) */
        header(o, ":protocol", 9, h2->protocol.p, h2->protocol.n);
    return 0;
}

/* Framing: content-length for both; chunked and connection only for
 * HTTP/1.1, where te is hop-by-hop; gRPC servers over HTTP/2 want
 * "te: trailers". */
static void framing(out_t *o, const px_head_in_t *in)
{
    const sl_req_t *req = in->req;
    if (in->body == 1) {
        char cl[24];
        int n = snprintf(cl, sizeof(cl), "%lld", (long long)req->content_length);
        field_begin(o, "content-length", 14);
        put(o, cl, (size_t)n);
        field_end(o, NGHTTP2_NV_FLAG_NONE);
    }
    if (o->nv) {
        const sl_header_t *te = sl_req_header(req, "te");
        if (te && sl_str_has_token(te->value, "trailers"))
            header(o, "te", 2, "trailers", 8);
        return;
    }
    if (in->body == 2)
        puts_(o, "transfer-encoding: chunked\r\n");
    if (in->rt->up->keepalive == 0)
        puts_(o, "connection: close\r\n");
    put(o, "\r\n", 2);
}

static int build(out_t *o, const px_head_in_t *in, const px_nv_out_t *h2)
{
    const sl_req_t *req = in->req;
    const px_route_t *rt = in->rt;
    const sl_header_t *ch = sl_req_header(req, "connection");
    sl_str_t conn = ch ? ch->value : (sl_str_t){"", 0};
    if (start_line(o, in, h2) < 0)
        return SL_ETOOBIG;
    for (size_t i = 0; i < req->headers.n; i++) {
        const sl_header_t *h = &req->headers.v[i];
        if (h->name.n && h->name.p[0] != ':' && !request_field_dropped(req, rt, h->name, conn))
            header(o, h->name.p, h->name.n, h->value.p, h->value.n);
    }
    for (size_t i = 0; i < rt->nset; i++)
        header(o, rt->set_headers[i].name.p, rt->set_headers[i].name.n,
               rt->set_headers[i].value.p, rt->set_headers[i].value.n);
    forwarding(o, req, rt);
    client_cert(o, req);
    const sl_header_t *via = sl_req_header(req, "via");
    field_begin(o, "via", 3);
    if (via) {
        put(o, via->value.p, via->value.n);
        put(o, ", ", 2);
    }
    puts_(o, req->proto == SL_PROTO_H2 ? "2 sluice" : req->version_minor ? "1.1 sluice" : "1.0 sluice");
    field_end(o, NGHTTP2_NV_FLAG_NONE);
    /* Unique per request: indexing them in HPACK would only evict the
     * fields that do repeat. */
    if (in->request_id[0])
        header_f(o, "x-request-id", 12, in->request_id, strlen(in->request_id),
                 NGHTTP2_NV_FLAG_NO_INDEX);
    if (in->traceparent[0])
        header_f(o, "traceparent", 11, in->traceparent, strlen(in->traceparent),
                 NGHTTP2_NV_FLAG_NO_INDEX);
    framing(o, in);
    return o->overflow ? SL_ETOOBIG : 0;
}

ssize_t px_build_request(const px_head_in_t *in, char *buf, size_t cap)
{
    out_t o = {.p = buf, .cap = cap};
    return build(&o, in, NULL) < 0 ? SL_ETOOBIG : (ssize_t)o.n;
}

ssize_t px_build_request_nv(const px_head_in_t *in, const px_nv_out_t *h2, char *buf, size_t cap)
{
    out_t o = {.p = buf, .cap = cap, .nv = h2->nv, .nvcap = h2->cap};
    return build(&o, in, h2) < 0 ? SL_ETOOBIG : (ssize_t)o.nnv;
}

size_t px_build_request_nv_max(const px_head_in_t *in)
{
    return in->req->headers.n + in->rt->nset + 20;
}
