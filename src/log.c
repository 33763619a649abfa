/* sluice - SPDX-License-Identifier: MIT
 *
 * Error lines to stderr, formatted only when the level is on. A leaf:
 * the worker names itself with sl_log_bind_worker and a connection is
 * named through the sl_log_tag_t it starts with, so this file needs no
 * other module's header. The access log is access.c.
 */
#include "log.h"
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

sl_log_level_t sl_log_min_level = SL_LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error"};
static __thread int worker_id = -1;

void sl_log_set_level(const char *name)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(level_names); i++)
        if (name && strcmp(name, level_names[i]) == 0)
            sl_log_min_level = (sl_log_level_t)i;
}

void sl_log_bind_worker(int id)
{
    worker_id = id;
}

void sl_log_format_time(char *buf, size_t len)
{
    uint64_t ms = sl_wall_ms();
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03uZ", (unsigned)(ms % 1000));
}

void sl_log_write(sl_log_level_t lvl, const struct sl_conn *c, int32_t stream_id, const char *fmt,
                  ...)
{
    char line[1024], ts[40];
    int n;
    /* sl_conn_t starts with its tag (conn.h asserts it). */
    const sl_log_tag_t *tag = (const sl_log_tag_t *)(const void *)c;
    sl_log_format_time(ts, sizeof(ts));
    n = snprintf(line, sizeof(line), "%s %s", ts, level_names[lvl]);
    if (worker_id >= 0)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " w%d", worker_id);
    if (tag)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " c%llu %s", (unsigned long long)tag->id,
                      tag->peer);
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
