/* sluice - SPDX-License-Identifier: MIT
 *
 * An HTTP/1.1 response reader over the strict h1 parser for the upstream
 * client (client.c): heads up to 32 KiB with 1xx skipped, then the body
 * by content-length, chunked or to EOF, handed on as it arrives.
 */
#include "proxy_int.h"

#define READER_HEAD_MAX 32768
#define READER_FIELDS 100

struct px_reader {
    const px_reader_cbs_t *cbs;
    void *arg;
    int head_request, in_body, complete;
    px_body_t body;
    int64_t left;
    sl_h1_chunked_t ch;
    size_t len;
    uint8_t head[READER_HEAD_MAX];
};

px_reader_t *px_reader_new(int head_request, const px_reader_cbs_t *cbs, void *arg)
{
    px_reader_t *r = sl_calloc(1, sizeof(*r));
    r->head_request = head_request;
    r->cbs = cbs;
    r->arg = arg;
    sl_h1_chunked_init(&r->ch, 4096);
    return r;
}

void px_reader_free(px_reader_t *r)
{
    sl_free(r);
}

static int body_bytes(px_reader_t *r, const uint8_t *p, size_t n)
{
    if (r->body == PX_BODY_LENGTH) {
        size_t k = (size_t)SL_MIN((int64_t)n, r->left);
        if (k)
            r->cbs->on_data(r->arg, p, k);
        r->left -= (int64_t)k;
        r->complete = r->left == 0;
    } else if (r->body == PX_BODY_CHUNKED) {
        if (sl_h1_chunked_decode(&r->ch, p, n, r->cbs->on_data, r->arg) < 0)
            return SL_EINVAL;
        r->complete = r->ch.done;
    } else if (n) {
        r->cbs->on_data(r->arg, p, n);
    }
    return 0;
}

px_body_t px_resp_body(int head_request, const sl_h1_head_t *h)
{
    if (head_request || h->status == 204 || h->status == 304)
        return PX_BODY_NONE;
    if (h->chunked)
        return PX_BODY_CHUNKED;
    return h->content_length >= 0 ? PX_BODY_LENGTH : PX_BODY_CLOSE;
}

static void body_kind(px_reader_t *r, const sl_h1_head_t *h)
{
    r->body = px_resp_body(r->head_request, h);
    r->left = h->content_length;
    r->complete = r->body == PX_BODY_NONE || (r->body == PX_BODY_LENGTH && r->left == 0);
    r->in_body = 1;
}

/* Parse the head from r->head; 1xx heads are skipped. */
static int take_head(px_reader_t *r, const char **err)
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

int px_reader_feed(px_reader_t *r, const uint8_t *p, size_t n, const char **err)
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

int px_reader_eof(const px_reader_t *r)
{
    return r->complete || (r->in_body && r->body == PX_BODY_CLOSE);
}
