/* sluice - SPDX-License-Identifier: MIT
 *
 * Logging. Error lines go to stderr ("time level [wN cN sN] message"),
 * sl_log checks the level before formatting anything. A leaf: it includes
 * no other module (the access log, which reads requests, is access.h).
 * Level by blame: a peer breaking the protocol is INFO ("client sent ..."),
 * something an operator must act on is WARN, a broken invariant ERROR.
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include "sl.h"

typedef enum sl_log_level {
    SL_LOG_DEBUG = 0,
    SL_LOG_INFO = 1,
    SL_LOG_WARN = 2,
    SL_LOG_ERROR = 3,
} sl_log_level_t;

extern sl_log_level_t sl_log_min_level;

struct sl_conn;

/* How a line names its connection ("c12 192.0.2.1:443"). sl_conn_t starts
 * with one (conn.h asserts it), so a line can name the connection without
 * this file knowing the connection's type. */
typedef struct sl_log_tag {
    uint64_t id;
    char peer[64]; /* "ip:port" */
} sl_log_tag_t;

void sl_log_set_level(const char *name);
/* Lines written by the calling thread name worker id (-1: none). */
void sl_log_bind_worker(int id);
/* "2026-12-05T21:13:29.123Z" (UTC, milliseconds). */
void sl_log_format_time(char *buf, size_t len);
void sl_log_write(sl_log_level_t lvl, const struct sl_conn *c, int32_t stream_id, const char *fmt,
                  ...) SL_PRINTF(4, 5);

/* ctx: an sl_conn_t * or NULL. */
#define sl_log(lvl, conn, ...)                                                                     \
    do {                                                                                           \
        if ((lvl) >= sl_log_min_level)                                                             \
            sl_log_write((lvl), (conn), -1, __VA_ARGS__);                                          \
    } while (0)
#define sl_log_stream(lvl, conn, sid, ...)                                                         \
    do {                                                                                           \
        if ((lvl) >= sl_log_min_level)                                                             \
            sl_log_write((lvl), (conn), (sid), __VA_ARGS__);                                       \
    } while (0)

#endif
