/* sluice - SPDX-License-Identifier: MIT
 *
 * A Redis connection on one libev loop that redials by itself
 * (src/jobs/rconn.c). Private to src/jobs/.
 */
#ifndef SL_JOBS_RCONN_H
#define SL_JOBS_RCONN_H

#include "jobs.h"
#include <hiredis/async.h>

typedef struct sl_jobs_rconn sl_jobs_rconn_t;
/* up 1: connected (commands may be sent); 0: lost, a redial is scheduled. */
typedef void (*sl_jobs_rconn_state_fn)(sl_jobs_rconn_t *rc, int up, void *arg);
/* reply is NULL when the connection went away before the answer. */
typedef void (*sl_jobs_rconn_cb)(sl_jobs_rconn_t *rc, redisReply *reply, void *priv);

/* watch: drop the connection when a reply is later than cfg->timeout_ms
 * (off for a reader that blocks on purpose). role names it in logs. */
sl_jobs_rconn_t *sl_jobs_rconn_new(struct ev_loop *loop, const sl_jobs_store_cfg_t *cfg,
                                   const char *role, int watch, sl_jobs_rconn_state_fn fn,
                                   void *arg);
/* Pending callbacks run with a NULL reply. */
void sl_jobs_rconn_free(sl_jobs_rconn_t *rc);
/* Any thread: connected now. */
int sl_jobs_rconn_up(const sl_jobs_rconn_t *rc);
/* Send one command; cb runs exactly once, later. SL_EAGAIN (cb never runs)
 * when down or with max_pending replies outstanding. */
int sl_jobs_rconn_argv(sl_jobs_rconn_t *rc, sl_jobs_rconn_cb cb, void *priv, int argc,
                       const char **argv, const size_t *lens);

#endif
