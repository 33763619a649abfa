/* sluice - SPDX-License-Identifier: MIT
 *
 * HTTP/3 (RFC 9114) over QUIC v1 (RFC 9000/9001): ngtcp2 with its GnuTLS
 * crypto backend and nghttp3, on every TLS listener with "quic": true.
 * Each worker owns one UDP socket per such listener (SO_REUSEPORT, the
 * listener's address and port) and the QUIC connections whose packets
 * reach it. Requests go through the same request model as HTTP/1.1 and
 * HTTP/2 (req.h). docs/h3.md has the user's side.
 */
#ifndef SL_H3_H
#define SL_H3_H

/* Register the "quic" config section and the worker hooks that open,
 * re-point and close the UDP sockets. Call once from main before the
 * configuration is loaded. */
void sl_h3_register(void);

#endif
