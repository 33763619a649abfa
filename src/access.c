/* sluice - SPDX-License-Identifier: MIT
 *
 * JSON access lines gathered per worker and written once per loop
 * iteration (access.h). The 64 KiB buffer is written out before a line
 * that does not fit; a line longer than the whole buffer (a long URI, a
 * long certificate subject) is written on its own, never cut.
 *
 * The destination is one descriptor number for the life of the process:
 * stdout, or the file opened at start. Reopening (SIGUSR1, logrotate)
 * opens the file again and dup2()s it onto that number, which is atomic,
 * so a worker never writes to a closed or reused descriptor.
 */
#include "access.h"
#include "conn.h"
#include "config.h"
#include "log.h"
#include "req.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#define ACCESS_BUF_MAX 65536
#define LINE_FIXED 640 /* every part of a line but the escaped fields */

static __thread sl_access_log_t *current;
static int access_fd = 1;

static int open_log(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        snprintf(err, errlen, "access_log %s: %s", path, strerror(errno));
    return fd;
}

int sl_access_open(const char *path, char *err, size_t errlen)
{
    if (!path)
        return 0;
    int fd = open_log(path, err, errlen);
    if (fd < 0)
        return SL_ERROR;
    access_fd = fd;
    return 0;
}

int sl_access_reopen(const char *path, char *err, size_t errlen)
{
    if (!path || access_fd == 1)
        return 0;
    int fd = open_log(path, err, errlen);
    if (fd < 0)
        return SL_ERROR;
    int rv = dup3(fd, access_fd, O_CLOEXEC);
    if (rv < 0)
        snprintf(err, errlen, "access_log %s: %s", path, strerror(errno));
    close(fd);
    return rv < 0 ? SL_ERROR : 0;
}

void sl_access_init(sl_access_log_t *al, int worker_id)
{
    memset(al, 0, sizeof(*al));
    al->worker_id = worker_id;
}

void sl_access_bind(sl_access_log_t *al)
{
    current = al;
}

/* Append s as a JSON string body (without quotes), escaping what must be;
 * dst has room for 6 bytes per input byte. */
static size_t json_escape(char *dst, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
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

static void write_all(const char *p, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(access_fd, p + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* log gone or full: drop rather than block the worker */
        off += (size_t)n;
    }
}

void sl_access_flush(sl_access_log_t *al)
{
    write_all(al->buf, al->len);
    al->len = 0;
}

void sl_access_dispose(sl_access_log_t *al)
{
    sl_access_flush(al);
    sl_free(al->buf);
    al->buf = NULL;
    al->cap = 0;
}

/* ,"name":"value" when the value is known. */
static size_t opt_field(char *p, const char *name, sl_str_t v)
{
    if (!v.n)
        return 0;
    size_t o = (size_t)sprintf(p, ",\"%s\":\"", name);
    o += json_escape(p + o, v.p, v.n);
    p[o++] = '"';
    return o;
}

static size_t format_line(char *p, const sl_req_t *req, int worker_id, uint64_t ns)
{
    char ts[40];
    size_t o = 0;
    sl_log_format_time(ts, sizeof(ts));
    double dur_ms = (double)ns / 1e6;
    o += (size_t)sprintf(p + o,
                         "{\"time\":\"%s\",\"worker\":%d,\"conn\":%llu,\"protocol\":\"%s\","
                         "\"stream\":%d,\"method\":\"",
                         ts, worker_id, req->conn ? (unsigned long long)req->conn->tag.id : 0ULL,
                         sl_req_proto_name(req), (int)req->stream_id);
    o += json_escape(p + o, req->method.p, req->method.n);
    o += (size_t)sprintf(p + o, "\",\"path\":\"");
    o += json_escape(p + o, req->target.p, req->target.n);
    o += (size_t)sprintf(p + o,
                         "\",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,"
                         "\"duration_ms\":%.3f,\"peer\":\"%.64s\"",
                         req->res.status, (unsigned long long)req->bytes_in,
                         (unsigned long long)req->bytes_out, dur_ms, req->peer ? req->peer : "");
    if (req->tls.version)
        o += (size_t)sprintf(p + o, ",\"tls\":\"%.16s\",\"alpn\":\"%.16s\"", req->tls.version,
                             req->tls.alpn ? req->tls.alpn : "");
    if (req->tls.client_subject)
        o += opt_field(p + o, "client_cert",
                       (sl_str_t){req->tls.client_subject, strlen(req->tls.client_subject)});
    o += opt_field(p + o, "request_id", req->log_request_id);
    o += opt_field(p + o, "trace_id", req->log_trace_id);
    o += opt_field(p + o, "job_id", req->log_job_id);
    o += opt_field(p + o, "auth", req->log_auth);
    o += opt_field(p + o, "cache", req->log_cache);
    o += (size_t)sprintf(p + o, "}\n");
    return o;
}

/* The most a line for req can take: each escaped byte 6. */
static size_t line_bound(const sl_req_t *req)
{
    size_t esc = req->method.n + req->target.n + req->log_request_id.n + req->log_trace_id.n +
                 req->log_job_id.n + req->log_auth.n + req->log_cache.n;
    if (req->tls.client_subject)
        esc += strlen(req->tls.client_subject);
    return LINE_FIXED + 6 * esc;
}

int sl_access_log_wanted(const sl_req_t *req)
{
    const sl_config_t *cfg = req->conn ? sl_conn_config(req->conn) : NULL;
    return current && !(cfg && !cfg->access_log);
}

void sl_access_log(const sl_req_t *req, uint64_t ns)
{
    sl_access_log_t *al = current;
    if (!al)
        return; /* the caller asked sl_access_log_wanted */
    size_t need = line_bound(req);
    if (need > ACCESS_BUF_MAX) {
        /* Rare (a URI of several KiB): a line of its own, in order. */
        sl_access_flush(al);
        char *line = sl_malloc(need);
        write_all(line, format_line(line, req, al->worker_id, ns));
        sl_free(line);
        return;
    }
    if (!al->buf) {
        al->cap = ACCESS_BUF_MAX;
        al->buf = sl_malloc(al->cap);
    }
    if (al->cap - al->len < need)
        sl_access_flush(al);
    al->len += format_line(al->buf + al->len, req, al->worker_id, ns);
}
