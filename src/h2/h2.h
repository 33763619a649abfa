/* sluice - SPDX-License-Identifier: MIT
 *
 * HTTP/2 (RFC 9113) over nghttp2: the server session glue, settings from
 * config, flow-controlled streaming both ways, and the limits against the
 * known HTTP/2 attacks (rapid reset, MadeYouReset, CONTINUATION flood,
 * HPACK bomb, SETTINGS/PING/empty-frame floods).
 */
#ifndef SL_H2_H
#define SL_H2_H

#include "../sl.h"
#include "../req.h"
#include "../conn.h"

extern const sl_proto_t sl_h2_proto;

/* Start HTTP/2 on c (after ALPN "h2" or a cleartext preface). data/len are
 * bytes already read, starting with the client preface (may be 0). */
int sl_h2_conn_start(sl_conn_t *c, const uint8_t *data, size_t len);

/* Start HTTP/2 after an HTTP/1.1 "Upgrade: h2c" (the 101 has been queued
 * by h1). settings is the decoded HTTP2-Settings payload; h1req is the
 * request that asked for the upgrade, which becomes stream 1 (its head is
 * copied; it must have no body). rest/restlen are bytes read after it. */
int sl_h2_conn_upgrade(sl_conn_t *c, const uint8_t *settings, size_t slen, const sl_req_t *h1req,
                       const uint8_t *rest, size_t restlen);

#endif
