/* sluice - SPDX-License-Identifier: MIT
 *
 * Error lines to stderr, formatted only when the level is on; JSON access
 * lines to stdout through a per-worker buffer that the worker flushes once
 * per loop iteration (sl_log_access_flush), so a busy worker issues one
 * write(2) per iteration instead of one per request.
 */
#include "log.h"
#include "conn.h"
#include "config.h"
#include "req.h"
#include "worker.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define ACCESS_BUF_MAX 65536

sl_log_level_t sl_log_min_level = SL_LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void sl_log_set_level(const char *name)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(level_names); i++)
        if (name && strcmp(name, level_names[i]) == 0)
            sl_log_min_level = (sl_log_level_t)i;
}

static void format_time(char *buf, size_t len)
{
    uint64_t ms = sl_wall_ms();
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03uZ", (unsigned)(ms % 1000));
}

void sl_log_write(sl_log_level_t lvl, const sl_conn_t *c, int32_t stream_id, const char *fmt, ...)
{
    char line[1024], ts[40];
    int n;
    sl_worker_t *w = sl_worker_current();
    format_time(ts, sizeof(ts));
    n = snprintf(line, sizeof(line), "%s %s", ts, level_names[lvl]);
    if (w)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " w%d", w->id);
    if (c)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " c%llu %s", (unsigned long long)c->id,
                      c->peer);
    if (stream_id >= 0)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " s%d", (int)stream_id);
    if ((size_t)n < sizeof(line) - 2) {
        line[n++] = ':';
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        n = m < 0 ? n : SL_MIN(n + m, (int)sizeof(line) - 2);
    }
    line[n++] = '\n';
    /* One write per line so concurrent workers do not interleave. */
    ssize_t wr = write(2, line, (size_t)n);
    (void)wr;
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

static void access_flush(sl_worker_t *w)
{
    size_t off = 0;
    while (off < w->access_len) {
        ssize_t n = write(1, w->access_buf + off, w->access_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* stdout gone: drop rather than block the worker */
        off += (size_t)n;
    }
    w->access_len = 0;
}

void sl_log_access_flush(sl_worker_t *w)
{
    if (w && w->access_len)
        access_flush(w);
}

void sl_log_access(const sl_req_t *req)
{
    sl_worker_t *w = sl_worker_current();
    const sl_config_t *cfg = req->conn ? sl_conn_config(req->conn) : NULL;
    if (!w || (cfg && !cfg->access_log))
        return;
    if (!w->access_buf) {
        w->access_cap = ACCESS_BUF_MAX;
        w->access_buf = sl_malloc(w->access_cap);
    }
    if (w->access_cap - w->access_len < 3072)
        access_flush(w);
    char *p = w->access_buf + w->access_len;
    size_t cap = w->access_cap - w->access_len, o = 0;
    char ts[40];
    format_time(ts, sizeof(ts));
    double dur_ms = (double)(sl_now_ns() - req->start_ns) / 1e6;
    o += (size_t)snprintf(p + o, cap - o,
                          "{\"time\":\"%s\",\"worker\":%d,\"conn\":%llu,\"protocol\":\"%s\","
                          "\"stream\":%d,\"method\":\"",
                          ts, w->id, req->conn ? (unsigned long long)req->conn->id : 0ULL,
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
    w->access_len += SL_MIN(o, cap);
}
