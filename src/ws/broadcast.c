/* sluice - SPDX-License-Identifier: MIT
 *
 * The broadcast app: /_h/ws/broadcast/{channel}. Every message a client
 * sends goes to every client on the channel (the sender too), on every
 * worker.
 *
 *   registry (process-wide): SHARDS x buckets, one mutex per shard
 *     channel ----- refs: subscribers on all workers + deliveries in flight
 *       |           nsubs[w]: subscribers on worker w (atomic, read unlocked)
 *       +- local[w] -> sub -> sub -> ...   (touched only by worker w)
 *
 *   worker A publishes: msg (immutable, refcounted)
 *     -> its own local[A] subscribers: sl_ws_send, no lock
 *     -> each worker B with nsubs[B] > 0: push {channel, msg} onto B's
 *        inbox (B's mutex), ev_async_send; B delivers to local[B]
 *
 * So the per-connection path takes no lock; a publish takes the channel's
 * shard lock once (refs) and one inbox lock per other worker. A subscriber
 * whose send queue is over send_queue_bytes is closed with 1013 (try again
 * later) instead of growing memory. An inbox holds at most inbox_bytes of
 * messages (the publishing route's bound): past it the message is not
 * queued and, once per channel, a "lost" marker is, so that worker's
 * subscribers of that channel are closed with 1013 rather than silently
 * missing messages. Channel and subscriber counts are bounded by the route
 * (max_channels, max_subscribers: 503 past them).
 */
#include "ws_int.h"
#include "../config.h"
#include "../conn.h"
#include "../log.h"
#include "../router.h"
#include "../worker.h"
#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#define SHARDS 16
#define BUCKETS 64

typedef struct msg {
    atomic_int refs;
    int binary;
    size_t len;
    uint8_t data[];
} msg_t;

typedef struct channel channel_t;

typedef struct sub {
    sl_ws_t *ws;
    channel_t *ch;
    int worker;
    struct sub *prev, *next;
    unsigned linked : 1;
} sub_t;

struct channel {
    channel_t *next; /* bucket chain, under the shard lock */
    long refs;       /* under the shard lock */
    size_t nsubs_total;
    unsigned shard, bucket;
    atomic_uint nsubs[SL_WS_MAX_WORKERS];
    atomic_uchar lost[SL_WS_MAX_WORKERS]; /* a "lost" marker waits in worker w's inbox */
    sub_t *local[SL_WS_MAX_WORKERS];
    size_t keylen;
    char key[];
};

typedef struct shard {
    pthread_mutex_t mu;
    channel_t *buckets[BUCKETS];
} shard_t;

typedef struct delivery {
    struct delivery *next;
    channel_t *ch;
    msg_t *m; /* NULL: the "lost" marker (messages for ch were not queued) */
} delivery_t;

typedef struct inbox {
    atomic_int ready;
    pthread_mutex_t mu;
    delivery_t *head, *tail;
    size_t bytes; /* queued message bytes + delivery records */
    size_t nlive; /* this worker's subscribers (all channels): 0 = post nothing */
    struct ev_loop *loop;
    ev_async async;
} inbox_t;

static shard_t shards[SHARDS];
static inbox_t inboxes[SL_WS_MAX_WORKERS];
static size_t nchannels; /* under registry_mu */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_int logged_drop, logged_full;

static void init_once(void)
{
    for (size_t i = 0; i < SHARDS; i++)
        pthread_mutex_init(&shards[i].mu, NULL);
    for (size_t i = 0; i < SL_WS_MAX_WORKERS; i++)
        pthread_mutex_init(&inboxes[i].mu, NULL);
}

static uint32_t hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

/* ---- messages and channels ---- */

static void msg_unref(msg_t *m)
{
    if (atomic_fetch_sub(&m->refs, 1) == 1)
        sl_free(m);
}

static void channel_unref(channel_t *ch, long n)
{
    shard_t *s = &shards[ch->shard];
    pthread_mutex_lock(&s->mu);
    ch->refs -= n;
    int dead = ch->refs == 0;
    if (dead) {
        channel_t **pp = &s->buckets[ch->bucket];
        while (*pp != ch)
            pp = &(*pp)->next;
        *pp = ch->next;
    }
    pthread_mutex_unlock(&s->mu);
    if (dead) {
        pthread_mutex_lock(&registry_mu);
        nchannels--;
        pthread_mutex_unlock(&registry_mu);
        sl_free(ch);
    }
}

/* Find or create the channel and count a subscriber on worker w. Returns
 * NULL when max_channels or max_subscribers is reached. */
static channel_t *subscribe(const sl_ws_route_t *r, const char *key, size_t keylen, int w)
{
    uint32_t h = hash(key, keylen);
    unsigned si = h % SHARDS, bi = (h / SHARDS) % BUCKETS;
    shard_t *s = &shards[si];
    pthread_mutex_lock(&s->mu);
    channel_t *ch = s->buckets[bi];
    while (ch && !(ch->keylen == keylen && memcmp(ch->key, key, keylen) == 0))
        ch = ch->next;
    if (!ch) {
        pthread_mutex_lock(&registry_mu);
        int full = nchannels >= r->max_channels;
        if (!full)
            nchannels++;
        pthread_mutex_unlock(&registry_mu);
        if (full) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        ch = sl_calloc(1, sizeof(*ch) + keylen);
        memcpy(ch->key, key, keylen);
        ch->keylen = keylen;
        ch->shard = si;
        ch->bucket = bi;
        ch->next = s->buckets[bi];
        s->buckets[bi] = ch;
    } else if (ch->nsubs_total >= r->max_subscribers) {
        pthread_mutex_unlock(&s->mu);
        return NULL;
    }
    ch->refs++;
    ch->nsubs_total++;
    atomic_fetch_add(&ch->nsubs[w], 1);
    pthread_mutex_unlock(&s->mu);
    return ch;
}

static void inbox_leave(int w);

static void unsubscribe(sub_t *sub)
{
    channel_t *ch = sub->ch;
    if (sub->linked) {
        if (sub->prev)
            sub->prev->next = sub->next;
        else
            ch->local[sub->worker] = sub->next;
        if (sub->next)
            sub->next->prev = sub->prev;
        sub->linked = 0;
    }
    atomic_fetch_sub(&ch->nsubs[sub->worker], 1);
    inbox_leave(sub->worker);
    shard_t *s = &shards[ch->shard];
    pthread_mutex_lock(&s->mu);
    ch->nsubs_total--;
    pthread_mutex_unlock(&s->mu);
    channel_unref(ch, 1);
}

/* ---- delivery ---- */

static void close_slow(sl_ws_t *ws, const char *why)
{
    sl_req_t *req = sl_ws_req(ws);
    sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id,
                  "client reads a broadcast too slowly (%s, %zu bytes queued); closing with 1013",
                  why, sl_ws_queued(ws));
    sl_ws_close(ws, SL_WS_CLOSE_TRY_AGAIN, "subscriber too slow");
}

/* m NULL: messages for ch could not be queued for this worker. */
static void deliver_local(channel_t *ch, int w, const msg_t *m)
{
    if (!m)
        atomic_store(&ch->lost[w], 0);
    for (sub_t *s = ch->local[w], *next; s; s = next) {
        next = s->next;
        if (!m) {
            close_slow(s->ws, "its worker's broadcast inbox overflowed");
            continue;
        }
        int r = sl_ws_send(s->ws, m->binary, m->data, m->len);
        if (r == SL_EAGAIN || r == SL_ENOMEM)
            close_slow(s->ws, "send queue full");
    }
}

/* Take the inbox's deliveries; call with box->mu held. */
static delivery_t *inbox_take(inbox_t *box)
{
    delivery_t *d = box->head;
    box->head = box->tail = NULL;
    box->bytes = 0;
    return d;
}

/* Deliver (deliver=1) or just release a list of worker w's deliveries. */
static void deliveries_run(delivery_t *d, int w, int deliver)
{
    while (d) {
        delivery_t *next = d->next;
        if (deliver)
            deliver_local(d->ch, w, d->m);
        else if (!d->m)
            atomic_store(&d->ch->lost[w], 0);
        if (d->m)
            msg_unref(d->m);
        channel_unref(d->ch, 1);
        sl_free(d);
        d = next;
    }
}

static void on_async(struct ev_loop *loop, ev_async *a, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    inbox_t *box = sl_container_of(a, inbox_t, async);
    pthread_mutex_lock(&box->mu);
    delivery_t *d = inbox_take(box);
    pthread_mutex_unlock(&box->mu);
    deliveries_run(d, (int)(box - inboxes), 1);
}

/* A subscriber joins / leaves worker w. When the last one leaves, what
 * waits in the inbox has no reader: free it now, and post() refuses more,
 * so nothing is left behind when the worker exits (its connections, and
 * with them its subscribers, are closed before its loop goes away). */
static void inbox_join(int w)
{
    inbox_t *box = &inboxes[w];
    pthread_mutex_lock(&box->mu);
    box->nlive++;
    pthread_mutex_unlock(&box->mu);
}

static void inbox_leave(int w)
{
    inbox_t *box = &inboxes[w];
    delivery_t *d = NULL;
    pthread_mutex_lock(&box->mu);
    if (--box->nlive == 0)
        d = inbox_take(box);
    pthread_mutex_unlock(&box->mu);
    deliveries_run(d, w, 0);
}

/* The worker's inbox, set up on its own thread at its first subscriber. */
static void inbox_ready(int w)
{
    inbox_t *box = &inboxes[w];
    if (atomic_load(&box->ready))
        return;
    box->loop = sl_worker_current()->loop;
    ev_async_init(&box->async, on_async);
    ev_async_start(box->loop, &box->async);
    atomic_store(&box->ready, 1);
}

static void inbox_append(inbox_t *box, delivery_t *d, size_t cost)
{
    if (box->tail)
        box->tail->next = d;
    else
        box->head = d;
    box->tail = d;
    box->bytes += cost;
    /* Under the lock: with a subscriber left the loop is alive. */
    ev_async_send(box->loop, &box->async);
}

/* Queue m for worker w, or when that would take its inbox past limit
 * bytes, the channel's "lost" marker (at most one waits per channel and
 * worker, so markers are bounded by max_channels). Returns 0 when
 * something was queued (it holds the caller's channel ref), -1 if not. */
static int post(int w, channel_t *ch, msg_t *m, size_t limit)
{
    inbox_t *box = &inboxes[w];
    size_t cost = sizeof(delivery_t) + m->len;
    int queued = 0, overflow = 0;
    delivery_t *d = sl_malloc(sizeof(*d));
    d->next = NULL;
    d->ch = ch;
    d->m = m;
    pthread_mutex_lock(&box->mu);
    if (box->nlive > 0) {
        if (box->bytes + cost <= limit) {
            atomic_fetch_add(&m->refs, 1);
            inbox_append(box, d, cost);
            queued = 1;
        } else if (!atomic_exchange(&ch->lost[w], 1)) {
            d->m = NULL;
            inbox_append(box, d, sizeof(*d));
            queued = overflow = 1;
        } else {
            overflow = 1;
        }
    }
    pthread_mutex_unlock(&box->mu);
    if (!queued)
        sl_free(d);
    if (overflow && !atomic_exchange(&logged_drop, 1))
        sl_log(SL_LOG_WARN, NULL,
               "ws broadcast: worker %d inbox over %zu bytes; its slow subscribers are closed "
               "with 1013",
               w, limit);
    return queued ? 0 : -1;
}

static void publish(sub_t *from, int binary, const uint8_t *data, size_t len)
{
    channel_t *ch = from->ch;
    const sl_ws_route_t *r = sl_ws_req(from->ws)->route->state;
    int me = from->worker;
    int nworkers = sl_conn_config(sl_ws_req(from->ws)->conn)->workers;
    nworkers = SL_MIN(nworkers, SL_WS_MAX_WORKERS);
    msg_t *m = sl_malloc(sizeof(*m) + len);
    atomic_init(&m->refs, 1);
    m->binary = binary;
    m->len = len;
    memcpy(m->data, data, len);
    /* Refs for the other workers first: our own subscription keeps the
     * channel alive meanwhile. */
    long k = 0;
    for (int w = 0; w < nworkers; w++)
        k += w != me && atomic_load(&ch->nsubs[w]) > 0 && atomic_load(&inboxes[w].ready);
    if (k) {
        pthread_mutex_lock(&shards[ch->shard].mu);
        ch->refs += k;
        pthread_mutex_unlock(&shards[ch->shard].mu);
        long used = 0;
        for (int w = 0; w < nworkers && used < k; w++) {
            if (w == me || atomic_load(&ch->nsubs[w]) == 0 || !atomic_load(&inboxes[w].ready))
                continue;
            used++;
            if (post(w, ch, m, r->inbox_bytes) != 0)
                channel_unref(ch, 1);
        }
        if (used < k)
            channel_unref(ch, k - used); /* a worker's last subscriber left meanwhile */
    }
    deliver_local(ch, me, m);
    msg_unref(m);
}

/* ---- the app ---- */

static int on_open(sl_ws_t *ws)
{
    sub_t *sub = sl_ws_data(ws);
    sub->ws = ws;
    sub->next = sub->ch->local[sub->worker];
    if (sub->next)
        sub->next->prev = sub;
    sub->ch->local[sub->worker] = sub;
    sub->linked = 1;
    return 0;
}

static void on_message(sl_ws_t *ws, int binary, const uint8_t *data, size_t len)
{
    publish(sl_ws_data(ws), binary, data, len);
}

static void on_close(sl_ws_t *ws)
{
    sub_t *sub = sl_ws_data(ws);
    unsubscribe(sub);
    sl_free(sub);
}

static const sl_ws_app_t broadcast_app = {
    .name = "broadcast",
    .on_open = on_open,
    .on_message = on_message,
    .on_close = on_close,
};

void sl_ws_broadcast_start(sl_req_t *req, const sl_ws_route_t *r)
{
    pthread_once(&once, init_once);
    sl_worker_t *w = sl_worker_current();
    SL_ASSERT(w != NULL && w->id >= 0 && w->id < SL_WS_MAX_WORKERS);
    size_t plen = req->route->path_len;
    sl_str_t name = {req->path.p + plen, req->path.n - plen};
    if (req->path.n <= plen || name.n > SL_WS_MAX_CHANNEL) {
        sl_resp_error(req, 404, "channel name: 1 to 256 bytes after the route path");
        return;
    }
    if (sl_ws_check(req) != 0) {
        (void)sl_ws_accept(req, &r->opts, &broadcast_app, NULL); /* answers the refusal */
        return;
    }
    char key[16 + SL_WS_MAX_CHANNEL];
    int kl = snprintf(key, sizeof(key), "%d/", req->route->slot); /* stable across reloads */
    memcpy(key + kl, name.p, name.n);
    channel_t *ch = subscribe(r, key, (size_t)kl + name.n, w->id);
    if (!ch) {
        if (!atomic_exchange(&logged_full, 1))
            sl_log(SL_LOG_WARN, req->conn, "ws broadcast: max_channels or max_subscribers reached");
        sl_resp_header_add(req, "retry-after", "1");
        sl_resp_error(req, 503, "broadcast channel or subscriber limit reached");
        return;
    }
    inbox_ready(w->id);
    inbox_join(w->id);
    sub_t *sub = sl_calloc(1, sizeof(*sub));
    sub->ch = ch;
    sub->worker = w->id;
    (void)sl_ws_accept(req, &r->opts, &broadcast_app, sub);
}
