/* sluice - SPDX-License-Identifier: MIT
 *
 * JSON access lines gathered per worker and written once per loop
 * iteration (access.h). A line is at most 3 KiB (escaped fields are cut),
 * the buffer 64 KiB: a full buffer is written out before the next line.
 */
#include "access.h"
#include "conn.h"
#include "config.h"
#include "log.h"
#include "req.h"
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#define ACCESS_BUF_MAX 65536
#define ACCESS_LINE_MAX 3072

static __thread sl_access_log_t *current;

void sl_access_init(sl_access_log_t *al, int worker_id)
{
    memset(al, 0, sizeof(*al));
    al->worker_id = worker_id;
}

void sl_access_bind(sl_access_log_t *al)
{
    current = al;
}

/* Append s as a JSON string body (without quotes), escaping what must be. */
static size_t json_escape(char *dst, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 6 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            /* Peer bytes are logged as \u00XX so every line stays valid JSON. */
            memcpy(dst + o, "\\u00", 4);
            dst[o + 4] = hex[ch >> 4];
            dst[o + 5] = hex[ch & 15];
            o += 6;
        } else {
            dst[o++] = (char)ch;
        }
    }
    return o;
}

void sl_access_flush(sl_access_log_t *al)
{
    size_t off = 0;
    while (off < al->len) {
        ssize_t n = write(1, al->buf + off, al->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* stdout gone: drop rather than block the worker */
        off += (size_t)n;
    }
    al->len = 0;
}

void sl_access_dispose(sl_access_log_t *al)
{
    sl_access_flush(al);
    sl_free(al->buf);
    al->buf = NULL;
    al->cap = 0;
}

void sl_access_log(const sl_req_t *req)
{
    sl_access_log_t *al = current;
    const sl_config_t *cfg = req->conn ? sl_conn_config(req->conn) : NULL;
    if (!al || (cfg && !cfg->access_log))
        return;
    if (!al->buf) {
        al->cap = ACCESS_BUF_MAX;
        al->buf = sl_malloc(al->cap);
    }
    if (al->cap - al->len < ACCESS_LINE_MAX)
        sl_access_flush(al);
    char *p = al->buf + al->len;
    size_t cap = al->cap - al->len, o = 0;
    char ts[40];
    sl_log_format_time(ts, sizeof(ts));
    double dur_ms = (double)(sl_now_ns() - req->start_ns) / 1e6;
    o += (size_t)snprintf(p + o, cap - o,
                          "{\"time\":\"%s\",\"worker\":%d,\"conn\":%llu,\"protocol\":\"%s\","
                          "\"stream\":%d,\"method\":\"",
                          ts, al->worker_id,
                          req->conn ? (unsigned long long)req->conn->tag.id : 0ULL,
                          req->proto == SL_PROTO_H2 ? "HTTP/2"
                          : req->version_minor == 0 ? "HTTP/1.0"
                                                    : "HTTP/1.1",
                          (int)req->stream_id);
    o += json_escape(p + o, SL_MIN(cap - o, 64), req->method.p, req->method.n);
    o += (size_t)snprintf(p + o, cap - o, "\",\"path\":\"");
    o += json_escape(p + o, SL_MIN(cap - o, 2048), req->target.p, req->target.n);
    o += (size_t)snprintf(p + o, cap - o,
                          "\",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,"
                          "\"duration_ms\":%.3f,\"peer\":\"%s\"",
                          req->res.status, (unsigned long long)req->bytes_in,
                          (unsigned long long)req->bytes_out, dur_ms, req->peer ? req->peer : "");
    if (req->tls.version)
        o += (size_t)snprintf(p + o, cap - o, ",\"tls\":\"%s\",\"alpn\":\"%s\"", req->tls.version,
                              req->tls.alpn ? req->tls.alpn : "");
    if (req->tls.client_subject) {
        /* Cut at 256 bytes: the line stays inside the 3 KiB reserve. */
        o += (size_t)snprintf(p + o, cap - o, ",\"client_cert\":\"");
        o += json_escape(p + o, SL_MIN(cap - o, 256), req->tls.client_subject,
                         strlen(req->tls.client_subject));
        o += (size_t)snprintf(p + o, cap - o, "\"");
    }
    o += (size_t)snprintf(p + o, cap - o, "}\n");
    al->len += SL_MIN(o, cap);
}
