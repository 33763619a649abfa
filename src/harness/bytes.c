/* sluice - SPDX-License-Identifier: MIT
 *
 * bytes/N and stream/N: deterministic bodies from gen.c. bytes sends N
 * bytes with content-length in chunks of C; stream sends N pieces of B
 * bytes, I ms apart, with no length (chunked on HTTP/1.1). Both bodies
 * are the same byte stream for a seed, so stream/N?size=B equals
 * bytes/(N*B). Pacing and flow control are the pump's.
 */
#include "harness_int.h"

#define DEFAULT_CHUNK 16384
#define DEFAULT_PIECE 64

static size_t fill_gen(sl_harness_pump_t *p, uint8_t *buf, size_t cap, int *last)
{
    uint64_t left = p->total - p->offset;
    size_t n = left < cap ? (size_t)left : cap;
    sl_harness_gen_fill(p->seed, p->offset, buf, n);
    p->offset += n;
    *last = p->offset == p->total;
    return n;
}

static int get_seed(sl_harness_ctx_t *cx, uint64_t *seed)
{
    int rv = sl_query_find_u64(&cx->q, "seed", 0, 0, UINT64_MAX, seed);
    if (rv != 0)
        sl_harness_bad_param(cx->req, "seed", rv, 0, UINT64_MAX);
    return rv;
}

static void start_octets(sl_harness_ctx_t *cx, int64_t length, uint64_t seed, uint64_t total,
                         size_t cap, double interval_s)
{
    sl_req_t *req = cx->req;
    req->res.status = 200;
    req->res.content_length = length;
    sl_resp_header_add(req, "content-type", "application/octet-stream");
    sl_harness_pump_t *p = sl_harness_pump_new(req, cap, fill_gen);
    p->seed = seed;
    p->total = total;
    p->interval_s = interval_s;
    sl_harness_pump_start(p);
}

/* N from the path, seed, and the piece size under chunk_name (default
 * def): 0, or SL_EINVAL after a 400. */
static int octets_params(sl_harness_ctx_t *cx, const char *chunk_name, uint64_t def, uint64_t *n,
                         uint64_t *seed, uint64_t *chunk)
{
    const sl_harness_opts_t *o = cx->opts;
    uint64_t max_chunk = (uint64_t)o->max_chunk_bytes;
    int rv = sl_str_parse_u64(cx->arg, 0, (uint64_t)o->max_bytes, n);
    if (rv != 0) {
        sl_harness_bad_param(cx->req, "N", rv, 0, (uint64_t)o->max_bytes);
        return SL_EINVAL;
    }
    if (get_seed(cx, seed) != 0)
        return SL_EINVAL;
    rv = sl_query_find_u64(&cx->q, chunk_name, SL_MIN(def, max_chunk), 1, max_chunk, chunk);
    if (rv != 0) {
        sl_harness_bad_param(cx->req, chunk_name, rv, 1, max_chunk);
        return SL_EINVAL;
    }
    return 0;
}

void sl_harness_bytes(sl_harness_ctx_t *cx)
{
    uint64_t n, seed, chunk;
    if (octets_params(cx, "chunk", DEFAULT_CHUNK, &n, &seed, &chunk) != 0)
        return;
    /* The buffer never needs to be larger than the body. */
    size_t cap = (size_t)SL_MAX(SL_MIN(chunk, n), 1);
    start_octets(cx, (int64_t)n, seed, n, cap, 0);
}

void sl_harness_stream(sl_harness_ctx_t *cx)
{
    const sl_harness_opts_t *o = cx->opts;
    uint64_t n, size, seed, interval;
    uint64_t max_chunk = (uint64_t)o->max_chunk_bytes;
    int rv = sl_str_parse_u64(cx->arg, 0, (uint64_t)o->max_chunks, &n);
    if (rv != 0) {
        sl_harness_bad_param(cx->req, "N", rv, 0, (uint64_t)o->max_chunks);
        return;
    }
    rv = sl_query_find_u64(&cx->q, "size", SL_MIN(DEFAULT_PIECE, max_chunk), 1, max_chunk, &size);
    if (rv != 0) {
        sl_harness_bad_param(cx->req, "size", rv, 1, max_chunk);
        return;
    }
    rv = sl_query_find_u64(&cx->q, "interval_ms", 0, 0, (uint64_t)o->max_interval_ms, &interval);
    if (rv != 0) {
        sl_harness_bad_param(cx->req, "interval_ms", rv, 0, (uint64_t)o->max_interval_ms);
        return;
    }
    if (get_seed(cx, &seed) != 0)
        return;
    /* n and size are bounded far below 2^32 each, so the product fits. */
    if (n * size > (uint64_t)o->max_bytes) {
        sl_harness_bad_request(cx->req,
                               sl_pool_printf(&cx->req->pool, "N*size: more than max_bytes (%lld)",
                                              (long long)o->max_bytes));
        return;
    }
    start_octets(cx, -1, seed, n * size, (size_t)size, (double)interval / 1000.0);
}

/* httpbin's stream-bytes/N?seed=&chunk_size=: N bytes of the seed's
 * stream, no length (chunked on HTTP/1.1), in pieces of chunk_size. */
void sl_harness_hb_stream_bytes(sl_harness_ctx_t *cx)
{
    uint64_t n, seed, chunk;
    if (octets_params(cx, "chunk_size", 10240, &n, &seed, &chunk) == 0)
        start_octets(cx, -1, seed, n, (size_t)SL_MAX(SL_MIN(chunk, n), 1), 0);
}
