/* sluice - SPDX-License-Identifier: MIT
 *
 * The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a load
 * balancer in front sends first on a connection to say who the client is.
 * A leaf: parsing only; conn.c reads the header off the socket on
 * listeners with "proxy_protocol": true.
 */
#ifndef SL_PROXYPROTO_H
#define SL_PROXYPROTO_H

#include "sl.h"
#include <sys/socket.h>

#define SL_PP_V1_MAX 107         /* the spec's bound, CRLF included */
#define SL_PP_V2_MAX (16 + 1024) /* addresses (216 at most) and TLVs, which are skipped */

typedef struct sl_pp {
    int local; /* v2 LOCAL or v1 UNKNOWN: the connection's own address stands */
    struct sockaddr_storage src;
    socklen_t srclen;
} sl_pp_t;

/* Parse a header at the start of p[0..n). Returns its length when it is
 * complete; 0 when every byte so far is a valid beginning of a header
 * and more are needed (all n bytes then belong to it); SL_EINVAL when it
 * is no valid header (including a v1 line or v2 block past its bound). */
ssize_t sl_pp_parse(const uint8_t *p, size_t n, sl_pp_t *out);

#endif
