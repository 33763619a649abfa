/* sluice - SPDX-License-Identifier: MIT
 *
 * The access log: one JSON line per finished request on stdout or a file, gathered
 * in a buffer each worker embeds (sl_access_log_t) and written once per
 * loop iteration, so a busy worker issues one write(2) per iteration
 * instead of one per request. Kept apart from log.c (error lines) so that
 * log stays a leaf every module may include.
 */
#ifndef SL_ACCESS_H
#define SL_ACCESS_H

#include "sl.h"

struct sl_req;

typedef struct sl_access_log {
    char *buf; /* pending lines, allocated on first use (bounded) */
    size_t len, cap;
    int worker_id;
} sl_access_log_t;

/* Before the workers start: lines go to the file at path (appended,
 * created 0640) instead of stdout; NULL keeps stdout. */
int sl_access_open(const char *path, char *err, size_t errlen);
/* SIGUSR1: open path again (after logrotate moved it) in the same
 * descriptor. No-op when logging to stdout. */
int sl_access_reopen(const char *path, char *err, size_t errlen);

void sl_access_init(sl_access_log_t *al, int worker_id);
void sl_access_dispose(sl_access_log_t *al); /* flushes what is pending */
/* Make al the calling thread's log (NULL: none; lines are then dropped). */
void sl_access_bind(sl_access_log_t *al);
/* Write out the pending lines (once per loop iteration). */
void sl_access_flush(sl_access_log_t *al);

/* One line for a finished request into the thread's log. */
/* Whether req gets a line (a log is bound and its config has it on). */
int sl_access_log_wanted(const struct sl_req *req);
/* Queue req's line (when sl_access_log_wanted said so); ns is its
 * duration. */
void sl_access_log(const struct sl_req *req, uint64_t ns);

#endif
