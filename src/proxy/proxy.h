/* sluice - SPDX-License-Identifier: MIT
 *
 * The reverse proxy: the "upstreams" config section (named groups of
 * HTTP/1.1 servers with balancing, pools, timeouts, passive and active
 * health) and the "proxy" route handler that forwards a request arriving
 * over HTTP/1.1 or HTTP/2 to one of them, streaming both ways with
 * backpressure, and tunnels WebSockets (HTTP/1.1 Upgrade or HTTP/2 extended CONNECT). main.c
 * registers both. Reference: docs/proxy.md.
 */
#ifndef SL_PROXY_H
#define SL_PROXY_H

#include "../config.h"
#include "../router.h"

extern const sl_handler_def_t sl_proxy_handler;
extern const sl_config_section_def_t sl_proxy_upstreams_section;

/* True when cfg has an upstream group called name (for config checks of
 * the modules that use the client below). */
int sl_proxy_upstream_exists(const sl_config_t *cfg, const char *name);

/* ---- the upstream client for code off the workers (client.c) ----
 *
 * One HTTP/1.1 exchange with a server of an upstream group, on the engine
 * the proxy handler uses: the group's balancing (key feeds "hash"),
 * passive health, retries of connects that fail before a byte is sent,
 * TLS with the group's verification, and its connect, send, first-byte
 * and idle timeouts. The caller writes the request (head per server,
 * body pushed at its own pace) and gets the response through callbacks.
 * One connection per exchange (the head should say connection: close).
 * A thread that is not a worker binds its loop first
 * (sl_proxy_client_bind); one such thread, the jobs thread, does.
 */
struct ev_loop;
struct sl_header;
typedef struct sl_proxy_client sl_proxy_client_t;
typedef struct sl_proxy_client_cbs {
    /* The request head for the server picked, whose Host value is host:
     * a buffer from sl_malloc of *len bytes (the client frees it). Called
     * once per attempt. */
    char *(*head)(void *arg, const char *host, size_t *len);
    /* What was sent so far has been written: send more, or end (NULL
     * when the request is whole from the start). */
    void (*on_drained)(void *arg);
    /* The final response head (1xx skipped); fields valid during the call.
     * Return 1 when that is all the caller needs: the exchange then ends
     * as complete without the body. */
    int (*on_head)(void *arg, int status, const struct sl_header *fields, size_t n);
    void (*on_data)(void *arg, const uint8_t *p, size_t n); /* NULL: body not wanted */
    /* The exchange is over: error is NULL when the whole response came,
     * else why it did not. The client is freed when this returns. */
    void (*on_done)(void *arg, const char *error);
} sl_proxy_client_cbs_t;

void sl_proxy_client_bind(struct ev_loop *loop);
/* Start an exchange with group name of cfg; log lines start with
 * log_prefix ("job 12ab: "). Callbacks come from the loop, never from
 * inside this call. NULL when there is no such group. */
sl_proxy_client_t *sl_proxy_client_start(const sl_config_t *cfg, const char *group, const char *key,
                                         int head_request, const char *log_prefix,
                                         const sl_proxy_client_cbs_t *cbs, void *arg);
/* Queue request bytes after the head (copied; the caller bounds them by
 * waiting for on_drained), and say the request is complete. */
void sl_proxy_client_send(sl_proxy_client_t *c, const void *p, size_t n);
void sl_proxy_client_end(sl_proxy_client_t *c);
/* Close now; no callback follows. Not from inside a callback. */
void sl_proxy_client_cancel(sl_proxy_client_t *c);

#endif
