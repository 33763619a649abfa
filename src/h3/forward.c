/* sluice - SPDX-License-Identifier: MIT
 *
 * Packets that reach the wrong worker. The kernel picks a worker's UDP
 * socket by a hash of the client's address and port, so when a client's
 * port changes (NAT rebinding, a phone moving between networks) its
 * packets may land on another worker, which does not know the connection.
 * Every server connection ID starts with the id of the worker that issued
 * it (sl_h3_cid_new), so that worker is handed a copy of the packet
 * through its mailbox (sl_worker_post) and answers from its own socket,
 * bound to the same address and port. At most SL_H3_FORWARD_MAX packets
 * wait per worker; past that they are dropped, which QUIC's loss recovery
 * absorbs. Only short-header packets are forwarded: a client may not move
 * before its handshake is confirmed (RFC 9000 9), and Initial packets
 * carry IDs the client chose.
 */
#include "h3_int.h"
#include "../metrics.h"
#include <stdatomic.h>

#define SL_H3_FORWARD_MAX 1024

static _Atomic(sl_worker_t *) peers[256];
static atomic_int pending[256];

typedef struct fwd {
    struct sockaddr_storage local, remote;
    socklen_t locallen, remotelen;
    size_t n;
    uint8_t p[];
} fwd_t;

void sl_h3_forward_register(sl_worker_t *w)
{
    if (w->id >= 0 && w->id < 256)
        atomic_store(&peers[w->id], w);
}

/* On the owning worker's thread. */
static void on_forwarded(sl_worker_t *w, void *arg)
{
    fwd_t *f = arg;
    sl_h3_worker_t *hw = sl_h3_worker();
    atomic_fetch_sub(&pending[w->id], 1);
    sl_h3_ep_t *ep = hw ? sl_h3_ep_for(hw, &f->local) : NULL;
    if (ep) {
        sl_h3_pkt_t k = {.ep = ep, .p = f->p, .n = f->n};
        memcpy(&k.local, &f->local, f->locallen);
        k.locallen = f->locallen;
        memcpy(&k.remote, &f->remote, f->remotelen);
        k.remotelen = f->remotelen;
        /* Its ID names this worker now, so it is never sent on again. */
        sl_h3_ep_packet(hw, &k);
    }
    sl_free(f);
}

int sl_h3_forward(sl_h3_worker_t *hw, const sl_h3_pkt_t *k, const uint8_t *dcid, size_t dcidlen)
{
    if (dcidlen != SL_H3_SCIDLEN || dcid[0] == hw->w->id)
        return 0;
    sl_worker_t *to = atomic_load(&peers[dcid[0]]);
    if (!to)
        return 0;
    if (atomic_fetch_add(&pending[to->id], 1) >= SL_H3_FORWARD_MAX) {
        atomic_fetch_sub(&pending[to->id], 1);
        sl_metrics_quic(SL_M_QUIC_DROPPED);
        return 1; /* dropped: a backlog there already */
    }
    fwd_t *f = sl_malloc(sizeof(*f) + k->n);
    memcpy(&f->local, &k->local, k->locallen);
    f->locallen = k->locallen;
    memcpy(&f->remote, &k->remote, k->remotelen);
    f->remotelen = k->remotelen;
    f->n = k->n;
    memcpy(f->p, k->p, k->n);
    if (sl_worker_post(to, on_forwarded, f) != 0) { /* its loop is over */
        atomic_fetch_sub(&pending[to->id], 1);
        sl_free(f);
        return 0;
    }
    sl_metrics_quic(SL_M_QUIC_FORWARDED);
    return 1;
}
