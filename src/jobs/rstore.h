/* sluice - SPDX-License-Identifier: MIT
 *
 * Shared by the Redis store's files (rstore.c: writes and lookups;
 * rfollow.c: reading new events of mirrored jobs). Jobs thread only.
 * Keys and fields: docs/redis.md.
 */
#ifndef SL_JOBS_RSTORE_H
#define SL_JOBS_RSTORE_H

#include "jobs_int.h"
#include "rconn.h"

#define SL_RS_MAX_ARGS 40
#define SL_RS_PAGE 256   /* events per XRANGE / XREAD reply */
#define SL_RS_CTL_LEN 1000 /* control stream entries kept */

/* A command's arguments; numbers are formatted into the struct. */
typedef struct sl_rs_args {
    int n, nn;
    const char *v[SL_RS_MAX_ARGS];
    size_t l[SL_RS_MAX_ARGS];
    char nums[12][24];
} sl_rs_args_t;

void sl_rs_arg(sl_rs_args_t *a, const char *s);
void sl_rs_arg_bin(sl_rs_args_t *a, const void *p, size_t n);
void sl_rs_arg_u64(sl_rs_args_t *a, uint64_t v);
/* Send a; SL_EAGAIN when the connection is down or full (cb never runs). */
int sl_rs_send(sl_jobs_rconn_t *rc, sl_rs_args_t *a, sl_jobs_rconn_cb cb, void *priv);

/* "<prefix><kind>:<id>" ("job", "ev"), or "<prefix>ctl" for id NULL. */
void sl_rs_key(char *out, size_t cap, const char *kind, const char *id);
const sl_jobs_store_cfg_t *sl_rs_cfg(void);
sl_jobs_rconn_t *sl_rs_cmd(void);

/* One stream entry [id, [field, value, ...]] of a mirrored job: put into
 * job. Returns 1 once its END is in, -1 for a malformed entry. */
int sl_rs_put_entry(sl_jobs_job_t *job, const redisReply *e, uint64_t *seq);
/* The value of field name in a [field, value, ...] array, or NULL. */
const redisReply *sl_rs_field(const redisReply *arr, const char *name);

/* rfollow.c */
int sl_rs_follow_start(struct ev_loop *loop);
void sl_rs_follow_stop(void);
/* Follow job (a mirror, not ended): its new events come in as they are
 * written, from any instance. Takes a reference. */
void sl_rs_follow(sl_jobs_job_t *job);

#endif
