/* sluice - SPDX-License-Identifier: MIT
 *
 * The static handler's request path: map the URL below the route's root
 * (path.c, open.c), pick the file or its pre-compressed variant, answer
 * conditionals and ranges (http.c), then send the bytes: from the cache
 * entry when the file is small enough to be held there, else in one
 * zero-copy sl_resp_sendfile where the protocol has it (cleartext
 * HTTP/1.1), else as a pull (req.h): read one slice (read_bytes) with
 * pread into a buffer owned by the request, hand it to sl_resp_send, and
 * read the next slice only on on_proceed. On HTTP/2 that is the stream's
 * flow-control window, on HTTP/1.1 the socket's output queue, so a slow
 * reader costs one slice of memory however large the file is.
 */
#include "static_int.h"
#include "../log.h"
#include "../worker.h"
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#define SUFFIX_ROOM 8           /* ".br" / ".gz" after a file name */
#define LIT(s) s, sizeof(s) - 1 /* a string literal and its length */

typedef struct sreq {
    sl_req_t *req;
    sl_static_file_t file; /* fd -1 when none */
    uint64_t off, left;
    uint8_t *buf;
    size_t cap;
    unsigned waiting : 1;
    unsigned in_send : 1;
} sreq_t;

/* ---- streaming ---- */

/* Runs until a send is outstanding or the response is over. After a final
 * send or a reset the req may be gone, so nothing is touched after them. */
static void run(sreq_t *s)
{
    for (;;) {
        size_t want = (size_t)SL_MIN((uint64_t)s->cap, s->left);
        ssize_t got;
        do
            got = pread(s->file.fd, s->buf, want, (off_t)s->off);
        while (got < 0 && errno == EINTR);
        if (got <= 0) {
            /* The head promised more bytes: only an abort tells the client. */
            sl_log_stream(SL_LOG_WARN, s->req->conn, s->req->stream_id,
                          "static: file shrank or read failed at offset %llu: %s",
                          (unsigned long long)s->off, got < 0 ? strerror(errno) : "EOF");
            sl_resp_reset(s->req, SL_RESET_INTERNAL_ERROR);
            return;
        }
        s->off += (uint64_t)got;
        s->left -= (uint64_t)got;
        int final = s->left == 0;
        s->waiting = 1;
        s->in_send = 1;
        if (sl_resp_send(s->req, s->buf, (size_t)got, final) != 0 || final)
            return;
        s->in_send = 0;
        if (s->waiting)
            return; /* on_proceed calls us again */
    }
}

static void on_proceed(sl_req_t *req)
{
    sreq_t *s = req->hdata;
    s->waiting = 0;
    /* Taken synchronously inside sl_resp_send: run's loop goes on. */
    if (!s->in_send && s->left)
        run(s);
}

static void on_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    SL_UNUSED(data);
    SL_UNUSED(fin);
    if (len)
        sl_req_consume(req, len); /* a GET body means nothing here */
}

static void on_close(sl_req_t *req, int err)
{
    SL_UNUSED(err);
    sreq_t *s = req->hdata;
    sl_static_file_release(&s->file);
}

static const sl_handler_cbs_t static_cbs = {
    .on_body = on_body,
    .on_proceed = on_proceed,
    .on_close = on_close,
};

/* ---- finding the file ---- */

/* 1 with *f filled (a ref taken) when this worker's cache has key. */
static int cache_hit(sl_static_opts_t *o, const sl_req_t *req, const char *key, size_t klen,
                     sl_static_file_t *f)
{
    f->_entry = NULL;
    f->data = NULL;
    f->fd = -1;
    return sl_static_cache_get(o, req->worker_id, key, klen, ev_now(sl_worker_current()->loop), f);
}

/* The file for key (a path relative to the root), from the worker's cache
 * or opened and offered to it. Regular files and directories come back
 * (directories are not cached); anything else is -EACCES. 0 or -errno. */
static int lookup(sl_static_opts_t *o, sl_req_t *req, const char *key, size_t klen,
                  sl_static_file_t *f)
{
    double now = ev_now(sl_worker_current()->loop);
    if (cache_hit(o, req, key, klen, f))
        return 0;
    int fd = sl_static_open(o->rootfd, key);
    if (fd < 0)
        return fd;
    /* In the pool until the cache takes a copy (sl_static_cache_put). */
    sl_static_meta_t *m = sl_pool_alloc(&req->pool, sizeof(*m));
    memset(m, 0, sizeof(*m));
    f->fd = fd;
    f->m = m;
    if (fstat(fd, &m->st) != 0) {
        int e = errno;
        sl_static_file_release(f);
        return -e;
    }
    if (S_ISREG(m->st.st_mode)) {
        sl_static_etag(&m->st, m->etag);
        sl_http_date_format((int64_t)m->st.st_mtim.tv_sec, m->last_modified);
        m->etag_len = (uint8_t)strlen(m->etag);
        m->last_modified_len = (uint8_t)strlen(m->last_modified);
        /* Kept in the cache entry: a hit costs no table scan. */
        m->type = sl_static_mime_type(o, key, klen);
        m->type_len = strlen(m->type);
        m->dotfile = (uint8_t)sl_static_path_has_dotfile(key, klen);
        sl_static_cache_put(o, req->worker_id, key, klen, now, f);
    } else if (!S_ISDIR(m->st.st_mode)) {
        sl_static_file_release(f);
        return -EACCES;
    }
    return 0;
}

/* Answer a failed lookup: 404 for anything that does not exist or would
 * leave the root (EXDEV, ELOOP: not told apart, so nothing is learnt about
 * the tree outside), 403 for permissions, 500 for the rest. */
static void answer_errno(sl_req_t *req, int e, const char *rel)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG: sl_resp_error(req, 404, "not found"); return;
    case EXDEV:
    case ELOOP:
        sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id,
                      "client asked for \"%s\", which leaves the root through a symlink", rel);
        sl_resp_error(req, 404, "not found");
        return;
    case EACCES:
    case EPERM:
    case ENXIO: /* a socket file */
    case ENODEV: /* a device without a driver */ sl_resp_error(req, 403, "forbidden"); return;
    default:
        sl_log_stream(SL_LOG_WARN, req->conn, req->stream_id, "static: open \"%s\": %s", rel,
                      strerror(e));
        sl_resp_error(req, 500, "cannot open file");
    }
}

/* A directory named without its trailing slash: send the client there, so
 * relative links in its index resolve. */
static void redirect_dir(sl_req_t *req)
{
    char *loc = sl_pool_printf(&req->pool, "%.*s/%s%.*s", (int)req->path.n, req->path.p,
                               req->query.n ? "?" : "", (int)req->query.n, req->query.p);
    sl_resp_header_add(req, "location", loc);
    sl_resp_simple(req, 301, "text/plain; charset=utf-8", "moved\n", 6);
}

/* rel names a directory (ends with '/' or is ""): its first index file.
 * On success path holds the file's path and 0 is returned; 1 when there
 * is none and the route lists directories (f holds the directory). */
static int find_index(sl_static_opts_t *o, sl_req_t *req, char *path, size_t rlen, size_t cap,
                      sl_static_file_t *f)
{
    for (size_t i = 0; i < o->nindex; i++) {
        size_t n = strlen(o->index[i]);
        if (rlen + n + SUFFIX_ROOM >= cap)
            return -ENAMETOOLONG;
        memcpy(path + rlen, o->index[i], n + 1);
        int r = lookup(o, req, path, rlen + n, f);
        if (r == 0 && S_ISREG(f->m->st.st_mode))
            return 0;
        if (r == 0)
            sl_static_file_release(f); /* a directory called index.html */
        else if (r != -ENOENT)
            return r;
    }
    path[rlen] = '\0';
    /* No index: a listing (1, f holds the directory) or 403 where the
     * directory exists, else 404. */
    int r = lookup(o, req, path, rlen, f);
    if (r == 0 && o->autoindex)
        return 1;
    if (r == 0) {
        sl_static_file_release(f);
        return -EACCES;
    }
    return r;
}

/* ---- answering ---- */

/* The request fields this handler reads, found in one pass. */
typedef struct fields {
    const sl_str_t *if_match, *if_unmodified_since, *if_none_match, *if_modified_since;
    const sl_str_t *range, *if_range, *accept_encoding;
} fields_t;

static void scan_fields(const sl_req_t *req, fields_t *fl)
{
    memset(fl, 0, sizeof(*fl));
    for (size_t i = 0; i < req->headers.n; i++) {
        const sl_header_t *h = &req->headers.v[i];
        const sl_str_t **slot = NULL;
        if (h->name.n < 5 || (h->name.p[0] != 'i' && h->name.p[0] != 'r' && h->name.p[0] != 'a'))
            continue;
        if (sl_str_eq(h->name, "if-match"))
            slot = &fl->if_match;
        else if (sl_str_eq(h->name, "if-unmodified-since"))
            slot = &fl->if_unmodified_since;
        else if (sl_str_eq(h->name, "if-none-match"))
            slot = &fl->if_none_match;
        else if (sl_str_eq(h->name, "if-modified-since"))
            slot = &fl->if_modified_since;
        else if (sl_str_eq(h->name, "range"))
            slot = &fl->range;
        else if (sl_str_eq(h->name, "if-range"))
            slot = &fl->if_range;
        else if (sl_str_eq(h->name, "accept-encoding"))
            slot = &fl->accept_encoding;
        if (slot && !*slot)
            *slot = &h->value; /* the first one counts */
    }
}

/* RFC 9110 13.2.2 steps 1-4. Returns 0 (go on), 304 or 412. */
static int preconditions(const fields_t *fl, const sl_static_file_t *f)
{
    int64_t mtime = (int64_t)f->m->st.st_mtim.tv_sec;
    if (fl->if_match) {
        if (!sl_http_etag_match(*fl->if_match, f->m->etag, 0))
            return 412;
    } else if (fl->if_unmodified_since) {
        int64_t t = sl_http_date_parse(*fl->if_unmodified_since);
        if (t >= 0 && mtime > t)
            return 412;
    }
    if (fl->if_none_match) {
        if (sl_http_etag_match(*fl->if_none_match, f->m->etag, 1))
            return 304;
    } else if (fl->if_modified_since) {
        int64_t t = sl_http_date_parse(*fl->if_modified_since);
        if (t >= 0 && mtime <= t)
            return 304;
    }
    return 0;
}

/* If-Range: the Range applies only while the validator still matches
 * (strong comparison for a tag, exact Last-Modified for a date). */
static int if_range_holds(const fields_t *fl, const sl_static_file_t *f)
{
    if (!fl->if_range)
        return 1;
    sl_str_t v = *fl->if_range;
    while (v.n && v.p[0] == ' ') {
        v.p++;
        v.n--;
    }
    if (v.n && (v.p[0] == '"' || v.p[0] == 'W'))
        return sl_http_etag_match(v, f->m->etag, 0);
    int64_t t = sl_http_date_parse(v);
    return t >= 0 && t == (int64_t)f->m->st.st_mtim.tv_sec;
}

/* Validators and caching headers shared by 200, 206 and 304. */
static void add_validators(sl_req_t *req, const sl_static_opts_t *o, const sl_static_file_t *f)
{
    /* No copies: the values live in the entry or file we hold until
     * on_close, or in the route state. */
    SL_RESP_HEADER_PLAIN(req, "etag", f->m->etag, f->m->etag_len);
    SL_RESP_HEADER_PLAIN(req, "last-modified", f->m->last_modified, f->m->last_modified_len);
    if (o->cache_control)
        SL_RESP_HEADER_PLAIN(req, "cache-control", o->cache_control, o->cache_control_len);
    if (o->precompressed)
        SL_RESP_HEADER_PLAIN(req, "vary", LIT("accept-encoding"));
}

/* Pick the .br or .gz variant beside path[0..plen) when the client takes
 * it. Returns the Content-Encoding used, or NULL (f left as it was). */
static const char *pick_variant(sl_static_opts_t *o, sl_req_t *req, const fields_t *fl,
                                const char *name, size_t plen, sl_static_file_t *f)
{
    if (!o->precompressed || !fl->accept_encoding)
        return NULL;
    int acc = sl_static_accept_encoding(*fl->accept_encoding);
    char *path = sl_pool_alloc(&req->pool, plen + SUFFIX_ROOM);
    memcpy(path, name, plen);
    static const struct {
        int bit;
        const char *suffix, *name;
    } encs[] = {{SL_STATIC_ENC_BR, ".br", "br"}, {SL_STATIC_ENC_GZIP, ".gz", "gzip"}};
    for (size_t i = 0; i < SL_ARRAY_LEN(encs); i++) {
        if (!(acc & encs[i].bit))
            continue;
        memcpy(path + plen, encs[i].suffix, 4);
        sl_static_file_t vf;
        int r = lookup(o, req, path, plen + 3, &vf);
        path[plen] = '\0';
        if (r != 0)
            continue;
        if (!S_ISREG(vf.m->st.st_mode)) {
            sl_static_file_release(&vf);
            continue;
        }
        sl_static_file_release(f);
        *f = vf;
        return encs[i].name;
    }
    return NULL;
}

/* The head is decided; send the body from [first, first + len). */
static void start_body(sreq_t *s, const sl_static_opts_t *o, uint64_t first, uint64_t len)
{
    sl_req_t *req = s->req;
    req->res.content_length = (int64_t)len;
    if (req->is_head || len == 0) {
        sl_resp_send(req, NULL, 0, 1);
        return;
    }
    if (s->file.data) {
        /* Held by the cache entry we have a ref on: valid until on_close. */
        sl_resp_send(req, s->file.data + first, (size_t)len, 1);
        return;
    }
    /* Cleartext HTTP/1.1: the whole range in one zero-copy send; the fd
     * stays open (our ref) until on_close. Elsewhere SL_EINVAL: slices. */
    if (o->sendfile &&
        sl_resp_sendfile(req, s->file.fd, (int64_t)first, (size_t)len, 1) != SL_EINVAL)
        return;
    s->off = first;
    s->left = len;
    s->cap = (size_t)SL_MIN((uint64_t)o->read_bytes, len);
    /* Ours alone: the protocol may frame the body in place (req.h). */
    s->buf = (uint8_t *)sl_pool_alloc(&req->pool, SL_RESP_SCRATCH + s->cap) + SL_RESP_SCRATCH;
    req->res.body_scratch = 1;
    run(s);
}

/* path[0..plen): the file's key, which names a variant beside it. */
static void serve(sreq_t *s, sl_static_opts_t *o, const char *path, size_t plen)
{
    sl_req_t *req = s->req;
    fields_t fl;
    scan_fields(req, &fl);
    /* The original's type: a variant keeps it (its own name ends in .br). */
    const char *type = s->file.m->type;
    size_t type_len = s->file.m->type_len;
    const char *enc = pick_variant(o, req, &fl, path, plen, &s->file);
    const sl_static_file_t *f = &s->file;
    uint64_t size = (uint64_t)f->m->st.st_size;
    int pre = preconditions(&fl, f);
    if (pre == 412) {
        sl_resp_error(req, 412, "precondition failed");
        return;
    }
    if (pre == 304) {
        add_validators(req, o, f);
        req->res.status = 304;
        sl_resp_send(req, NULL, 0, 1);
        return;
    }
    uint64_t first = 0, last = 0;
    sl_http_range_t r = SL_HTTP_RANGE_NONE;
    /* Range is defined for GET only (RFC 9110 14.2): HEAD ignores it. */
    if (!req->is_head && fl.range && if_range_holds(&fl, f))
        r = sl_http_range_parse(*fl.range, size, &first, &last);
    if (r == SL_HTTP_RANGE_UNSAT) {
        sl_resp_header_add(req, "content-range",
                           sl_pool_printf(&req->pool, "bytes */%llu", (unsigned long long)size));
        sl_resp_error(req, 416, "range not satisfiable");
        return;
    }
    add_validators(req, o, f);
    SL_RESP_HEADER_PLAIN(req, "content-type", type, type_len);
    if (enc)
        SL_RESP_HEADER_PLAIN(req, "content-encoding", enc, strlen(enc));
    SL_RESP_HEADER_PLAIN(req, "accept-ranges", LIT("bytes"));
    req->res.status = 200;
    if (r == SL_HTTP_RANGE_ONE) {
        req->res.status = 206;
        sl_resp_header_add(req, "content-range",
                           sl_pool_printf(&req->pool, "bytes %llu-%llu/%llu",
                                          (unsigned long long)first, (unsigned long long)last,
                                          (unsigned long long)size));
        start_body(s, o, first, last - first + 1);
        return;
    }
    start_body(s, o, 0, size); /* no Range, or several: the whole file */
}

/* The request path after the route's path up to and including its last
 * '/': route "/assets/" maps "/assets/a.css" to "<root>/a.css", route
 * "/" maps the whole path, an exact route "/small.txt" maps "small.txt". */
static sl_str_t route_rest(const sl_req_t *req)
{
    size_t strip = SL_MIN(req->route->dir_len, req->path.n);
    return (sl_str_t){req->path.p + strip, req->path.n - strip};
}

static void on_req(sl_req_t *req)
{
    sl_static_opts_t *o = req->route->state;
    sreq_t *s = sl_pool_alloc(&req->pool, sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->req = req;
    s->file.fd = -1;
    req->cbs = &static_cbs;
    req->hdata = s;
    if (!sl_str_eq(req->method, "GET") && !sl_str_eq(req->method, "HEAD")) {
        sl_resp_header_add(req, "allow", "GET, HEAD");
        sl_resp_error(req, 405, "method not allowed");
        return;
    }
    sl_str_t rest = route_rest(req);
    /* Normalising never lengthens a path by more than its implied trailing
     * '/', so a short path gets a short buffer (from the pool's inline
     * block, not a 4 KiB one of its own). */
    size_t ncap = SL_MIN(rest.n + 2, (size_t)SL_STATIC_PATH_MAX);
    /* A path in its normalised form is looked up as it came: every cache
     * key is the normalised path of a regular file that passed the checks
     * below, and a string equal to one normalises to itself unless it has
     * a '%' (a key may hold one that arrived encoded). A hit skips the
     * normalising; a directory ('/' last) always takes the long way. The
     * dotfile rule is checked again, on the flag the entry keeps: an index
     * file found for a directory is cached under its own name, which the
     * rule never saw. */
    if (rest.n && rest.n < ncap && rest.p[rest.n - 1] != '/' && !memchr(rest.p, '%', rest.n) &&
        cache_hit(o, req, rest.p, rest.n, &s->file)) {
        if (o->dotfiles || !s->file.m->dotfile) {
            serve(s, o, rest.p, rest.n);
            return;
        }
        sl_static_file_release(&s->file); /* the long way answers it */
    }
    size_t cap = ncap + 256 + SUFFIX_ROOM;
    char *path = sl_pool_alloc(&req->pool, cap);
    size_t plen;
    const char *why;
    int rv = sl_static_path_normalize(rest.p, rest.n, path, ncap, &plen, &why);
    if (rv == SL_ETOOBIG) {
        sl_resp_error(req, 414, "path too long");
        return;
    }
    if (rv != 0) {
        sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id, "client sent %s", why);
        sl_resp_error(req, 400, why);
        return;
    }
    if (!o->dotfiles && sl_static_path_has_dotfile(path, plen)) {
        sl_resp_error(req, 404, "not found");
        return;
    }
    int r;
    if (plen == 0 || path[plen - 1] == '/') {
        r = find_index(o, req, path, plen, cap, &s->file);
        if (r == 1) {
            sl_static_listing(o, req, s->file.fd); /* the fd is closed in on_close */
            return;
        }
        plen = strlen(path);
    } else {
        r = lookup(o, req, path, plen, &s->file);
        if (r == 0 && S_ISDIR(s->file.m->st.st_mode)) {
            sl_static_file_release(&s->file);
            redirect_dir(req);
            return;
        }
    }
    if (r != 0) {
        answer_errno(req, -r, path);
        return;
    }
    serve(s, o, path, plen);
}

const sl_handler_def_t sl_static_handler = {
    .name = "static",
    .configure = sl_static_configure,
    .free_state = sl_static_free_state,
    .on_req = on_req,
};
