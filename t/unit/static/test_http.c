/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/http.c (HTTP-dates, entity-tag comparison,
 * Range parsing), src/static/http.c (Accept-Encoding), src/static/mime.c and
 * src/static/cache.c (hits, TTL expiry, LRU bound, refs outliving
 * eviction).
 */
#include "static/static_int.h"
#include "../helpers.h"
#include <check.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static sl_str_t S(const char *s)
{
    return (sl_str_t){s, strlen(s)};
}

START_TEST(dates)
{
    const int64_t t = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    ck_assert_int_eq(sl_http_date_parse(S("Sun, 06 Nov 1994 08:49:37 GMT")), t);
    ck_assert_int_eq(sl_http_date_parse(S("Sunday, 06-Nov-94 08:49:37 GMT")), t);
    ck_assert_int_eq(sl_http_date_parse(S("Sun Nov  6 08:49:37 1994")), t);
    ck_assert_int_eq(sl_http_date_parse(S(" Sun, 06 Nov 1994 08:49:37 GMT ")), t);
    ck_assert_int_eq(sl_http_date_parse(S("Sun, 06 Nov 1994 08:49:37 UTC")), -1);
    ck_assert_int_eq(sl_http_date_parse(S("Sun, 06 Foo 1994 08:49:37 GMT")), -1);
    ck_assert_int_eq(sl_http_date_parse(S("Sun, 06 Nov 1994 28:49:37 GMT")), -1);
    ck_assert_int_eq(sl_http_date_parse(S("yesterday")), -1);
    ck_assert_int_eq(sl_http_date_parse(S("")), -1);
    char out[30];
    sl_http_date_format(t, out);
    ck_assert_str_eq(out, "Sun, 06 Nov 1994 08:49:37 GMT");
}
END_TEST

START_TEST(etags)
{
    const char *e = "\"1-2-3\"";
    ck_assert(sl_http_etag_match(S("\"1-2-3\""), e, 0));
    ck_assert(sl_http_etag_match(S("\"x\", \"1-2-3\""), e, 0));
    ck_assert(sl_http_etag_match(S("*"), e, 0));
    ck_assert(!sl_http_etag_match(S("\"1-2-4\""), e, 1));
    /* weak comparison ignores W/, strong never matches a weak tag */
    ck_assert(sl_http_etag_match(S("W/\"1-2-3\""), e, 1));
    ck_assert(!sl_http_etag_match(S("W/\"1-2-3\""), e, 0));
    ck_assert(!sl_http_etag_match(S("1-2-3"), e, 1)); /* unquoted: malformed */
    ck_assert(!sl_http_etag_match(S("\"1-2-3"), e, 1));
    ck_assert(!sl_http_etag_match(S(""), e, 1));
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_ino = 0x10;
    st.st_size = 13;
    st.st_mtim.tv_sec = 1;
    st.st_mtim.tv_nsec = 5;
    char tag[64], other[64];
    sl_static_etag(&st, tag);
    /* quoted, 11 base64url characters, stable for the same file */
    ck_assert_uint_eq(strlen(tag), 13);
    ck_assert(tag[0] == '"' && tag[12] == '"');
    for (int i = 1; i < 12; i++)
        ck_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                         tag[i]) != NULL);
    sl_static_etag(&st, other);
    ck_assert_str_eq(tag, other);
    ck_assert(sl_http_etag_match(S(tag), tag, 0));
    /* any of inode, size, mtime (to the ns) changes it */
    struct stat v[3] = {st, st, st};
    v[0].st_ino++;
    v[1].st_size++;
    v[2].st_mtim.tv_nsec++;
    for (int i = 0; i < 3; i++) {
        sl_static_etag(&v[i], other);
        ck_assert_str_ne(tag, other);
    }
}
END_TEST

static sl_http_range_t R(const char *v, uint64_t size, uint64_t *f, uint64_t *l)
{
    *f = *l = 12345;
    return sl_http_range_parse(S(v), size, f, l);
}

START_TEST(ranges)
{
    uint64_t f, l;
    ck_assert_int_eq(R("bytes=0-0", 10, &f, &l), SL_HTTP_RANGE_ONE);
    ck_assert(f == 0 && l == 0);
    ck_assert_int_eq(R("bytes=2-4", 10, &f, &l), SL_HTTP_RANGE_ONE);
    ck_assert(f == 2 && l == 4);
    ck_assert_int_eq(R("bytes=0-", 10, &f, &l), SL_HTTP_RANGE_ONE);
    ck_assert(f == 0 && l == 9);
    ck_assert_int_eq(R("bytes=5-100", 10, &f, &l), SL_HTTP_RANGE_ONE);
    ck_assert(f == 5 && l == 9);
    ck_assert_int_eq(R("bytes=-3", 10, &f, &l), SL_HTTP_RANGE_ONE);
    ck_assert(f == 7 && l == 9);
    ck_assert_int_eq(R("bytes=-30", 10, &f, &l), SL_HTTP_RANGE_ONE);
    ck_assert(f == 0 && l == 9);
    ck_assert_int_eq(R("Bytes = 1-2", 10, &f, &l), SL_HTTP_RANGE_NONE); /* space before '=' */
    ck_assert_int_eq(R("BYTES=1-2", 10, &f, &l), SL_HTTP_RANGE_ONE);
    /* unsatisfiable */
    ck_assert_int_eq(R("bytes=-0", 10, &f, &l), SL_HTTP_RANGE_UNSAT);
    ck_assert_int_eq(R("bytes=10-", 10, &f, &l), SL_HTTP_RANGE_UNSAT);
    ck_assert_int_eq(R("bytes=10-20", 10, &f, &l), SL_HTTP_RANGE_UNSAT);
    ck_assert_int_eq(R("bytes=0-", 0, &f, &l), SL_HTTP_RANGE_UNSAT);
    ck_assert_int_eq(R("bytes=-5", 0, &f, &l), SL_HTTP_RANGE_UNSAT);
    ck_assert_int_eq(R("bytes=20-30, 40-50", 10, &f, &l), SL_HTTP_RANGE_UNSAT);
    /* ignored: reversed, junk, other units, overflow */
    ck_assert_int_eq(R("bytes=5-1", 10, &f, &l), SL_HTTP_RANGE_NONE);
    ck_assert_int_eq(R("bytes=a-b", 10, &f, &l), SL_HTTP_RANGE_NONE);
    ck_assert_int_eq(R("bytes=1", 10, &f, &l), SL_HTTP_RANGE_NONE);
    ck_assert_int_eq(R("bytes=", 10, &f, &l), SL_HTTP_RANGE_NONE);
    ck_assert_int_eq(R("bytes=-", 10, &f, &l), SL_HTTP_RANGE_NONE);
    ck_assert_int_eq(R("bytes=+1-2", 10, &f, &l), SL_HTTP_RANGE_NONE);
    ck_assert_int_eq(R("items=1-2", 10, &f, &l), SL_HTTP_RANGE_NONE);
    ck_assert_int_eq(R("bytes=99999999999999999999-", 10, &f, &l), SL_HTTP_RANGE_NONE);
    /* several: the whole file */
    ck_assert_int_eq(R("bytes=0-1,3-4", 10, &f, &l), SL_HTTP_RANGE_MULTI);
    ck_assert_int_eq(R("bytes=0-1, 30-40", 10, &f, &l), SL_HTTP_RANGE_MULTI);
}
END_TEST

START_TEST(accept_encoding)
{
    const int BR = SL_STATIC_ENC_BR, GZ = SL_STATIC_ENC_GZIP;
    ck_assert_int_eq(sl_static_accept_encoding(S("gzip, deflate, br")), BR | GZ);
    ck_assert_int_eq(sl_static_accept_encoding(S("gzip")), GZ);
    ck_assert_int_eq(sl_static_accept_encoding(S("br;q=0, gzip;q=0.5")), GZ);
    ck_assert_int_eq(sl_static_accept_encoding(S("br;q=0.000, gzip;q=0.")), 0);
    ck_assert_int_eq(sl_static_accept_encoding(S("*")), BR | GZ);
    ck_assert_int_eq(sl_static_accept_encoding(S("*;q=0")), 0);
    ck_assert_int_eq(sl_static_accept_encoding(S("gzip;q=0, *")), BR);
    ck_assert_int_eq(sl_static_accept_encoding(S("identity")), 0);
    ck_assert_int_eq(sl_static_accept_encoding(S("BR ; Q=1")), BR);
    ck_assert_int_eq(sl_static_accept_encoding(S("")), 0);
}
END_TEST

START_TEST(mime)
{
    sl_static_mime_t over[] = {{(char *)"txt", (char *)"text/x-mine"}};
    sl_static_opts_t o;
    memset(&o, 0, sizeof(o));
    ck_assert_str_eq(sl_static_mime_type(NULL, "a/b.HTML", 8), "text/html; charset=utf-8");
    ck_assert_str_eq(sl_static_mime_type(NULL, "x.woff2", 7), "font/woff2");
    ck_assert_str_eq(sl_static_mime_type(NULL, "x.unknown", 9), "application/octet-stream");
    ck_assert_str_eq(sl_static_mime_type(NULL, "Makefile", 8), "application/octet-stream");
    ck_assert_str_eq(sl_static_mime_type(NULL, "a.d/file", 8), "application/octet-stream");
    o.mime = over;
    o.nmime = 1;
    ck_assert_str_eq(sl_static_mime_type(&o, "a.txt", 5), "text/x-mine");
    ck_assert_str_eq(sl_static_mime_type(&o, "a.css", 5), "text/css; charset=utf-8");
}
END_TEST

static sl_static_meta_t null_meta; /* what a caller knows of /dev/null */

static sl_static_file_t open_null(void)
{
    sl_static_file_t f;
    memset(&f, 0, sizeof(f));
    f.m = &null_meta;
    f.fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(f.fd, 0);
    return f;
}

static int fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

START_TEST(cache_hits_expiry_and_bound)
{
    sl_static_opts_t *o = sl_calloc(1, sizeof(*o));
    o->rootfd = -1;
    o->cache_max = 2;
    o->cache_ttl_s = 1.0;
    sl_static_file_t f = open_null(), g;
    int fd = f.fd;
    memcpy(null_meta.etag, "\"n\"", 4);
    sl_static_cache_put(o, 0, "a", 1, 100.0, &f);
    ck_assert_ptr_nonnull(f._entry);
    ck_assert_ptr_ne(f.m, &null_meta); /* the entry keeps its own copy */
    sl_static_file_release(&f);
    null_meta.etag[1] = 'x';
    ck_assert(fd_open(fd)); /* the cache keeps it */
    ck_assert_int_eq(sl_static_cache_get(o, 0, "a", 1, 100.5, &g), 1);
    ck_assert_int_eq(g.fd, fd);
    ck_assert_str_eq(g.m->etag, "\"n\"");
    ck_assert_int_eq(sl_static_cache_get(o, 1, "a", 1, 100.5, &f), 0); /* other worker */
    /* expired while g still reads it: unlinked, fd lives until release */
    ck_assert_int_eq(sl_static_cache_get(o, 0, "a", 1, 101.0, &f), 0);
    ck_assert(fd_open(fd));
    sl_static_file_release(&g);
    ck_assert(!fd_open(fd));
    /* LRU bound: a third entry evicts the least recently used */
    const char *keys[] = {"x", "y", "z"};
    int fds[3];
    for (int i = 0; i < 3; i++) {
        f = open_null();
        fds[i] = f.fd;
        sl_static_cache_put(o, 0, keys[i], 1, 200.0, &f);
        sl_static_file_release(&f);
    }
    ck_assert(!fd_open(fds[0]));
    ck_assert_int_eq(sl_static_cache_get(o, 0, "x", 1, 200.1, &g), 0);
    ck_assert_int_eq(sl_static_cache_get(o, 0, "z", 1, 200.1, &g), 1);
    sl_static_file_release(&g);
    sl_static_free_state(o);
    ck_assert(!fd_open(fds[1]) && !fd_open(fds[2]));
}
END_TEST

/* Small files ride along in the entry; bigger ones only keep the fd. */
START_TEST(cache_keeps_small_content)
{
    char tmpl[] = "/tmp/sl-static-XXXXXX";
    int fd = mkstemp(tmpl);
    ck_assert_int_ge(fd, 0);
    unlink(tmpl);
    ck_assert_int_eq(write(fd, "abcdef", 6), 6);
    sl_static_opts_t *o = sl_calloc(1, sizeof(*o));
    o->rootfd = -1;
    o->cache_max = 4;
    o->cache_ttl_s = 5.0;
    o->cache_content_bytes = 6;
    sl_static_file_t f, g;
    sl_static_meta_t m = {0};
    memset(&f, 0, sizeof(f));
    f.fd = fd;
    f.m = &m;
    ck_assert_int_eq(fstat(fd, &m.st), 0);
    sl_static_cache_put(o, 0, "k", 1, 1.0, &f);
    ck_assert_ptr_nonnull(f.data);
    ck_assert(memcmp(f.data, "abcdef", 6) == 0);
    sl_static_file_release(&f);
    ck_assert_int_eq(sl_static_cache_get(o, 0, "k", 1, 2.0, &g), 1);
    ck_assert(g.data && memcmp(g.data, "abcdef", 6) == 0);
    sl_static_file_release(&g);
    o->cache_content_bytes = 5;
    memset(&f, 0, sizeof(f));
    f.fd = dup(fd);
    f.m = &m;
    sl_static_cache_put(o, 0, "big", 3, 1.0, &f);
    ck_assert_ptr_null(f.data);
    ck_assert_ptr_nonnull(f._entry);
    sl_static_file_release(&f);
    sl_static_free_state(o);
}
END_TEST

START_TEST(cache_off)
{
    sl_static_opts_t *o = sl_calloc(1, sizeof(*o));
    o->rootfd = -1;
    o->cache_max = 0;
    o->cache_ttl_s = 1.0;
    sl_static_file_t f = open_null();
    int fd = f.fd;
    sl_static_cache_put(o, 3, "a", 1, 1.0, &f);
    ck_assert_ptr_null(f._entry);
    sl_static_file_release(&f);
    ck_assert(!fd_open(fd));
    sl_static_free_state(o);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("static_http");
    TCase *tc = sl_test_tcase("http");
    tcase_add_test(tc, dates);
    tcase_add_test(tc, etags);
    tcase_add_test(tc, ranges);
    tcase_add_test(tc, accept_encoding);
    tcase_add_test(tc, mime);
    suite_add_tcase(s, tc);
    tc = sl_test_tcase("cache");
    tcase_add_test(tc, cache_hits_expiry_and_bound);
    tcase_add_test(tc, cache_keeps_small_content);
    tcase_add_test(tc, cache_off);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(suite());
}
