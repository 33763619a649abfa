/* sluice - SPDX-License-Identifier: MIT
 *
 * reply/: delivery of job events to clients. Two handlers: "job" (a route
 * that turns each request into a job and answers in the client's reply
 * mode: streamed raw bytes, SSE, 202 + Location, or the result within
 * Prefer: wait=N) and "jobs_api" (/jobs, /jobs/{id}, /jobs/{id}/events,
 * /jobs/{id}/result, DELETE /jobs/{id}). main.c registers both. Reference:
 * docs/jobs.md.
 */
#ifndef SL_REPLY_H
#define SL_REPLY_H

#include "../router.h"

extern const sl_handler_def_t sl_reply_job_handler, sl_reply_api_handler;
/* reply_to (delivering a finished job's status to an upstream): adds the
 * "reply_to" executor key and the observer of job ends. Call before the
 * config is loaded. */
void sl_reply_to_register(void);

#endif
