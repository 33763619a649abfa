/* sluice - SPDX-License-Identifier: MIT
 *
 * The upstream groups for clients outside the proxy handler (the jobs
 * "upstream" executor, which runs on its own thread and so cannot use the
 * per-worker pools): where to connect and with which timeouts. Balancing
 * here is plain rotation; passive health belongs to the workers' pools.
 */
#include "proxy.h"
#include "proxy_int.h"
#include "../h1/h1.h"

int sl_proxy_upstream_addr(const sl_config_t *cfg, const char *name, unsigned turn,
                           sl_proxy_addr_t *out)
{
    const px_upstreams_t *ups = cfg ? sl_config_section(cfg, "upstreams") : NULL;
    const px_upstream_t *up = ups && name ? px_upstream_find(ups, name) : NULL;
    if (!up || up->nservers == 0)
        return SL_EINVAL;
    const px_server_t *s = &up->servers[turn % up->nservers];
    out->sa = (const struct sockaddr *)&s->ss;
    out->sa_len = (unsigned)s->sslen;
    out->host = s->host;
    out->name = s->name;
    out->connect_s = up->to.connect_s;
    out->first_byte_s = up->to.first_byte_s;
    out->read_idle_s = up->to.read_idle_s;
    return 0;
}

/* ---- an HTTP/1.1 response reader over the strict h1 parser ---- */

#define READER_HEAD_MAX 32768
#define READER_FIELDS 100

enum { B_NONE, B_LENGTH, B_CHUNKED, B_EOF };

struct sl_proxy_reader {
    const sl_proxy_reader_cbs_t *cbs;
    void *arg;
    int head_request, in_body, body, complete;
    int64_t left;
    sl_h1_chunked_t ch;
    size_t len;
    uint8_t head[READER_HEAD_MAX];
};

sl_proxy_reader_t *sl_proxy_reader_new(int head_request, const sl_proxy_reader_cbs_t *cbs,
                                       void *arg)
{
    sl_proxy_reader_t *r = sl_calloc(1, sizeof(*r));
    r->head_request = head_request;
    r->cbs = cbs;
    r->arg = arg;
    sl_h1_chunked_init(&r->ch, 4096);
    return r;
}

void sl_proxy_reader_free(sl_proxy_reader_t *r)
{
    sl_free(r);
}

static int body_bytes(sl_proxy_reader_t *r, const uint8_t *p, size_t n)
{
    if (r->body == B_LENGTH) {
        size_t k = (size_t)SL_MIN((int64_t)n, r->left);
        if (k)
            r->cbs->on_data(r->arg, p, k);
        r->left -= (int64_t)k;
        r->complete = r->left == 0;
    } else if (r->body == B_CHUNKED) {
        if (sl_h1_chunked_decode(&r->ch, p, n, r->cbs->on_data, r->arg) < 0)
            return SL_EINVAL;
        r->complete = r->ch.done;
    } else if (n) {
        r->cbs->on_data(r->arg, p, n);
    }
    return 0;
}

static void body_kind(sl_proxy_reader_t *r, const sl_h1_head_t *h)
{
    if (r->head_request || h->status == 204 || h->status == 304)
        r->body = B_NONE;
    else if (h->chunked)
        r->body = B_CHUNKED;
    else if (h->content_length >= 0)
        r->body = B_LENGTH;
    else
        r->body = B_EOF;
    r->left = h->content_length;
    r->complete = r->body == B_NONE || (r->body == B_LENGTH && r->left == 0);
    r->in_body = 1;
}

/* Parse the head from r->head; 1xx heads are skipped. */
static int take_head(sl_proxy_reader_t *r, const char **err)
{
    static const sl_h1_limits_t lim = {.max_head = READER_HEAD_MAX, .max_headers = READER_FIELDS};
    sl_header_t fields[READER_FIELDS];
    for (;;) {
        sl_h1_head_t h;
        size_t used;
        memset(&h, 0, sizeof(h));
        h.headers = fields;
        h.max_headers = READER_FIELDS;
        sl_h1_parse_status_t st = sl_h1_parse_response(r->head, r->len, &lim, &h, &used);
        if (st == SL_H1_INCOMPLETE && r->len < READER_HEAD_MAX)
            return 0;
        if (st != SL_H1_OK) {
            *err = st == SL_H1_INCOMPLETE ? "response head too large" : "malformed response head";
            return SL_EINVAL;
        }
        if (h.status >= 200) {
            r->cbs->on_head(r->arg, h.status, h.headers, h.nheaders);
            body_kind(r, &h);
            if (!r->complete && body_bytes(r, r->head + used, r->len - used) != 0) {
                *err = "malformed chunked body";
                return SL_EINVAL;
            }
            return 0;
        }
        memmove(r->head, r->head + used, r->len - used);
        r->len -= used;
    }
}

int sl_proxy_reader_feed(sl_proxy_reader_t *r, const uint8_t *p, size_t n, const char **err)
{
    if (r->complete)
        return 1;
    if (r->in_body) {
        if (body_bytes(r, p, n) != 0) {
            *err = "malformed chunked body";
            return SL_EINVAL;
        }
        return r->complete;
    }
    while (n && !r->in_body) {
        size_t k = SL_MIN(n, READER_HEAD_MAX - r->len);
        memcpy(r->head + r->len, p, k);
        r->len += k;
        p += k;
        n -= k;
        /* what did not fit waits in p: a 1xx head frees room, else the
         * full buffer is an error */
        if (take_head(r, err) != 0)
            return SL_EINVAL;
    }
    if (n && r->in_body && !r->complete && body_bytes(r, p, n) != 0) {
        *err = "malformed chunked body";
        return SL_EINVAL;
    }
    return r->complete;
}

int sl_proxy_reader_eof(const sl_proxy_reader_t *r)
{
    return r->complete || (r->in_body && r->body == B_EOF);
}
