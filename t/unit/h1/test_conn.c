/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for the HTTP/1.1 server connection (src/h1/conn.c, respond.c,
 * body.c, upgrade.c) without sockets: the test writes request bytes into
 * sl_h1_proto.on_read, drains the conn's output queue into a string and
 * plays the worker (flush list -> on_writable, the timer -> on_timeout).
 * Test handlers behind the real router cover the response head and
 * framing, pipelining, HEAD, streaming with on_proceed and trailers,
 * request bodies and credit, 100-continue, resets, the protocol's own
 * error answers, the timers, drain and HTTP/1.0.
 */
#include "h1/server_int.h"
#include "../fake_conn.h"
#include "../helpers.h"

/* ---- the fake conn ---- */

static sl_fake_conn_t fc;
static sl_conn_t *c;
static int closed; /* the protocol returned SL_ECLOSED */
static char out[262144];
static size_t out_len;

/* ---- test handlers ---- */

static struct {
    int on_close, close_ok, close_canceled;
    size_t body_bytes;
    int body_fin;
    sl_req_t *held; /* /sink?consume=0: the request whose body is held */
} hs;

static void count_close(sl_req_t *req, int e)
{
    SL_UNUSED(req);
    hs.on_close++;
    hs.close_ok += e == 0;
    hs.close_canceled += e == SL_ECANCELED;
}

static const sl_handler_cbs_t close_cbs = {.on_close = count_close};

static void h_hello(sl_req_t *req)
{
    req->cbs = &close_cbs;
    sl_resp_header_add(req, "X-Case", "yes");
    sl_resp_header_add(req, "transfer-encoding", "gzip"); /* framing is h1's: dropped */
    sl_resp_simple(req, 200, "text/plain", "hello", 5);
}

/* /stream: three 4-byte pieces, one per on_proceed, then a trailer. */
static void stream_next(sl_req_t *req)
{
    int *left = req->hdata;
    --*left;
    sl_resp_send(req, "abcd", 4, *left == 0);
}

static const sl_handler_cbs_t stream_cbs = {.on_proceed = stream_next, .on_close = count_close};

static void h_stream(sl_req_t *req)
{
    int *left = sl_pool_alloc(&req->pool, sizeof(*left));
    *left = 3;
    req->hdata = left;
    req->cbs = &stream_cbs;
    sl_resp_trailer_add(req, "x-done", "yes");
    sl_resp_send(req, NULL, 0, 0);
}

/* /sink: counts the body, answers at its end; ?consume=0 holds credit. */
static void sink_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    SL_UNUSED(data);
    hs.body_bytes += len;
    if (len && !sl_str_eq(req->query, "consume=0"))
        sl_req_consume(req, len);
    if (fin) {
        hs.body_fin++;
        char *b = sl_pool_printf(&req->pool, "%zu", hs.body_bytes);
        sl_resp_simple(req, 200, "text/plain", b, strlen(b));
    }
}

static const sl_handler_cbs_t sink_cbs = {.on_body = sink_body, .on_close = count_close};

static void h_sink(sl_req_t *req)
{
    req->cbs = &sink_cbs;
    hs.held = req;
}

static void h_reset(sl_req_t *req)
{
    req->cbs = &close_cbs;
    sl_resp_send(req, "partial", 7, 0);
    sl_resp_reset(req, SL_RESET_INTERNAL_ERROR);
}

/* /wait: no answer until the test gives one (timers, drain). */
static void h_wait(sl_req_t *req)
{
    req->cbs = &close_cbs;
    hs.held = req;
}

static void h_dispatch(sl_req_t *req)
{
    sl_str_t p = req->path;
    if (sl_str_eq(p, "/stream"))
        h_stream(req);
    else if (sl_str_eq(p, "/sink"))
        h_sink(req);
    else if (sl_str_eq(p, "/reset"))
        h_reset(req);
    else if (sl_str_eq(p, "/wait"))
        h_wait(req);
    else
        h_hello(req);
}

static const sl_handler_def_t t_handler = {.name = "t_h1", .on_req = h_dispatch};

/* ---- driving ---- */

static void take_output(void)
{
    const uint8_t *p;
    size_t n;
    while (sl_buf_peek(&c->out, &p, &n) == 0) {
        ck_assert_uint_lt(out_len + n, sizeof(out));
        memcpy(out + out_len, p, n);
        out_len += n;
        out[out_len] = '\0';
        sl_buf_skip(&c->out, n);
    }
}

static void server_rv(int rv)
{
    if (rv == SL_ECLOSED && !closed) {
        closed = 1;
        take_output(); /* what lingers out before the close */
        sl_h1_proto.on_close(c);
        c->proto_closed = 1;
    }
}

/* What the worker does once per loop iteration, until nothing moves. */
static void run(void)
{
    for (int round = 0; round < 1000 && !closed; round++) {
        int moved = !sl_buf_is_empty(&c->out);
        take_output();
        if (sl_fake_conn_flush_due(&fc)) {
            moved = 1;
            server_rv(sl_h1_proto.on_writable(c));
        }
        if (!moved)
            return;
    }
}

static void feed(const char *bytes)
{
    ck_assert(!closed);
    server_rv(sl_h1_proto.on_read(c, (const uint8_t *)bytes, strlen(bytes)));
    run();
}

static h1_conn_t *hc(void)
{
    return c->pdata;
}

static void start_conn(const char *limits_json)
{
    memset(&hs, 0, sizeof(hs));
    closed = 0;
    out_len = 0;
    out[0] = '\0';
    sl_log_set_level("error"); /* the INFO lines these tests provoke are expected */
    c = sl_fake_conn_open(&fc, &t_handler, limits_json);
    server_rv(sl_h1_conn_start(c, NULL, 0));
}

static void finish_conn(void)
{
    if (!closed)
        sl_h1_proto.on_close(c);
    sl_fake_conn_close(&fc);
}

/* The status line, a header ("name: value") and the body of response i
 * (0-based) in out. */
static const char *response(int i)
{
    const char *p = out;
    for (int k = 0; k < i && p; k++)
        p = strstr(p + 1, "HTTP/1.1 ");
    ck_assert_ptr_nonnull(p);
    return p;
}

static int has_line(const char *resp, const char *line)
{
    const char *end = strstr(resp, "\r\n\r\n");
    char want[256];
    snprintf(want, sizeof(want), "\r\n%s\r\n", line);
    const char *f = strstr(resp, want);
    return f && end && f < end + 2;
}

/* ---- tests ---- */

START_TEST(test_get_head_and_framing)
{
    start_conn(NULL);
    feed("GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
    const char *r = response(0);
    ck_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    ck_assert(has_line(r, "X-Case: yes"));
    ck_assert(has_line(r, "content-length: 5"));
    ck_assert(has_line(r, "server: sluice"));
    ck_assert(!strstr(r, "gzip"));
    ck_assert(!strstr(r, "connection:"));
    ck_assert_ptr_nonnull(strstr(r, "\r\n\r\nhello"));
    ck_assert_int_eq(hc()->state, H1_IDLE);
    ck_assert_int_eq(hs.close_ok, 1);
    finish_conn();
}
END_TEST

START_TEST(test_pipelining_in_order)
{
    start_conn(NULL);
    /* Three requests in one read: answered in order; HEAD has no body. */
    feed("GET /stream HTTP/1.1\r\nHost: a\r\n\r\n"
         "HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n"
         "GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    const char *r0 = response(0), *r1 = response(1), *r2 = response(2);
    ck_assert(has_line(r0, "transfer-encoding: chunked"));
    ck_assert_ptr_nonnull(strstr(r0, "\r\n\r\n4\r\nabcd\r\n4\r\nabcd\r\n4\r\nabcd\r\n0\r\n"
                                     "x-done: yes\r\n\r\nHTTP/1.1 200"));
    ck_assert(has_line(r1, "content-length: 5"));
    ck_assert(strncmp(strstr(r1, "\r\n\r\n") + 4, "HTTP/1.1 200", 12) == 0);
    ck_assert(has_line(r2, "connection: close"));
    ck_assert_str_eq(strstr(r2, "\r\n\r\n") + 4, "hello");
    ck_assert_int_eq(closed, 1);
    ck_assert_int_eq(hs.close_ok, 3);
    finish_conn();
}
END_TEST

START_TEST(test_body_credit)
{
    static char req[8192];
    start_conn("\"body_window_bytes\": 1024");
    int n = snprintf(req, sizeof(req),
                     "POST /sink?consume=0 HTTP/1.1\r\nHost: a\r\n"
                     "Content-Length: 4096\r\n\r\n");
    memset(req + n, 'x', 4096);
    req[n + 4096] = '\0';
    feed(req);
    /* The handler holds 1024 unconsumed bytes: the rest waits, reads stop. */
    ck_assert_uint_eq(hs.body_bytes, 1024);
    ck_assert(c->read_paused);
    ck_assert_int_eq(hc()->paused_body, 1);
    ck_assert_uint_eq(out_len, 0);
    /* Credit back: the held bytes arrive from on_writable, not inside consume. */
    for (int i = 0; i < 3; i++) {
        sl_req_consume(hs.held, 1024);
        ck_assert_uint_eq(hs.body_bytes, 1024 * (size_t)(i + 1));
        run();
        ck_assert_uint_eq(hs.body_bytes, 1024 * (size_t)(i + 2));
    }
    ck_assert_int_eq(hs.body_fin, 1);
    ck_assert_str_eq(strstr(out, "\r\n\r\n") + 4, "4096");
    ck_assert(!c->read_paused);
    finish_conn();
}
END_TEST

START_TEST(test_chunked_body_and_continue)
{
    start_conn(NULL);
    feed("POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
         "Expect: 100-continue\r\n\r\n");
    ck_assert_str_eq(out, "HTTP/1.1 100 Continue\r\n\r\n");
    feed("3\r\nabc\r\n");
    feed("2;x=y\r\nde\r\n0\r\nx-t: 1\r\n\r\n");
    ck_assert_int_eq(hs.body_fin, 1);
    ck_assert_str_eq(strstr(response(1), "\r\n\r\n") + 4, "5");
    ck_assert_int_eq(hc()->state, H1_IDLE);
    finish_conn();
}
END_TEST

START_TEST(test_protocol_errors)
{
    static const struct {
        const char *in;
        const char *status;
        const char *limits;
    } v[] = {
        {"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ", NULL}, /* no Host */
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         "HTTP/1.1 400 ", NULL},
        {"POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 2048\r\n\r\n", "HTTP/1.1 413 ",
         "\"max_body_bytes\": 1024"},
        {"POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
         "HTTP/1.1 400 ", NULL},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", "HTTP/1.1 400 ", NULL},
        {"GET / HTTP/2.1\r\nHost: a\r\n\r\n", "HTTP/1.1 505 ", NULL},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(v); i++) {
        start_conn(v[i].limits);
        feed(v[i].in);
        ck_assert_msg(strncmp(out, v[i].status, strlen(v[i].status)) == 0, "%zu: %s", i, out);
        ck_assert(has_line(out, "connection: close"));
        ck_assert_msg(closed, "%zu: still open", i);
        finish_conn();
    }
}
END_TEST

START_TEST(test_handler_reset)
{
    start_conn(NULL);
    feed("GET /reset HTTP/1.1\r\nHost: a\r\n\r\n");
    /* Carried out once the handler has returned (never inside its reset
     * call): the connection closes and the chunked body never gets its
     * last chunk, so the client sees an aborted response. */
    ck_assert_int_eq(closed, 1);
    ck_assert_int_eq(hs.close_canceled, 1);
    ck_assert_ptr_nonnull(strstr(out, "7\r\npartial\r\n"));
    ck_assert_ptr_null(strstr(out, "0\r\n\r\n"));
    finish_conn();
    /* A reset from outside any h1 call (a handler's timer) waits for the
     * conn's timer, so on_close never runs inside sl_resp_reset. */
    start_conn(NULL);
    feed("GET /wait HTTP/1.1\r\nHost: a\r\n\r\n");
    sl_resp_reset(hs.held, SL_RESET_CANCEL);
    ck_assert_int_eq(hc()->reset_pending, 1);
    ck_assert_int_eq(hs.on_close, 0);
    server_rv(sl_h1_proto.on_timeout(c));
    ck_assert_int_eq(closed, 1);
    ck_assert_int_eq(hs.close_canceled, 1);
    ck_assert_uint_eq(out_len, 0);
    finish_conn();
}
END_TEST

START_TEST(test_timers)
{
    /* A head that never completes: 408 from the header timer. */
    start_conn(NULL);
    feed("GET / HTTP/1.1\r\nHo");
    ck_assert_int_eq(hc()->state, H1_HEAD);
    server_rv(sl_h1_proto.on_timeout(c));
    ck_assert(strncmp(out, "HTTP/1.1 408 ", 13) == 0);
    ck_assert_int_eq(closed, 1);
    finish_conn();
    /* Keep-alive idle: closed without a word. */
    start_conn(NULL);
    feed("GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
    size_t n = out_len;
    ck_assert_int_eq(hc()->state, H1_IDLE);
    server_rv(sl_h1_proto.on_timeout(c));
    ck_assert_int_eq(closed, 1);
    ck_assert_uint_eq(out_len, n);
    finish_conn();
    /* A body that stops arriving: 408, the handler sees the cancel. */
    start_conn(NULL);
    feed("POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    server_rv(sl_h1_proto.on_timeout(c));
    ck_assert(strncmp(out, "HTTP/1.1 408 ", 13) == 0);
    ck_assert_int_eq(hs.close_canceled, 1);
    finish_conn();
}
END_TEST

START_TEST(test_drain_and_http10)
{
    /* Draining while busy: the response carries connection: close. */
    start_conn(NULL);
    feed("GET /wait HTTP/1.1\r\nHost: a\r\n\r\n");
    server_rv(sl_h1_proto.on_drain(c));
    ck_assert(!closed);
    sl_resp_simple(hs.held, 200, "text/plain", "ok", 2);
    run();
    ck_assert(has_line(out, "connection: close"));
    ck_assert_int_eq(closed, 1);
    finish_conn();
    /* HTTP/1.0 without a length: close-delimited, no chunks. */
    start_conn(NULL);
    feed("GET /stream HTTP/1.0\r\n\r\n");
    ck_assert(strncmp(out, "HTTP/1.1 200 ", 13) == 0);
    ck_assert(has_line(out, "connection: close"));
    ck_assert_str_eq(strstr(out, "\r\n\r\n") + 4, "abcdabcdabcd");
    ck_assert_int_eq(closed, 1);
    finish_conn();
}
END_TEST

START_TEST(test_client_gone_mid_exchange)
{
    start_conn(NULL);
    feed("GET /wait HTTP/1.1\r\nHost: a\r\n\r\n");
    server_rv(sl_h1_proto.on_eof(c));
    /* Half-close after a complete request: the answer may still go out. */
    ck_assert(!closed);
    sl_h1_proto.on_close(c);
    closed = 1;
    ck_assert_int_eq(hs.close_canceled, 1);
    finish_conn();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("h1_conn");
    TCase *tc = sl_test_tcase("conn");
    tcase_add_test(tc, test_get_head_and_framing);
    tcase_add_test(tc, test_pipelining_in_order);
    tcase_add_test(tc, test_body_credit);
    tcase_add_test(tc, test_chunked_body_and_continue);
    tcase_add_test(tc, test_protocol_errors);
    tcase_add_test(tc, test_handler_reset);
    tcase_add_test(tc, test_timers);
    tcase_add_test(tc, test_drain_and_http10);
    tcase_add_test(tc, test_client_gone_mid_exchange);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(suite());
}
