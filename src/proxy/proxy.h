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

/* For clients outside the proxy handler (the jobs "upstream" executor,
 * client_api.c): server number turn (mod the group's size) of upstream
 * group name in cfg, with the group's timeouts. Pointers stay valid while
 * cfg lives. Returns 0, or SL_EINVAL when there is no such group. */
struct sockaddr;
typedef struct sl_proxy_addr {
    const struct sockaddr *sa;
    unsigned sa_len;
    const char *host; /* Host header value */
    const char *name; /* the server as configured, for logs */
    double connect_s, first_byte_s, read_idle_s;
} sl_proxy_addr_t;
int sl_proxy_upstream_addr(const sl_config_t *cfg, const char *name, unsigned turn,
                           sl_proxy_addr_t *out);

/* An HTTP/1.1 response reader for such clients (strict h1 parser): feed it
 * the bytes read; it calls on_head once for the final head (1xx skipped;
 * fields valid only during the call) and on_data for each run of body
 * bytes (content-length, chunked or until EOF). */
struct sl_header;
typedef struct sl_proxy_reader sl_proxy_reader_t;
typedef struct sl_proxy_reader_cbs {
    void (*on_head)(void *arg, int status, const struct sl_header *fields, size_t n);
    void (*on_data)(void *arg, const uint8_t *p, size_t n);
} sl_proxy_reader_cbs_t;
sl_proxy_reader_t *sl_proxy_reader_new(int head_request, const sl_proxy_reader_cbs_t *cbs,
                                       void *arg);
/* Returns 1 when the response is complete, 0 for more, SL_EINVAL with
 * *err set on a bad head or body. */
int sl_proxy_reader_feed(sl_proxy_reader_t *r, const uint8_t *p, size_t n, const char **err);
/* At EOF: 1 when the response is complete (a body delimited by the close
 * counts), else 0. */
int sl_proxy_reader_eof(const sl_proxy_reader_t *r);
void sl_proxy_reader_free(sl_proxy_reader_t *r);

#endif
