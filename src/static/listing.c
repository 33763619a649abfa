/* sluice - SPDX-License-Identifier: MIT
 *
 * Directory listings ("autoindex": true): a plain HTML page naming the
 * entries of a directory that has no index file, sorted by name, with
 * sizes. Names are untrusted bytes: in the href every byte outside the
 * URI unreserved set is percent-encoded (so "a:b" cannot become a scheme
 * and quotes cannot leave the attribute), in the text they are HTML
 * escaped. Dotfiles are left out unless the route serves them. The entry
 * count is bounded by max_listing_entries; past it the page is cut and
 * says so. Entries are stat'ed with AT_SYMLINK_NOFOLLOW, so nothing about
 * a symlink's target (which may lie outside the root) is shown.
 */
#include "static_int.h"
#include "../log.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct item {
    const char *name;
    size_t len;
    int64_t size; /* -1: not a regular file (no size shown) */
    int dir;
} item_t;

/* Worst-case growth of one name byte: "%XX" in the href, "&quot;" in text. */
#define HREF_X 3
#define TEXT_X 6
#define ROW_ROOM 96             /* markup and the size column around one entry */
#define LIT(s) s, sizeof(s) - 1 /* a string literal and its length */

static int by_name(const void *a, const void *b)
{
    const item_t *x = a, *y = b;
    int c = memcmp(x->name, y->name, SL_MIN(x->len, y->len));
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static size_t put_href(char *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    return o;
}

static size_t put_text(char *out, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: out[o++] = s[i]; continue;
        }
        size_t rl = strlen(rep);
        memcpy(out + o, rep, rl);
        o += rl;
    }
    return o;
}

/* Read up to max entries of the directory open as fd (not consumed) into
 * the request pool. *truncated is set when more were left. */
static int read_items(const sl_static_opts_t *o, sl_req_t *req, int fd, item_t **out, size_t *count,
                      int *truncated)
{
    int dfd = dup(fd);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        return -e;
    }
    size_t cap = 64, n = 0;
    item_t *v = sl_malloc(cap * sizeof(*v));
    struct dirent *de;
    *truncated = 0;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (nm[0] == '.' && (!o->dotfiles || !nm[1] || (nm[1] == '.' && !nm[2])))
            continue; /* ".", "..", and dotfiles unless served */
        if (n == o->max_listing_entries) {
            *truncated = 1;
            break;
        }
        if (n == cap) {
            cap *= 2;
            v = sl_realloc(v, cap * sizeof(*v));
        }
        struct stat st;
        item_t *it = &v[n++];
        it->len = strlen(nm);
        it->name = sl_pool_strndup(&req->pool, nm, it->len);
        it->size = -1;
        it->dir = 0;
        if (fstatat(fd, nm, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            it->dir = S_ISDIR(st.st_mode);
            if (S_ISREG(st.st_mode))
                it->size = (int64_t)st.st_size;
        }
    }
    closedir(d);
    item_t *pv = sl_pool_alloc(&req->pool, (n ? n : 1) * sizeof(*pv));
    if (n)
        memcpy(pv, v, n * sizeof(*pv));
    sl_free(v);
    qsort(pv, n, sizeof(*pv), by_name);
    *out = pv;
    *count = n;
    return 0;
}

/* The page for items; the bytes live in the request pool. */
static char *render(sl_req_t *req, const item_t *v, size_t n, int truncated, size_t *len)
{
    static const char tail_cut[] = "</pre><p>Listing truncated (max_listing_entries).</p>";
    size_t cap = 256 + req->path.n * TEXT_X * 2 + sizeof(tail_cut);
    for (size_t i = 0; i < n; i++)
        cap += v[i].len * (HREF_X + TEXT_X) + ROW_ROOM;
    char *b = sl_pool_alloc(&req->pool, cap), title[8192];
    size_t tl = put_text(title, req->path.p, SL_MIN(req->path.n, sizeof(title) / TEXT_X));
    size_t o = (size_t)snprintf(b, cap,
                                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                                "<title>Index of %.*s</title></head>\n<body><h1>Index of "
                                "%.*s</h1><pre>\n<a href=\"../\">../</a>\n",
                                (int)tl, title, (int)tl, title);
    for (size_t i = 0; i < n; i++) {
        memcpy(b + o, "<a href=\"./", 11);
        o += 11;
        o += put_href(b + o, v[i].name, v[i].len);
        if (v[i].dir)
            b[o++] = '/';
        memcpy(b + o, "\">", 2);
        o += 2;
        o += put_text(b + o, v[i].name, v[i].len);
        if (v[i].dir)
            b[o++] = '/';
        if (v[i].size >= 0)
            o += (size_t)snprintf(b + o, cap - o, "</a> %lld\n", (long long)v[i].size);
        else
            o += (size_t)snprintf(b + o, cap - o, "</a> -\n");
    }
    const char *tail = truncated ? tail_cut : "</pre>";
    o += (size_t)snprintf(b + o, cap - o, "%s</body></html>\n", tail);
    *len = o;
    return b;
}

void sl_static_listing(const sl_static_opts_t *o, sl_req_t *req, int dirfd)
{
    item_t *v = NULL;
    size_t n = 0, len;
    int truncated = 0;
    int r = read_items(o, req, dirfd, &v, &n, &truncated);
    if (r != 0) {
        sl_log_stream(SL_LOG_WARN, req->conn, req->stream_id, "static: listing: %s", strerror(-r));
        sl_resp_error(req, 500, "cannot list directory");
        return;
    }
    if (truncated)
        sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id,
                      "static: listing cut at max_listing_entries (%zu)", o->max_listing_entries);
    char *body = render(req, v, n, truncated, &len);
    req->res.status = 200;
    sl_resp_header_add_ref(req, LIT("content-type"), LIT("text/html; charset=utf-8"));
    sl_resp_header_add_ref(req, LIT("cache-control"), LIT("no-cache"));
    req->res.content_length = (int64_t)len;
    if (req->is_head)
        sl_resp_send(req, NULL, 0, 1);
    else
        sl_resp_send(req, body, len, 1);
}
