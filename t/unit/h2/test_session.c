/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/h2/ (session.c, stream.c, limits.c) without sockets:
 * an nghttp2 client session produces the bytes, the server protocol
 * (sl_h2_proto) consumes them through a conn whose output queue the test
 * drains back into the client. Test handlers behind the real router cover
 * responses, streaming with on_proceed, trailers, tiny windows, request
 * bodies and credit, resets from both sides, the abuse limits, timers,
 * drain, teardown and the h2c upgrade.
 */
#include "slab.h"
#include "h2/h2_int.h"
#include "../fake_conn.h"
#include "../helpers.h"

#define MAXS 64
#define NV(a, b)                                                                                   \
    {                                                                                              \
        (uint8_t *)(a), (uint8_t *)(b), strlen(a), strlen(b), NGHTTP2_NV_FLAG_NONE                 \
    }

/* ---- what the client saw ---- */

typedef struct cstream {
    int status;
    char body[4096]; /* first bytes, for content checks */
    size_t blen;     /* all bytes */
    int ended, reset;
    uint32_t reset_code;
    int closed;
    int ninfo;        /* 1xx responses */
    char trailer[64]; /* "name=value" of the last trailer field */
    int in_trailers;
} cstream_t;

static struct {
    cstream_t s[MAXS * 2 + 2];
    int goaway;
    uint32_t goaway_code;
    int32_t goaway_last;
    int ngoaway;
} cl;

static cstream_t *cs(int32_t id)
{
    ck_assert_int_lt(id, (int)SL_ARRAY_LEN(cl.s));
    return &cl.s[id];
}

/* ---- the fake conn ---- */

static sl_fake_conn_t fc;
static sl_conn_t *c;
static nghttp2_session *client;
static int server_closed; /* the protocol returned SL_ECLOSED */
static long baseline;

/* ---- test handlers ---- */

static struct {
    int on_close, close_ok, close_canceled;
    int body_fin;
    size_t body_bytes;
    sl_req_t *later; /* a request answered from "outside" */
} hs;

static void count_close(sl_req_t *req, int e)
{
    SL_UNUSED(req);
    hs.on_close++;
    if (e == 0)
        hs.close_ok++;
    else if (e == SL_ECANCELED)
        hs.close_canceled++;
}

static const sl_handler_cbs_t close_cbs = {.on_close = count_close};

/* /info: one line describing the request model. */
static void h_info(sl_req_t *req)
{
    const sl_header_t *ck = sl_req_header(req, "cookie");
    char *b =
        sl_pool_printf(&req->pool, "%.*s %.*s q=%.*s a=%.*s s=%.*s cl=%lld ck=%.*s done=%d",
                       (int)req->method.n, req->method.p, (int)req->path.n, req->path.p,
                       (int)req->query.n, req->query.p, (int)req->authority.n, req->authority.p,
                       (int)req->scheme.n, req->scheme.p, (long long)req->content_length,
                       ck ? (int)ck->value.n : 0, ck ? ck->value.p : "", req->body_done);
    req->cbs = &close_cbs;
    sl_resp_header_add(req, "X-Mixed-Case", "yes");
    sl_resp_header_add(req, "connection", "close"); /* must be dropped */
    sl_resp_simple(req, 200, "text/plain", b, strlen(b));
}

/* /chunks?n=N&size=S: N chunks of S bytes, one per on_proceed, then a
 * trailer. */
typedef struct chunker {
    int left;
    size_t size;
    uint8_t buf[65536];
} chunker_t;

static void chunk_next(sl_req_t *req)
{
    chunker_t *k = req->hdata;
    int last = --k->left == 0;
    memset(k->buf, 'a' + k->left % 26, k->size);
    sl_resp_send(req, k->buf, k->size, last);
}

static const sl_handler_cbs_t chunk_cbs = {.on_proceed = chunk_next, .on_close = count_close};

static int query_int(sl_req_t *req, const char *key, int def)
{
    char pat[32];
    snprintf(pat, sizeof(pat), "%s=", key);
    const char *q = req->query.p, *end = q + req->query.n;
    size_t pl = strlen(pat);
    for (const char *p = q; p + pl <= end; p++)
        if ((p == q || p[-1] == '&') && memcmp(p, pat, pl) == 0)
            return atoi(p + pl);
    return def;
}

static void h_chunks(sl_req_t *req)
{
    chunker_t *k = sl_pool_alloc(&req->pool, sizeof(*k));
    k->left = query_int(req, "n", 4);
    k->size = (size_t)query_int(req, "size", 1000);
    req->hdata = k;
    req->cbs = &chunk_cbs;
    sl_resp_trailer_add(req, "x-done", "yes");
    sl_resp_send(req, NULL, 0, 0); /* head first, data on proceed */
}

/* /sink: counts the body; consume=0 never gives credit back. Answers at
 * the end of the body. */
static void sink_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    SL_UNUSED(data);
    hs.body_bytes += len;
    if (len && query_int(req, "consume", 1))
        sl_req_consume(req, len);
    if (fin) {
        hs.body_fin++;
        char *b = sl_pool_printf(&req->pool, "%zu", (size_t)req->bytes_in);
        sl_resp_simple(req, 200, "text/plain", b, strlen(b));
    }
}

static const sl_handler_cbs_t sink_cbs = {.on_body = sink_body, .on_close = count_close};

static void h_sink(sl_req_t *req)
{
    req->cbs = &sink_cbs;
    if (req->body_done)
        sl_resp_simple(req, 200, "text/plain", "0", 1);
}

/* /later: answered by the test itself. */
static void h_later(sl_req_t *req)
{
    req->cbs = &close_cbs;
    hs.later = req;
}

/* /hints: 103 then 200. */
static void h_hints(sl_req_t *req)
{
    sl_headers_t hh = {0};
    sl_headers_add(&req->pool, &hh, "link", 4, "</a.css>; rel=preload", 21);
    req->cbs = &close_cbs;
    ck_assert_int_eq(sl_resp_informational(req, 103, &hh), 0);
    sl_resp_simple(req, 200, "text/plain", "ok", 2);
}

static void h_dispatch(sl_req_t *req)
{
    sl_str_t p = req->path;
    if (sl_str_eq(p, "/chunks"))
        h_chunks(req);
    else if (sl_str_eq(p, "/sink"))
        h_sink(req);
    else if (sl_str_eq(p, "/later"))
        h_later(req);
    else if (sl_str_eq(p, "/hints"))
        h_hints(req);
    else
        h_info(req);
}

static const sl_handler_def_t t_handler = {.name = "t_h2", .on_req = h_dispatch};

/* ---- driving ---- */

static void take_output(void)
{
    const uint8_t *p;
    size_t n;
    while (sl_buf_peek(&c->out, &p, &n) == 0) {
        ssize_t rv = nghttp2_session_mem_recv(client, p, n);
        ck_assert_msg(rv == (ssize_t)n, "client mem_recv: %s", nghttp2_strerror((int)rv));
        sl_buf_skip(&c->out, n);
    }
}

static void server_rv(int rv)
{
    if (rv == SL_ECLOSED && !server_closed) {
        server_closed = 1;
        take_output(); /* what lingers out before the close */
        sl_h2_proto.on_close(c);
        c->proto_closed = 1;
    }
}

/* Move bytes both ways until nothing moves. */
static void run(void)
{
    for (int round = 0; round < 10000 && !server_closed; round++) {
        int moved = 0;
        const uint8_t *p;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(client, &p)) > 0) {
            moved = 1;
            server_rv(sl_h2_proto.on_read(c, p, (size_t)n));
            if (server_closed)
                return;
        }
        ck_assert_int_ge(n, 0);
        if (sl_fake_conn_flush_due(&fc)) {
            moved = 1;
            take_output();
            server_rv(sl_h2_proto.on_writable(c));
        }
        if (!sl_buf_is_empty(&c->out)) {
            moved = 1;
            take_output();
        }
        if (!moved)
            return;
    }
}

/* ---- client callbacks ---- */

static int c_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                       const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    SL_UNUSED(s);
    SL_UNUSED(flags);
    SL_UNUSED(ud);
    cstream_t *x = cs(f->hd.stream_id);
    if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
        int st = atoi((const char *)value);
        if (st < 200)
            x->ninfo++;
        else
            x->status = st;
    } else if (f->headers.cat == NGHTTP2_HCAT_HEADERS && x->status) {
        snprintf(x->trailer, sizeof(x->trailer), "%.*s=%.*s", (int)nlen, name, (int)vlen, value);
    }
    /* Upper case or connection-specific fields would be a server bug. */
    for (size_t i = 0; i < nlen; i++)
        ck_assert(!(name[i] >= 'A' && name[i] <= 'Z'));
    ck_assert(!(nlen == 10 && memcmp(name, "connection", 10) == 0));
    return 0;
}

static int c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                     void *ud)
{
    SL_UNUSED(s);
    SL_UNUSED(flags);
    SL_UNUSED(ud);
    cstream_t *x = cs(id);
    if (x->blen < sizeof(x->body) - 1) {
        size_t k = SL_MIN(len, sizeof(x->body) - 1 - x->blen);
        memcpy(x->body + x->blen, data, k);
    }
    x->blen += len;
    return 0;
}

static int c_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    SL_UNUSED(s);
    SL_UNUSED(ud);
    if (f->hd.type == NGHTTP2_GOAWAY) {
        cl.goaway = 1;
        cl.ngoaway++;
        cl.goaway_code = f->goaway.error_code;
        cl.goaway_last = f->goaway.last_stream_id;
    } else if (f->hd.type == NGHTTP2_RST_STREAM) {
        cs(f->hd.stream_id)->reset = 1;
        cs(f->hd.stream_id)->reset_code = f->rst_stream.error_code;
    } else if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
               (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        cs(f->hd.stream_id)->ended = 1;
    }
    return 0;
}

static int c_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    SL_UNUSED(s);
    SL_UNUSED(code);
    SL_UNUSED(ud);
    cs(id)->closed = 1;
    return 0;
}

static void client_new(const nghttp2_settings_entry *iv, size_t niv)
{
    nghttp2_session_callbacks *cb;
    ck_assert_int_eq(nghttp2_session_callbacks_new(&cb), 0);
    nghttp2_session_callbacks_set_on_header_callback(cb, c_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, c_on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_on_close);
    ck_assert_int_eq(nghttp2_session_client_new(&client, cb, NULL), 0);
    nghttp2_session_callbacks_del(cb);
    ck_assert_int_eq(nghttp2_submit_settings(client, NGHTTP2_FLAG_NONE, iv, niv), 0);
}

/* ---- fixture ---- */

static void start_conn(const char *limits_json, const nghttp2_settings_entry *iv, size_t niv,
                       int start_h2)
{
    baseline = sl_alloc_count();
    sl_log_set_level("warn"); /* the INFO lines these tests provoke are expected */
    memset(&cl, 0, sizeof(cl));
    memset(&hs, 0, sizeof(hs));
    server_closed = 0;
    c = sl_fake_conn_open(&fc, &t_handler, limits_json);
    client_new(iv, niv);
    if (start_h2)
        server_rv(sl_h2_conn_start(c, NULL, 0));
}

static void finish_conn(void)
{
    if (!server_closed && c->pdata)
        sl_h2_proto.on_close(c);
    sl_fake_conn_close(&fc);
    nghttp2_session_del(client);
    sl_slab_flush(); /* cached nghttp2 blocks and streams are spare, not leaked */
    ck_assert_int_eq(sl_alloc_count(), baseline);
}

static int32_t request(const char *method, const char *path, const nghttp2_nv *extra, size_t nextra,
                       nghttp2_data_provider *body)
{
    nghttp2_nv nva[16];
    size_t n = 0;
    nghttp2_nv base[] = {NV(":method", method), NV(":path", path), NV(":scheme", "http"),
                         NV(":authority", "example.test")};
    for (size_t i = 0; i < SL_ARRAY_LEN(base); i++)
        nva[n++] = base[i];
    for (size_t i = 0; i < nextra && n < SL_ARRAY_LEN(nva); i++)
        nva[n++] = extra[i];
    int32_t id = nghttp2_submit_request(client, NULL, nva, n, body, NULL);
    ck_assert_int_gt(id, 0);
    return id;
}

/* A request body of `left` bytes of 'b'. */
static size_t body_left;
static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    SL_UNUSED(s);
    SL_UNUSED(id);
    SL_UNUSED(src);
    SL_UNUSED(ud);
    size_t n = SL_MIN(len, body_left);
    memset(buf, 'b', n);
    body_left -= n;
    if (body_left == 0)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static sl_h2_session_t *sess(void)
{
    return c->pdata;
}

/* ---- tests ---- */

START_TEST(test_get)
{
    start_conn(NULL, NULL, 0, 1);
    nghttp2_nv ck[] = {NV("cookie", "a=1"), NV("cookie", "b=2")};
    int32_t id = request("GET", "/info?x=1&y", ck, 2, NULL);
    run();
    cstream_t *x = cs(id);
    ck_assert_int_eq(x->status, 200);
    ck_assert_int_eq(x->ended, 1);
    x->body[x->blen] = '\0';
    ck_assert_str_eq(x->body, "GET /info q=x=1&y a=example.test s=http cl=-1 ck=a=1; b=2 done=1");
    ck_assert_int_eq(hs.on_close, 1);
    ck_assert_int_eq(hs.close_ok, 1);
    ck_assert_int_eq(sess()->nstreams, 0);
    finish_conn();
}
END_TEST

START_TEST(test_head_and_hints)
{
    start_conn(NULL, NULL, 0, 1);
    int32_t a = request("HEAD", "/info", NULL, 0, NULL);
    int32_t b = request("GET", "/hints", NULL, 0, NULL);
    run();
    ck_assert_int_eq(cs(a)->status, 200);
    ck_assert_int_eq(cs(a)->blen, 0);
    ck_assert_int_eq(cs(a)->ended, 1);
    ck_assert_int_eq(cs(b)->ninfo, 1);
    ck_assert_int_eq(cs(b)->status, 200);
    ck_assert_int_eq(hs.close_ok, 2);
    finish_conn();
}
END_TEST

START_TEST(test_streaming_trailers)
{
    start_conn(NULL, NULL, 0, 1);
    int32_t id = request("GET", "/chunks?n=40&size=50000", NULL, 0, NULL);
    run();
    cstream_t *x = cs(id);
    ck_assert_int_eq(x->status, 200);
    ck_assert_uint_eq(x->blen, 40 * 50000);
    ck_assert_int_eq(x->ended, 1);
    ck_assert_str_eq(x->trailer, "x-done=yes");
    ck_assert_int_eq(hs.close_ok, 1);
    finish_conn();
}
END_TEST

/* A client window of 1024 bytes still gets every byte (flow control,
 * DEFERRED data resumed by the handler's sends). */
START_TEST(test_tiny_window)
{
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1024}};
    start_conn(NULL, iv, 1, 1);
    int32_t a = request("GET", "/chunks?n=64&size=16384", NULL, 0, NULL);
    int32_t b = request("GET", "/chunks?n=3&size=7", NULL, 0, NULL);
    run();
    ck_assert_uint_eq(cs(a)->blen, 64 * 16384);
    ck_assert_uint_eq(cs(b)->blen, 21);
    ck_assert_int_eq(cs(a)->ended && cs(b)->ended, 1);
    finish_conn();
}
END_TEST

START_TEST(test_request_body)
{
    start_conn(NULL, NULL, 0, 1);
    nghttp2_data_provider prd = {.read_callback = body_read};
    body_left = 3 * 1024 * 1024 + 5; /* over the 1 MiB stream window: needs credit */
    int32_t id = request("POST", "/sink", NULL, 0, &prd);
    run();
    ck_assert_int_eq(hs.body_fin, 1);
    ck_assert_uint_eq(hs.body_bytes, 3 * 1024 * 1024 + 5);
    ck_assert_int_eq(cs(id)->status, 200);
    cs(id)->body[cs(id)->blen] = '\0';
    ck_assert_str_eq(cs(id)->body, "3145733");
    finish_conn();
}
END_TEST

/* Bytes a handler never consumed go back to the connection window when
 * its stream closes, or the connection would starve. */
START_TEST(test_unconsumed_credit_returns)
{
    start_conn("\"h2_initial_window\": 65535, \"h2_conn_window\": 200000", NULL, 0, 1);
    nghttp2_data_provider prd = {.read_callback = body_read};
    for (int i = 0; i < 12; i++) {
        body_left = 60000;
        int32_t id = request("POST", "/sink?consume=0", NULL, 0, &prd);
        run();
        ck_assert_int_eq(cs(id)->status, 200);
    }
    ck_assert_int_eq(hs.body_fin, 12);
    finish_conn();
}
END_TEST

/* A response that ends before the request body: the rest of the body is
 * read and dropped, and the stream closes cleanly without a reset. */
START_TEST(test_early_response)
{
    start_conn(NULL, NULL, 0, 1);
    nghttp2_data_provider prd = {.read_callback = body_read};
    body_left = 200000;
    int32_t id = request("POST", "/info", NULL, 0, &prd);
    run();
    ck_assert_int_eq(cs(id)->status, 200);
    ck_assert_int_eq(cs(id)->reset, 0);
    ck_assert_int_eq(body_left, 0);
    ck_assert_int_eq(hs.close_ok, 1);
    finish_conn();
}
END_TEST

/* A handler answering outside any protocol callback (a timer) is pumped
 * through the conn's flush -> on_writable. */
START_TEST(test_send_from_outside)
{
    start_conn(NULL, NULL, 0, 1);
    int32_t id = request("GET", "/later", NULL, 0, NULL);
    run();
    ck_assert_ptr_nonnull(hs.later);
    ck_assert_int_eq(cs(id)->status, 0);
    ck_assert_int_eq(sl_resp_simple(hs.later, 202, "text/plain", "late", 4), 0);
    ck_assert_int_eq(c->in_flush_list, 1);
    run();
    ck_assert_int_eq(cs(id)->status, 202);
    ck_assert_int_eq(hs.close_ok, 1);
    finish_conn();
}
END_TEST

START_TEST(test_client_reset_and_teardown)
{
    start_conn(NULL, NULL, 0, 1);
    int32_t a = request("GET", "/later", NULL, 0, NULL);
    run();
    nghttp2_submit_rst_stream(client, NGHTTP2_FLAG_NONE, a, NGHTTP2_CANCEL);
    run();
    ck_assert_int_eq(hs.on_close, 1);
    ck_assert_int_eq(hs.close_canceled, 1);
    request("GET", "/later", NULL, 0, NULL);
    request("GET", "/later", NULL, 0, NULL);
    run();
    ck_assert_int_eq(sess()->nstreams, 2);
    /* The conn goes away: each open stream's handler hears it once. */
    sl_h2_proto.on_close(c);
    server_closed = 1;
    ck_assert_int_eq(hs.on_close, 3);
    ck_assert_int_eq(hs.close_canceled, 3);
    finish_conn();
}
END_TEST

START_TEST(test_handler_reset)
{
    start_conn(NULL, NULL, 0, 1);
    int32_t a = request("GET", "/later", NULL, 0, NULL);
    run();
    sl_resp_reset(hs.later, NGHTTP2_INTERNAL_ERROR);
    run();
    ck_assert_int_eq(cs(a)->reset, 1);
    ck_assert_uint_eq(cs(a)->reset_code, NGHTTP2_INTERNAL_ERROR);
    ck_assert_int_eq(hs.close_canceled, 1);
    /* A handler's own reset is not held against the client. */
    ck_assert_uint_eq(sess()->lim.glitches, 0);
    finish_conn();
}
END_TEST

START_TEST(test_connect_and_big_headers)
{
    start_conn("\"h2_header_list_bytes\": 1024", NULL, 0, 1);
    nghttp2_nv cn[] = {NV(":method", "CONNECT"), NV(":authority", "example.test:443")};
    int32_t a = nghttp2_submit_request(client, NULL, cn, 2, NULL, NULL);
    static char big[2000];
    memset(big, 'v', sizeof(big) - 1);
    nghttp2_nv bh[] = {NV("x-big", big)};
    int32_t b = request("GET", "/info", bh, 1, NULL);
    int32_t d = request("GET", "/info", NULL, 0, NULL);
    run();
    ck_assert_int_eq(cs(a)->status, 405);
    ck_assert_int_eq(cs(b)->status, 431);
    ck_assert_int_eq(cs(d)->status, 200);
    finish_conn();
}
END_TEST

START_TEST(test_rapid_reset)
{
    start_conn("\"h2_reset_burst\": 20, \"h2_reset_rate\": 1", NULL, 0, 1);
    for (int i = 0; i < 60 && !server_closed; i++) {
        int32_t id = request("GET", "/later", NULL, 0, NULL);
        run(); /* the HEADERS must leave before the client will send RST */
        nghttp2_submit_rst_stream(client, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        run();
    }
    ck_assert_int_eq(server_closed, 1);
    ck_assert_int_eq(cl.goaway, 1);
    ck_assert_uint_eq(cl.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
    finish_conn();
}
END_TEST

START_TEST(test_ping_flood)
{
    start_conn("\"h2_glitch_limit\": 30", NULL, 0, 1);
    for (int i = 0; i < 100 && !server_closed; i++) {
        nghttp2_submit_ping(client, NGHTTP2_FLAG_NONE, NULL);
        run();
    }
    ck_assert_int_eq(server_closed, 1);
    ck_assert_uint_eq(cl.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
    finish_conn();
}
END_TEST

/* MadeYouReset: the client provokes resets (here a WINDOW_UPDATE that
 * overflows the stream window) instead of sending them. */
START_TEST(test_made_you_reset)
{
    start_conn("\"h2_glitch_limit\": 30", NULL, 0, 1);
    for (int i = 0; i < 100 && !server_closed; i++) {
        int32_t id = request("GET", "/later", NULL, 0, NULL);
        run();
        uint8_t f[13] = {0, 0, 4, NGHTTP2_WINDOW_UPDATE, 0};
        f[5] = (uint8_t)(id >> 24);
        f[6] = (uint8_t)(id >> 16);
        f[7] = (uint8_t)(id >> 8);
        f[8] = (uint8_t)id;
        f[9] = 0x7f, f[10] = 0xff, f[11] = 0xff, f[12] = 0xff;
        server_rv(sl_h2_proto.on_read(c, f, sizeof(f)));
        if (!server_closed)
            take_output();
    }
    ck_assert_int_eq(server_closed, 1);
    ck_assert_uint_eq(cl.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
    finish_conn();
}
END_TEST

START_TEST(test_empty_data_flood)
{
    start_conn("\"h2_glitch_limit\": 30", NULL, 0, 1);
    run(); /* the client preface */
    /* POST /sink on stream 1 without END_STREAM (static-table fields only, so
     * the client's HPACK state is untouched), then empty DATA frames. */
    uint8_t hdr[] = {0,
                     0,
                     12,
                     NGHTTP2_HEADERS,
                     NGHTTP2_FLAG_END_HEADERS,
                     0,
                     0,
                     0,
                     1,
                     0x83,
                     0x86,
                     0x01,
                     0x01,
                     'x',
                     0x04,
                     0x05,
                     '/',
                     's',
                     'i',
                     'n',
                     'k'};
    server_rv(sl_h2_proto.on_read(c, hdr, sizeof(hdr)));
    for (int i = 0; i < 100 && !server_closed; i++) {
        uint8_t f[9] = {0, 0, 0, NGHTTP2_DATA, 0, 0, 0, 0, 1};
        server_rv(sl_h2_proto.on_read(c, f, sizeof(f)));
    }
    ck_assert_int_eq(server_closed, 1);
    ck_assert_uint_eq(cl.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
    finish_conn();
}
END_TEST

/* Over MAX_CONCURRENT_STREAMS (here in the client's first flight, before
 * it has seen our SETTINGS): REFUSED_STREAM for the excess only, and the
 * client is told the configured limit. */
START_TEST(test_refused_streams)
{
    start_conn("\"h2_max_concurrent_streams\": 3", NULL, 0, 1);
    int32_t ids[6];
    for (int i = 0; i < 6; i++)
        ids[i] = request("GET", "/later", NULL, 0, NULL);
    run();
    ck_assert_uint_eq(
        nghttp2_session_get_remote_settings(client, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 3);
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(cs(ids[i])->reset, i >= 3);
        if (i >= 3)
            ck_assert_uint_eq(cs(ids[i])->reset_code, NGHTTP2_REFUSED_STREAM);
    }
    ck_assert_int_eq(sess()->nstreams, 3);
    ck_assert_int_eq(cl.goaway, 0);
    finish_conn();
}
END_TEST

/* RFC 9113 5.1.1: a new stream below one already opened. */
START_TEST(test_decreasing_stream_id)
{
    start_conn(NULL, NULL, 0, 1);
    run();
    /* GET / on stream 5 (static-table fields and a literal :authority,
     * so the client's HPACK state is untouched), then on stream 3. */
    uint8_t g[] = {0,
                   0,
                   6,
                   NGHTTP2_HEADERS,
                   NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM,
                   0,
                   0,
                   0,
                   5,
                   0x82,
                   0x84,
                   0x86,
                   0x01,
                   0x01,
                   'x'};
    server_rv(sl_h2_proto.on_read(c, g, sizeof(g)));
    ck_assert_int_eq(server_closed, 0);
    ck_assert_int_eq(sess()->max_sid, 5);
    g[8] = 3;                /* stream 3 was never opened */
    sl_buf_dispose(&c->out); /* the answer on 5 would confuse the client */
    server_rv(sl_h2_proto.on_read(c, g, sizeof(g)));
    ck_assert_int_eq(server_closed, 1);
    ck_assert_uint_eq(cl.goaway_code, NGHTTP2_PROTOCOL_ERROR);
    finish_conn();
}
END_TEST

/* RFC 9113 5.1: DATA on a stream both sides closed is STREAM_CLOSED,
 * although nghttp2 keeps no closed streams. */
START_TEST(test_data_on_closed_stream)
{
    start_conn(NULL, NULL, 0, 1);
    run();
    int32_t id = request("GET", "/info", NULL, 0, NULL);
    run();
    ck_assert_int_eq(cs(id)->status, 200);
    ck_assert_int_eq(cs(id)->closed, 1);
    uint8_t d[] = {0, 0, 1, NGHTTP2_DATA, 0, 0, 0, 0, (uint8_t)id, 'x'};
    server_rv(sl_h2_proto.on_read(c, d, sizeof(d)));
    ck_assert_int_eq(server_closed, 1);
    run();
    ck_assert_uint_eq(cl.goaway_code, NGHTTP2_STREAM_CLOSED);
    finish_conn();
}
END_TEST

/* A frame header that never completes ends the connection h2_frame_s
 * after its first byte (the HTTP/2 slowloris). */
START_TEST(test_incomplete_frame_timeout)
{
    start_conn(NULL, NULL, 0, 1);
    run();
    uint8_t part[] = {0, 0, 6, NGHTTP2_HEADERS};
    server_rv(sl_h2_proto.on_read(c, part, sizeof(part)));
    ck_assert(sess()->scan.started > 0);
    server_rv(sl_h2_proto.on_timeout(c));
    ck_assert_int_eq(server_closed, 0); /* not due yet */
    sess()->scan.started -= 1000;
    server_rv(sl_h2_proto.on_timeout(c));
    ck_assert_int_eq(server_closed, 1);
    run();
    ck_assert_uint_eq(cl.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
    finish_conn();
}
END_TEST

START_TEST(test_bad_preface)
{
    start_conn(NULL, NULL, 0, 0);
    static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789";
    server_rv(sl_h2_conn_start(c, (const uint8_t *)junk, sizeof(junk) - 1));
    ck_assert_int_eq(server_closed, 1);
    finish_conn();
}
END_TEST

START_TEST(test_idle_and_stream_timeouts)
{
    start_conn(NULL, NULL, 0, 1);
    run();
    ck_assert_int_eq(sess()->idle_armed, 1);
    int32_t id = request("GET", "/later", NULL, 0, NULL);
    run();
    ck_assert_int_eq(sess()->idle_armed, 0);
    /* The stream has been silent for longer than stream_idle_s. */
    sl_h2_stream_t *st = nghttp2_session_get_stream_user_data(sess()->ng, id);
    ck_assert_ptr_nonnull(st);
    st->last_active -= 1000;
    server_rv(sl_h2_proto.on_timeout(c));
    run();
    ck_assert_int_eq(cs(id)->reset, 1);
    ck_assert_uint_eq(cs(id)->reset_code, NGHTTP2_CANCEL);
    ck_assert_int_eq(hs.close_canceled, 1);
    ck_assert_int_eq(sess()->idle_armed, 1);
    /* Fired early (no streams, but not yet idle for h2_idle_s): re-armed. */
    server_rv(sl_h2_proto.on_timeout(c));
    ck_assert_int_eq(server_closed, 0);
    ck_assert_int_eq(sess()->idle_armed, 1);
    /* No streams for h2_idle_s: GOAWAY(NO_ERROR) and close. */
    sess()->idle_since -= 1000;
    server_rv(sl_h2_proto.on_timeout(c));
    ck_assert_int_eq(server_closed, 1);
    ck_assert_int_eq(cl.goaway, 1);
    ck_assert_uint_eq(cl.goaway_code, NGHTTP2_NO_ERROR);
    ck_assert_int_eq(cl.goaway_last, id);
    finish_conn();
}
END_TEST

START_TEST(test_drain)
{
    start_conn(NULL, NULL, 0, 1);
    int32_t id = request("GET", "/later", NULL, 0, NULL);
    run();
    server_rv(sl_h2_proto.on_drain(c));
    run();
    ck_assert_int_eq(cl.ngoaway, 1);
    ck_assert_int_eq(cl.goaway_last, (1u << 31) - 1); /* the shutdown notice */
    ck_assert_int_eq(sess()->drain, 1);
    server_rv(sl_h2_proto.on_timeout(c));
    run();
    ck_assert_int_eq(cl.ngoaway, 2);
    ck_assert_int_eq(cl.goaway_last, id);
    ck_assert_int_eq(server_closed, 0); /* the in-flight stream finishes */
    sl_resp_simple(hs.later, 200, "text/plain", "bye", 3);
    run();
    ck_assert_int_eq(cs(id)->status, 200);
    ck_assert_int_eq(server_closed, 1);
    ck_assert_int_eq(hs.close_ok, 1);
    finish_conn();
}
END_TEST

/* h2c: the HTTP/1.1 request becomes stream 1; the client preface and
 * more requests follow on the same bytes. */
START_TEST(test_upgrade)
{
    start_conn(NULL, NULL, 0, 0);
    uint8_t settings[64];
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
    ssize_t slen = nghttp2_pack_settings_payload(settings, sizeof(settings), iv, 1);
    ck_assert_int_gt(slen, 0);
    ck_assert_int_eq(nghttp2_session_upgrade2(client, settings, (size_t)slen, 0, NULL), 0);
    sl_req_t h1;
    sl_req_init(&h1, SL_PROTO_H1, c);
    h1.method = SL_STR("GET");
    h1.target = SL_STR("/info?up=1");
    h1.authority = SL_STR("example.test");
    sl_headers_add(&h1.pool, &h1.headers, "host", 4, "example.test", 12);
    sl_headers_add(&h1.pool, &h1.headers, "connection", 10, "Upgrade, HTTP2-Settings", 23);
    sl_headers_add(&h1.pool, &h1.headers, "upgrade", 7, "h2c", 3);
    sl_headers_add(&h1.pool, &h1.headers, "user-agent", 10, "t", 1);
    server_rv(sl_h2_conn_upgrade(c, settings, (size_t)slen, &h1, NULL, 0));
    sl_req_dispose(&h1);
    int32_t b = request("GET", "/info", NULL, 0, NULL);
    run();
    ck_assert_int_eq(cs(1)->status, 200);
    cs(1)->body[cs(1)->blen] = '\0';
    ck_assert_str_eq(cs(1)->body, "GET /info q=up=1 a=example.test s=http cl=-1 ck= done=1");
    ck_assert_int_eq(cs(b)->status, 200);
    ck_assert_int_eq(hs.close_ok, 2);
    finish_conn();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("h2_session");
    TCase *tc = sl_test_tcase("session");
    tcase_add_test(tc, test_get);
    tcase_add_test(tc, test_head_and_hints);
    tcase_add_test(tc, test_streaming_trailers);
    tcase_add_test(tc, test_tiny_window);
    tcase_add_test(tc, test_request_body);
    tcase_add_test(tc, test_unconsumed_credit_returns);
    tcase_add_test(tc, test_early_response);
    tcase_add_test(tc, test_send_from_outside);
    tcase_add_test(tc, test_client_reset_and_teardown);
    tcase_add_test(tc, test_handler_reset);
    tcase_add_test(tc, test_connect_and_big_headers);
    tcase_add_test(tc, test_rapid_reset);
    tcase_add_test(tc, test_ping_flood);
    tcase_add_test(tc, test_made_you_reset);
    tcase_add_test(tc, test_empty_data_flood);
    tcase_add_test(tc, test_refused_streams);
    tcase_add_test(tc, test_decreasing_stream_id);
    tcase_add_test(tc, test_bad_preface);
    tcase_add_test(tc, test_data_on_closed_stream);
    tcase_add_test(tc, test_incomplete_frame_timeout);
    tcase_add_test(tc, test_idle_and_stream_timeouts);
    tcase_add_test(tc, test_drain);
    tcase_add_test(tc, test_upgrade);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(suite());
}
