/* sluice - SPDX-License-Identifier: MIT
 *
 * Logging. Error lines go to stderr ("time level [wN cN sN] message"),
 * JSON access lines to stdout through a per-worker buffer flushed once per
 * loop iteration. sl_log checks the level before formatting anything.
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
struct sl_req;

void sl_log_set_level(const char *name);
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

struct sl_worker;
/* Write out the worker's buffered access lines (once per loop iteration). */
void sl_log_access_flush(struct sl_worker *w);

/* One JSON access line for a finished request (buffered per worker). */
void sl_log_access(const struct sl_req *req);

#endif
