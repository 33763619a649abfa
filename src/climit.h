/* sluice - SPDX-License-Identifier: MIT
 *
 * Connections per client address (limits.conns_per_ip), counted across
 * every worker: a client's connections land on workers by the kernel's
 * hash, so a per-worker count would let it open workers x the limit.
 */
#ifndef SL_CLIMIT_H
#define SL_CLIMIT_H

#include "sl.h"
#include <sys/socket.h>

/* The address a limit counts: IPv4 (v4-mapped too) whole, IPv6 cut to
 * its first v6_prefix bits (a /64 is usually one client). */
typedef struct sl_climit_key {
    uint8_t a[17]; /* family byte, then the address bytes */
} sl_climit_key_t;

/* Returns 0, or SL_EINVAL for an address that is not counted (unix). */
int sl_climit_key_of(const struct sockaddr *sa, unsigned v6_prefix, sl_climit_key_t *k);
/* One more connection for k: 0, or SL_ELIMIT when it already has max. */
int sl_climit_take(const sl_climit_key_t *k, uint32_t max);
void sl_climit_release(const sl_climit_key_t *k);
/* Open connections counted for k (tests, metrics). */
uint32_t sl_climit_count(const sl_climit_key_t *k);

#endif
