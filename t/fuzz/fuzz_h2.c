/* sluice - SPDX-License-Identifier: MIT
 *
 * libFuzzer entry for the HTTP/2 server protocol (src/h2/): a whole
 * server session behind a socket-free conn, fed the input as client bytes
 * (after the connection preface, which is prepended), with small handlers
 * that answer at once, stream with on_proceed and trailers, and read
 * bodies with or without giving credit back. The first input byte picks
 * the read size and whether to drain or fire the timer midway. Output is
 * discarded; the checks are ASan/UBSan's and the h2 asserts. Build with
 * clang only, with every src/ file but main.c, e.g.
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc t/fuzz/fuzz_h2.c \
 *     $(find src -name '*.c' ! -name main.c) \
 *     -lnghttp2 -lssl -lcrypto -ljansson -lev -lz -lpthread -lm -o fuzz_h2
 */
#include "h2/h2_int.h"
#include "config.h"
#include "router.h"
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sl_config_t *cfg;
static sl_conn_table_t tab;
static sl_buf_pool_t pool;

static const char config_json[] =
    "{\"listen\": [{\"addr\": \"127.0.0.1:0\"}], \"access_log\": false,"
    " \"limits\": {\"h2_max_concurrent_streams\": 8, \"h2_initial_window\": 65535,"
    "  \"h2_conn_window\": 131072, \"h2_header_list_bytes\": 4096, \"h2_glitch_limit\": 50,"
    "  \"h2_reset_burst\": 20, \"h2_reset_rate\": 5, \"conn_out_bytes\": 16384},"
    " \"routes\": [{\"path\": \"/\", \"handler\": \"fuzz_h2\"}]}";

/* ---- handlers ---- */

typedef struct fstate {
    int left;
    uint8_t buf[20000];
} fstate_t;

static void stream_next(sl_req_t *req)
{
    fstate_t *f = req->hdata;
    int last = --f->left <= 0;
    sl_resp_send(req, f->buf, sizeof(f->buf), last);
}

static void body_in(sl_req_t *req, const uint8_t *d, size_t len, int fin)
{
    (void)d;
    if (req->query.n == 0)
        sl_req_consume(req, len); /* "?x" keeps the credit */
    if (fin)
        sl_resp_simple(req, 200, "text/plain", "done", 4);
}

static const sl_handler_cbs_t stream_cbs = {.on_proceed = stream_next};
static const sl_handler_cbs_t body_cbs = {.on_body = body_in};

static void on_req(sl_req_t *req)
{
    if (sl_str_eq(req->path, "/s")) {
        fstate_t *f = sl_pool_alloc(&req->pool, sizeof(*f));
        memset(f->buf, 's', sizeof(f->buf));
        f->left = 5;
        req->hdata = f;
        req->cbs = &stream_cbs;
        sl_resp_trailer_add(req, "x-t", "1");
        sl_resp_send(req, NULL, 0, 0);
    } else if (sl_str_eq(req->path, "/b")) {
        req->cbs = &body_cbs;
        if (req->body_done)
            sl_resp_simple(req, 204, NULL, NULL, 0);
    } else if (sl_str_eq(req->path, "/r")) {
        sl_resp_reset(req, NGHTTP2_INTERNAL_ERROR);
    } else {
        sl_resp_header_add(req, "x-path", "yes");
        sl_resp_simple(req, 200, "text/plain", "hello", 5);
    }
}

static const sl_handler_def_t def = {.name = "fuzz_h2", .on_req = on_req};

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
}

static void setup(void)
{
    char err[256];
    sl_log_set_level("error");
    sl_router_register(&def);
    sl_router_init();
    cfg = sl_config_load_string(config_json, "fuzz.json", err, sizeof(err));
    if (!cfg)
        abort();
    tab.loop = ev_loop_new(EVFLAG_AUTO);
    tab.cfg = cfg;
    tab.bufpool = &pool;
    sl_buf_pool_init(&pool, 8);
}

/* ---- one connection per input ---- */

static int feed(sl_conn_t *c, int (*fn)(sl_conn_t *), const uint8_t *p, size_t n)
{
    int rv = fn ? fn(c) : sl_h2_proto.on_read(c, p, n);
    /* What the worker does: write out (here: drop), then on_writable. */
    for (int i = 0; i < 8 && rv == 0; i++) {
        sl_buf_skip(&c->out, sl_buf_len(&c->out));
        if (!c->in_flush_list)
            break;
        c->in_flush_list = 0;
        tab.flushing = NULL;
        rv = sl_h2_proto.on_writable(c);
    }
    return rv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char magic[] = NGHTTP2_CLIENT_MAGIC;
    if (!cfg)
        setup();
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    size_t step = (size_t)(mode & 0x3f) * 16 + 1;
    data++, size--;

    sl_conn_t *c = sl_calloc(1, sizeof(*c));
    c->table = &tab;
    c->cfg = cfg;
    c->fd = -1;
    snprintf(c->tag.peer, sizeof(c->tag.peer), "fuzz");
    sl_buf_init(&c->out, &pool, cfg->limits.conn_out_bytes / SL_BUF_CHUNK_SIZE + 2);
    ev_init(&c->timer, on_timer);

    int rv = sl_h2_conn_start(c, (const uint8_t *)magic, sizeof(magic) - 1);
    for (size_t off = 0; rv == 0 && off < size; off += step) {
        size_t n = SL_MIN(step, size - off);
        rv = feed(c, NULL, data + off, n);
        if (rv == 0 && (mode & 0x40) && off == 0)
            rv = feed(c, sl_h2_proto.on_drain, NULL, 0);
        if (rv == 0 && (mode & 0x80) && off + n >= size / 2 && off < size / 2)
            rv = feed(c, sl_h2_proto.on_timeout, NULL, 0);
    }
    sl_h2_proto.on_close(c);
    ev_timer_stop(tab.loop, &c->timer);
    sl_buf_dispose(&c->out);
    sl_free(c);
    return 0;
}
