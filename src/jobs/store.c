/* sluice - SPDX-License-Identifier: MIT
 *
 * The in-memory job store: a table sharded by job id, each shard a hash
 * under its own mutex, holding jobs, their retained events and their
 * subscribers; plus the Idempotency-Key map and the bounded set of expired
 * ids (tombstones: the job object stays in its shard in state "expired",
 * without events, until the FIFO pushes it out). Every reader copies event
 * references under the shard lock and formats outside it.
 */
#include "jobs_int.h"
#include "../config.h"
#include "../log.h"
#include "../req.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

typedef struct shard {
    pthread_mutex_t mu;
    sl_jobs_job_t **buckets;
    size_t nbuckets; /* power of two */
} shard_t;

static struct store {
    sl_jobs_cfg_t cfg;
    shard_t *shards;
    size_t nshards;
    atomic_long live;
    /* tombstones, jobs thread only */
    sl_jobs_job_t **tombs;
    size_t tomb_head, tomb_n;
} st;

static uint64_t hash_str(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
    return h;
}

static shard_t *shard_of(const char *id, size_t n, unsigned *idx, size_t *bucket)
{
    uint64_t h = hash_str(id, n);
    *idx = (unsigned)(h % st.nshards);
    shard_t *s = &st.shards[*idx];
    *bucket = (size_t)(h >> 16) & (s->nbuckets - 1);
    return s;
}

static void make_id(char out[SL_JOBS_ID_LEN + 1])
{
    static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; /* Crockford */
    uint8_t r[10];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        sl_assert_fail("getrandom", __FILE__, __LINE__);
    /* 48-bit time then 80 random bits: ids sort by creation (ULID). */
    uint64_t t = sl_wall_ms();
    for (int i = 9; i >= 0; i--) {
        out[i] = b32[t & 31];
        t >>= 5;
    }
    uint64_t hi = 0, lo = 0;
    for (int i = 0; i < 5; i++)
        hi = (hi << 8) | r[i];
    for (int i = 5; i < 10; i++)
        lo = (lo << 8) | r[i];
    for (int i = 17; i >= 10; i--) {
        out[i] = b32[hi & 31];
        hi >>= 5;
    }
    for (int i = 25; i >= 18; i--) {
        out[i] = b32[lo & 31];
        lo >>= 5;
    }
    out[SL_JOBS_ID_LEN] = 0;
}

int sl_jobs_store_init(const sl_jobs_cfg_t *cfg)
{
    memset(&st, 0, sizeof(st));
    st.cfg = *cfg;
    st.nshards = (size_t)cfg->shards;
    st.shards = sl_calloc(st.nshards, sizeof(shard_t));
    size_t per = (size_t)(cfg->max_jobs + cfg->max_tombstones) / st.nshards + 1, nb = 16;
    while (nb < per)
        nb <<= 1;
    for (size_t i = 0; i < st.nshards; i++) {
        pthread_mutex_init(&st.shards[i].mu, NULL);
        st.shards[i].nbuckets = nb;
        st.shards[i].buckets = sl_calloc(nb, sizeof(sl_jobs_job_t *));
    }
    sl_jobs_idem_init((size_t)cfg->max_jobs);
    sl_jobs_budget_init((long long)cfg->max_retained_bytes);
    st.tombs = sl_calloc((size_t)cfg->max_tombstones + 1, sizeof(sl_jobs_job_t *));
    return 0;
}

static void drop_events(sl_jobs_job_t *job)
{
    for (size_t i = 0; i < job->ring_n; i++)
        sl_jobs_event_unref(job->ring[(job->ring_head + i) % job->ring_cap]);
    job->ring_n = 0;
    sl_jobs_budget_add(-(long long)job->retained);
    job->retained = 0;
}

/* Drop the oldest event, remembering how far the loss goes (shard lock). */
static void drop_oldest(sl_jobs_job_t *job)
{
    sl_jobs_event_t *ev = job->ring[job->ring_head];
    job->ring_head = (job->ring_head + 1) % job->ring_cap;
    job->ring_n--;
    job->retained -= ev->len + SL_JOBS_EVENT_OVERHEAD;
    sl_jobs_budget_add(-(long long)(ev->len + SL_JOBS_EVENT_OVERHEAD));
    job->dropped_upto = ev->seq;
    sl_jobs_event_unref(ev);
    sl_jobs_stat_dropped();
}

/* All but the newest event (for a finished job: its END, so a reader is
 * told the dropped range and still sees the end). */
static void shed_locked(sl_jobs_job_t *job)
{
    while (job->ring_n > 1)
        drop_oldest(job);
}

void sl_jobs_store_shed(sl_jobs_job_t *job)
{
    shard_t *s = &st.shards[job->shard];
    pthread_mutex_lock(&s->mu);
    shed_locked(job);
    pthread_mutex_unlock(&s->mu);
}

void sl_jobs_job_free(sl_jobs_job_t *job)
{
    SL_ASSERT(job->subs == NULL);
    drop_events(job);
    sl_free(job->ring);
    if (job->stdin_fd >= 0)
        close(job->stdin_fd);
    sl_free(job->params);
    sl_free(job->route);
    sl_free(job->method);
    sl_free(job->path);
    sl_free(job->traceparent);
    sl_free(job->idem);
    sl_free(job->idem_fp);
    sl_free(job->dup);
    sl_free(job->headers);
    sl_free(job->recorded);
    sl_free(job->xname);
    sl_free(job->ctype);
    if (job->cfg)
        sl_config_unref(job->cfg);
    sl_free(job);
}

void sl_jobs_store_dispose(void)
{
    if (!st.shards)
        return;
    sl_jobs_budget_clear();
    for (size_t i = 0; i < st.nshards; i++) {
        shard_t *s = &st.shards[i];
        for (size_t b = 0; b < s->nbuckets; b++) {
            for (sl_jobs_job_t *j = s->buckets[b], *next; j; j = next) {
                next = j->hnext;
                sl_jobs_job_unref(j);
            }
        }
        sl_free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    sl_jobs_idem_dispose();
    sl_jobs_owners_clear();
    sl_free(st.shards);
    sl_free(st.tombs);
    memset(&st, 0, sizeof(st));
}

void sl_jobs_job_ref(sl_jobs_job_t *job)
{
    atomic_fetch_add(&job->refs, 1);
}

void sl_jobs_job_unref(sl_jobs_job_t *job)
{
    if (job && atomic_fetch_sub(&job->refs, 1) == 1)
        sl_jobs_job_free(job);
}

void sl_jobs_event_unref(sl_jobs_event_t *ev)
{
    if (ev && atomic_fetch_sub(&ev->refs, 1) == 1)
        sl_free(ev);
}

static char *dup_str(sl_str_t s)
{
    return sl_strndup(s.p ? s.p : "", s.n);
}

/* "name: value\r\n" per field; the request head was bounded already. */
static char *copy_headers(const sl_jobs_spec_t *spec)
{
    size_t n = 1;
    for (size_t i = 0; i < spec->nheaders; i++)
        n += spec->headers[i].name.n + spec->headers[i].value.n + 4;
    char *o = sl_malloc(n), *q = o;
    for (size_t i = 0; i < spec->nheaders; i++) {
        const sl_header_t *h = &spec->headers[i];
        memcpy(q, h->name.p, h->name.n);
        q += h->name.n;
        memcpy(q, ": ", 2);
        memcpy(q + 2, h->value.p, h->value.n);
        q += 2 + h->value.n;
        memcpy(q, "\r\n", 2);
        q += 2;
    }
    *q = '\0';
    return o;
}

/* A value longer than the bound is cut before the character that crosses
 * it, so a UTF-8 sequence is never split (the status JSON needs whole
 * characters; at most 3 continuation bytes are stepped over). */
static size_t rec_len(sl_str_t v)
{
    size_t n = SL_JOBS_REC_VALUE_MAX;
    if (v.n <= n)
        return v.n;
    for (int k = 0; k < 3 && n > 0 && ((uint8_t)v.p[n] & 0xC0) == 0x80; k++)
        n--;
    return n;
}

static char *put_str(char *q, sl_str_t *dst, const char *p, size_t n)
{
    memcpy(q, p, n);
    q[n] = '\0';
    *dst = (sl_str_t){q, n};
    return q + n + 1;
}

/* One allocation holds the array and its NUL-terminated strings. */
static void copy_recorded(sl_jobs_job_t *job, const sl_jobs_spec_t *spec)
{
    size_t n = SL_MIN(spec->nrecorded, (size_t)SL_JOBS_REC_MAX);
    size_t bytes = n * sizeof(sl_header_t);
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        bytes += spec->recorded[i].name.n + rec_len(spec->recorded[i].value) + 2;
    sl_header_t *v = sl_malloc(bytes);
    char *q = (char *)(v + n);
    for (size_t i = 0; i < n; i++) {
        const sl_header_t *h = &spec->recorded[i];
        q = put_str(q, &v[i].name, h->name.p, h->name.n);
        q = put_str(q, &v[i].value, h->value.p, rec_len(h->value));
    }
    job->recorded = v;
    job->nrecorded = n;
}

static sl_jobs_job_t *job_new(const sl_jobs_spec_t *spec, void *params)
{
    sl_jobs_job_t *job = sl_calloc(1, sizeof(*job));
    atomic_init(&job->refs, 2); /* the table's and the caller's */
    make_id(job->id);
    if (spec->owner)
        snprintf(job->owner, sizeof(job->owner), "%s", spec->owner);
    job->exec = spec->exec;
    job->cfg = spec->cfg;
    if (job->cfg)
        sl_config_ref(job->cfg);
    job->route = sl_strdup(spec->route ? spec->route : "");
    job->method = dup_str(spec->method);
    job->path = dup_str(spec->path);
    job->traceparent = dup_str(spec->traceparent);
    job->params = params;
    if (spec->exec && spec->exec->ops && spec->exec->ops->keeps_headers)
        job->headers = copy_headers(spec);
    job->remote = spec->exec && spec->exec->ops && spec->exec->ops->remote;
    copy_recorded(job, spec);
    job->stdin_fd = -1;
    job->state = SL_JOBS_QUEUED;
    job->created_ms = sl_wall_ms();
    job->exit_code = -1;
    job->next_seq = 1;
    atomic_init(&job->persist, 1);
    return job;
}

static void insert(sl_jobs_job_t *job)
{
    sl_jobs_stat_submitted();
    size_t b;
    shard_t *s = shard_of(job->id, SL_JOBS_ID_LEN, &job->shard, &b);
    pthread_mutex_lock(&s->mu);
    job->hnext = s->buckets[b];
    s->buckets[b] = job;
    pthread_mutex_unlock(&s->mu);
}

/* Lookup and insert happen under the idempotency lock so two requests
 * with the same key cannot both start a job. */
int sl_jobs_store_create(const sl_jobs_spec_t *spec, void *params, sl_jobs_job_t **out,
                         int *existing)
{
    char *key = NULL;
    *existing = 0;
    if (spec->idem_key.n) {
        const char *owner = spec->owner ? spec->owner : "";
        key = sl_malloc(strlen(owner) + strlen(spec->route) + spec->idem_key.n + 3);
        sprintf(key, "%s\n%s\n%.*s", owner, spec->route, (int)spec->idem_key.n, spec->idem_key.p);
        sl_jobs_idem_lock();
        int same = 0;
        sl_jobs_job_t *prev = sl_jobs_idem_find(key, spec->idem_fp, &same);
        if (prev) {
            if (same) {
                sl_jobs_job_ref(prev);
                *out = prev;
                *existing = 1;
            }
            sl_jobs_idem_unlock();
            sl_free(key);
            return same ? 0 : SL_ECONFLICT;
        }
    }
    int rv = 0;
    if (sl_jobs_budget_full()) {
        rv = SL_ENOMEM;
    } else if (atomic_fetch_add(&st.live, 1) >= st.cfg.max_jobs) {
        atomic_fetch_sub(&st.live, 1);
        rv = SL_ETOOBIG;
    } else if (sl_jobs_owners_take(spec->owner, (long)st.cfg.max_jobs_per_owner) != 0) {
        atomic_fetch_sub(&st.live, 1);
        rv = SL_ELIMIT;
    }
    if (rv != 0) {
        if (key) {
            sl_jobs_idem_unlock();
            sl_free(key);
        }
        return rv;
    }
    sl_jobs_job_t *job = job_new(spec, params);
    if (st.cfg.store.redis)
        atomic_store(&job->persist, 0); /* written by the jobs thread (CMD_START) */
    if (key) {
        sl_jobs_idem_insert(key, spec->idem_fp, job);
        job->idem = key;
        job->idem_fp = sl_strdup(spec->idem_fp ? spec->idem_fp : "");
        if (spec->body_fp) /* before the jobs thread can write the key */
            snprintf(job->body_fp, sizeof(job->body_fp), "%s", spec->body_fp);
        sl_jobs_idem_unlock();
    }
    insert(job);
    *out = job;
    return 0;
}

static sl_jobs_job_t *lookup(shard_t *s, size_t b, sl_str_t id)
{
    for (sl_jobs_job_t *j = s->buckets[b]; j; j = j->hnext)
        if (id.n == SL_JOBS_ID_LEN && memcmp(j->id, id.p, id.n) == 0)
            return j;
    return NULL;
}

sl_jobs_job_t *sl_jobs_find(sl_str_t id, int *expired)
{
    unsigned idx;
    size_t b;
    *expired = 0;
    if (id.n != SL_JOBS_ID_LEN || !st.shards)
        return NULL;
    shard_t *s = shard_of(id.p, id.n, &idx, &b);
    pthread_mutex_lock(&s->mu);
    sl_jobs_job_t *j = lookup(s, b, id);
    if (j && j->state == SL_JOBS_EXPIRED) {
        *expired = 1;
        j = NULL;
    }
    if (j)
        sl_jobs_job_ref(j);
    pthread_mutex_unlock(&s->mu);
    return j;
}

const char *sl_jobs_job_id(const sl_jobs_job_t *job)
{
    return job->id;
}

void sl_jobs_set_body_fp(sl_jobs_job_t *job, const char *fp)
{
    shard_t *s = &st.shards[job->shard];
    pthread_mutex_lock(&s->mu);
    snprintf(job->body_fp, sizeof(job->body_fp), "%s", fp);
    pthread_mutex_unlock(&s->mu);
    if (st.cfg.store.redis && job->idem && !job->mirror)
        sl_jobs_lifecycle_body_fp(job); /* replays on other instances compare with it */
}

int sl_jobs_get_body_fp(sl_jobs_job_t *job, char *out)
{
    shard_t *s = &st.shards[job->shard];
    pthread_mutex_lock(&s->mu);
    memcpy(out, job->body_fp, sizeof(job->body_fp));
    pthread_mutex_unlock(&s->mu);
    return out[0] != '\0';
}

const char *sl_jobs_job_owner(const sl_jobs_job_t *job)
{
    return job->owner;
}

void sl_jobs_job_info(sl_jobs_job_t *job, sl_jobs_info_t *o)
{
    shard_t *s = &st.shards[job->shard];
    o->id = job->id;
    o->route = job->route;
    o->executor = job->exec ? job->exec->name : job->xname ? job->xname : "";
    o->method = job->method;
    o->path = job->path;
    o->traceparent = job->traceparent;
    o->content_type = job->exec    ? job->exec->content_type
                      : job->ctype ? job->ctype
                                   : "application/octet-stream";
    o->recorded = job->recorded;
    o->nrecorded = job->nrecorded;
    pthread_mutex_lock(&s->mu);
    o->state = job->state;
    o->created_ms = job->created_ms;
    o->started_ms = job->started_ms;
    o->ended_ms = job->ended_ms;
    o->exit_code = job->exit_code;
    o->first_seq = job->ring_n ? job->ring[job->ring_head]->seq : job->next_seq;
    o->last_seq = job->next_seq - 1;
    o->dropped_upto = job->dropped_upto;
    o->data_bytes = job->data_bytes;
    o->delivery_status = job->delivery_status;
    o->delivery_attempts = job->delivery_attempts;
    memcpy(o->delivery_error, job->delivery_error, sizeof(o->delivery_error));
    pthread_mutex_unlock(&s->mu);
}

const sl_jobs_exec_def_t *sl_jobs_job_exec(const sl_jobs_job_t *job)
{
    return job->exec;
}

void sl_jobs_set_delivery(sl_jobs_job_t *job, int status, int attempts, const char *error)
{
    shard_t *s = &st.shards[job->shard];
    pthread_mutex_lock(&s->mu);
    job->delivery_status = status;
    job->delivery_attempts = attempts;
    snprintf(job->delivery_error, sizeof(job->delivery_error), "%s", error ? error : "");
    pthread_mutex_unlock(&s->mu);
}

/* Keep the newest event always, then drop from the head while over the
 * bound, remembering how far the loss goes. */
static void trim(sl_jobs_job_t *job)
{
    while (job->ring_n > 1 && job->retained > (size_t)st.cfg.retain_bytes)
        drop_oldest(job);
}

static void ring_push(sl_jobs_job_t *job, sl_jobs_event_t *ev)
{
    if (job->ring_n == job->ring_cap) {
        size_t cap = job->ring_cap ? job->ring_cap * 2 : 16;
        sl_jobs_event_t **r = sl_malloc(cap * sizeof(*r));
        for (size_t i = 0; i < job->ring_n; i++)
            r[i] = job->ring[(job->ring_head + i) % job->ring_cap];
        sl_free(job->ring);
        job->ring = r;
        job->ring_cap = cap;
        job->ring_head = 0;
    }
    job->ring[(job->ring_head + job->ring_n) % job->ring_cap] = ev;
    job->ring_n++;
    job->retained += ev->len + SL_JOBS_EVENT_OVERHEAD;
    sl_jobs_budget_add((long long)(ev->len + SL_JOBS_EVENT_OVERHEAD));
}

static sl_jobs_event_t *event_new(sl_jobs_ev_type_t type, const void *data, size_t len)
{
    sl_jobs_event_t *ev = sl_malloc(sizeof(*ev) + len);
    sl_jobs_stat_event();
    atomic_init(&ev->refs, 1);
    ev->type = type;
    ev->len = len;
    if (len)
        memcpy(ev->data, data, len);
    return ev;
}

/* Shard lock held: ev (with its seq) joins the ring, readers are woken. */
static void append_locked(sl_jobs_job_t *job, sl_jobs_event_t *ev)
{
    job->next_seq = ev->seq + 1;
    if (ev->type == SL_JOBS_EV_DATA)
        job->data_bytes += ev->len;
    ring_push(job, ev);
    trim(job);
    for (sl_jobs_sub_t *sub = job->subs; sub; sub = sub->next)
        sl_jobs_notify(sub);
}

/* The job is in Redis, so its events and end are written there too (a
 * job Redis never took ends here only). */
static int in_redis(const sl_jobs_job_t *job)
{
    return st.cfg.store.redis && !job->mirror && sl_jobs_persisted(job) == 1;
}

/* A remote job's events are authored in Redis (a mirror's too: a cancel
 * from here writes its end there). */
static int authored_in_redis(const sl_jobs_job_t *job)
{
    return job->remote && (job->mirror || in_redis(job));
}

uint64_t sl_jobs_emit(sl_jobs_job_t *job, sl_jobs_ev_type_t type, const void *data, size_t len)
{
    if (authored_in_redis(job)) { /* Redis orders it; the follower brings it back */
        sl_jobs_rstore_append(job, type, data, len);
        return 0;
    }
    sl_jobs_event_t *ev = event_new(type, data, len);
    shard_t *s = &st.shards[job->shard];
    pthread_mutex_lock(&s->mu);
    if (job->ended) {
        pthread_mutex_unlock(&s->mu);
        sl_free(ev);
        return 0;
    }
    ev->seq = job->next_seq;
    append_locked(job, ev);
    uint64_t seq = ev->seq;
    int copy = in_redis(job);
    if (copy)
        atomic_fetch_add(&ev->refs, 1); /* trim may drop it once we unlock */
    pthread_mutex_unlock(&s->mu);
    if (copy) {
        sl_jobs_rstore_event(job, ev);
        sl_jobs_event_unref(ev);
    }
    sl_jobs_budget_enforce(job);
    return seq;
}

/* Final state and exit code go in with the END event, under one lock, so
 * a reader never sees END with a non-final state. */
size_t sl_jobs_end_body(char *out, size_t cap, sl_jobs_state_t state, int exit_code)
{
    int n = snprintf(out, cap, "{\"state\":\"%s\",\"exit_code\":%d}", sl_jobs_state_name(state),
                     exit_code);
    return n > 0 ? SL_MIN((size_t)n, cap - 1) : 0;
}

void sl_jobs_store_end(sl_jobs_job_t *job, sl_jobs_state_t state, int exit_code)
{
    char body[SL_JOBS_END_BODY_MAX];
    size_t n = sl_jobs_end_body(body, sizeof(body), state, exit_code);
    shard_t *s = &st.shards[job->shard];
    pthread_mutex_lock(&s->mu);
    job->state = state;
    job->exit_code = exit_code;
    job->ended_ms = sl_wall_ms();
    pthread_mutex_unlock(&s->mu);
    sl_jobs_stat_ended(state);
    sl_jobs_emit(job, SL_JOBS_EV_END, body, n);
    if (authored_in_redis(job))
        return; /* ended once the follower reads it back */
    pthread_mutex_lock(&s->mu);
    job->ended = 1;
    pthread_mutex_unlock(&s->mu);
    if (in_redis(job))
        sl_jobs_rstore_end(job);
    sl_jobs_budget_ended(job);
    sl_jobs_budget_enforce(NULL);
}

void sl_jobs_set_running(sl_jobs_job_t *job)
{
    shard_t *s = &st.shards[job->shard];
    pthread_mutex_lock(&s->mu);
    job->state = SL_JOBS_RUNNING;
    job->started_ms = sl_wall_ms();
    pthread_mutex_unlock(&s->mu);
}

size_t sl_jobs_read(sl_jobs_job_t *job, uint64_t after, sl_jobs_event_t **out, size_t max,
                    sl_jobs_read_t *r)
{
    size_t n = 0;
    memset(r, 0, sizeof(*r));
    shard_t *s = &st.shards[job->shard];
    pthread_mutex_lock(&s->mu);
    uint64_t first = job->ring_n ? job->ring[job->ring_head]->seq : job->next_seq;
    /* END published is the end, also before store_end sets the flag. */
    r->ended = job->ended || (job->ring_n &&
                              job->ring[(job->ring_head + job->ring_n - 1) % job->ring_cap]->type ==
                                  SL_JOBS_EV_END);
    if (after + 1 < first && after + 1 <= job->dropped_upto) {
        r->dropped_from = after + 1;
        r->dropped_to = first - 1;
    } else if (after + 1 >= first) {
        for (size_t i = (size_t)(after + 1 - first); i < job->ring_n && n < max; i++) {
            sl_jobs_event_t *ev = job->ring[(job->ring_head + i) % job->ring_cap];
            atomic_fetch_add(&ev->refs, 1);
            out[n++] = ev;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

sl_jobs_sub_t *sl_jobs_subscribe(sl_jobs_job_t *job, struct ev_loop *loop, int slot,
                                 void (*cb)(void *arg), void *arg)
{
    sl_jobs_sub_t *sub = sl_calloc(1, sizeof(*sub));
    sub->job = job;
    sub->cb = cb;
    sub->arg = arg;
    sub->inbox = sl_jobs_inbox_get(loop, slot);
    sl_jobs_job_ref(job);
    shard_t *s = &st.shards[job->shard];
    pthread_mutex_lock(&s->mu);
    sub->next = job->subs;
    if (job->subs)
        job->subs->prev = sub;
    job->subs = sub;
    pthread_mutex_unlock(&s->mu);
    sl_jobs_stat_subscribers(1);
    return sub;
}

/* After the unlink no producer can queue the sub again; then it leaves
 * its inbox, so its callback can never run after this returns. */
void sl_jobs_unsubscribe(sl_jobs_sub_t *sub)
{
    if (!sub)
        return;
    sl_jobs_job_t *job = sub->job;
    shard_t *s = &st.shards[job->shard];
    pthread_mutex_lock(&s->mu);
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        job->subs = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    if (job->state == SL_JOBS_EXPIRED && !job->subs)
        shed_locked(job); /* the last reader of an expired job is gone */
    pthread_mutex_unlock(&s->mu);
    sl_jobs_inbox_unqueue(sub);
    sl_free(sub);
    sl_jobs_stat_subscribers(-1);
    sl_jobs_job_unref(job);
}

static void unlink_job(sl_jobs_job_t *job)
{
    size_t b;
    unsigned idx;
    shard_t *s = shard_of(job->id, SL_JOBS_ID_LEN, &idx, &b);
    pthread_mutex_lock(&s->mu);
    for (sl_jobs_job_t **pp = &s->buckets[b]; *pp; pp = &(*pp)->hnext) {
        if (*pp == job) {
            *pp = job->hnext;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    sl_jobs_job_unref(job);
}

static void tomb_push(sl_jobs_job_t *job)
{
    size_t cap = (size_t)st.cfg.max_tombstones + 1;
    st.tombs[(st.tomb_head + st.tomb_n) % cap] = job;
    st.tomb_n++;
    /* The oldest expired id is forgotten: it answers 404 from now on. */
    while (st.tomb_n > (size_t)st.cfg.max_tombstones) {
        sl_jobs_job_t *old = st.tombs[st.tomb_head];
        st.tomb_head = (st.tomb_head + 1) % cap;
        st.tomb_n--;
        unlink_job(old);
    }
}

#define SWEEP_BATCH 256

/* Expired jobs lose their events at once; the object stays as a tombstone.
 * Work is collected under a shard lock and finished outside it. */
void sl_jobs_store_sweep(uint64_t now_ms)
{
    uint64_t ttl = (uint64_t)st.cfg.ttl_s * 1000;
    for (size_t i = 0; i < st.nshards; i++) {
        sl_jobs_job_t *batch[SWEEP_BATCH];
        size_t n = 0;
        shard_t *s = &st.shards[i];
        pthread_mutex_lock(&s->mu);
        for (size_t b = 0; b < s->nbuckets && n < SWEEP_BATCH; b++) {
            for (sl_jobs_job_t *j = s->buckets[b]; j && n < SWEEP_BATCH; j = j->hnext) {
                /* A job expires at its TTL even while read: its slot and
                 * its id go (410), readers already attached keep the
                 * events until they have read to the end or leave
                 * (sl_jobs_unsubscribe sheds them then). */
                if (!j->ended || j->state == SL_JOBS_EXPIRED || j->ended_ms + ttl > now_ms)
                    continue;
                j->state = SL_JOBS_EXPIRED;
                if (!j->subs)
                    shed_locked(j);
                batch[n++] = j;
            }
        }
        pthread_mutex_unlock(&s->mu);
        for (size_t k = 0; k < n; k++) {
            sl_jobs_budget_forget(batch[k]);
            atomic_fetch_sub(&st.live, 1);
            if (!batch[k]->mirror) /* a mirror's owner counts where it runs */
                sl_jobs_owners_release(batch[k]->owner);
            if (batch[k]->idem)
                sl_jobs_idem_remove(batch[k]->idem, batch[k]);
            tomb_push(batch[k]);
        }
    }
}

size_t sl_jobs_store_all(sl_jobs_job_t ***out)
{
    size_t n = 0, cap = 64;
    sl_jobs_job_t **v = sl_malloc(cap * sizeof(*v));
    for (size_t i = 0; i < st.nshards; i++) {
        shard_t *s = &st.shards[i];
        pthread_mutex_lock(&s->mu);
        for (size_t b = 0; b < s->nbuckets; b++) {
            for (sl_jobs_job_t *j = s->buckets[b]; j; j = j->hnext) {
                if (n == cap) {
                    cap *= 2;
                    v = sl_realloc(v, cap * sizeof(*v));
                }
                sl_jobs_job_ref(j);
                v[n++] = j;
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
    *out = v;
    return n;
}

/* Keep the max smallest ids above `after` in a sorted array. */
static void keep_sorted(sl_jobs_job_t **out, size_t *n, size_t max, sl_jobs_job_t *j)
{
    size_t pos = *n;
    while (pos > 0 && strcmp(out[pos - 1]->id, j->id) > 0)
        pos--;
    if (pos >= max)
        return;
    if (*n == max)
        sl_jobs_job_unref(out[--(*n)]);
    memmove(&out[pos + 1], &out[pos], (*n - pos) * sizeof(*out));
    sl_jobs_job_ref(j);
    out[pos] = j;
    (*n)++;
}

size_t sl_jobs_list(int state, const char *route, const char *owner, sl_str_t after,
                    sl_jobs_job_t **out, size_t max)
{
    size_t n = 0;
    char a[SL_JOBS_ID_LEN + 1] = "";
    if (after.n)
        snprintf(a, sizeof(a), "%.*s", (int)SL_MIN(after.n, (size_t)SL_JOBS_ID_LEN), after.p);
    for (size_t i = 0; i < st.nshards && max; i++) {
        shard_t *s = &st.shards[i];
        pthread_mutex_lock(&s->mu);
        for (size_t b = 0; b < s->nbuckets; b++) {
            for (sl_jobs_job_t *j = s->buckets[b]; j; j = j->hnext) {
                if (j->state == SL_JOBS_EXPIRED || (state >= 0 && (int)j->state != state))
                    continue;
                if ((route && strcmp(route, j->route) != 0) || strcmp(j->id, a) <= 0 ||
                    (owner && strcmp(owner, j->owner) != 0))
                    continue;
                keep_sorted(out, &n, max, j);
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
    return n;
}

/* ---- mirrors of jobs held in Redis ---- */

int sl_jobs_persisted(const sl_jobs_job_t *job)
{
    return atomic_load(&((sl_jobs_job_t *)job)->persist);
}

int sl_jobs_dup_of(const sl_jobs_job_t *job, sl_jobs_dup_t *out)
{
    memset(out, 0, sizeof(*out));
    if (sl_jobs_persisted(job) != SL_JOBS_PERSIST_DUP || !job->dup)
        return SL_EINVAL;
    /* "id fp [body_fp]", as rstore.c wrote it */
    char fp[SL_JOBS_FP_LEN + 1] = "";
    sscanf(job->dup, "%26s %64s %64s", out->id, fp, out->body_fp);
    out->same = job->idem_fp && strcmp(fp, job->idem_fp) == 0;
    return 0;
}

void sl_jobs_store_forget(sl_jobs_job_t *job)
{
    atomic_fetch_sub(&st.live, 1);
    sl_jobs_owners_release(job->owner);
    if (job->idem)
        sl_jobs_idem_remove(job->idem, job);
    unlink_job(job);
}

void sl_jobs_store_persisted(sl_jobs_job_t *job, int result)
{
    shard_t *s = &st.shards[job->shard];
    pthread_mutex_lock(&s->mu);
    atomic_store(&job->persist, result);
    for (sl_jobs_sub_t *sub = job->subs; sub; sub = sub->next)
        sl_jobs_notify(sub);
    pthread_mutex_unlock(&s->mu);
}

static const char *nz(const char *v)
{
    return v ? v : "";
}

/* The recorded fields from their JSON object, through copy_recorded. */
static void mirror_recorded(sl_jobs_job_t *job, json_t *o)
{
    sl_header_t v[SL_JOBS_REC_MAX];
    sl_jobs_spec_t spec = {.recorded = v};
    const char *k;
    json_t *val;
    json_object_foreach(o, k, val)
    {
        if (spec.nrecorded == SL_JOBS_REC_MAX || !json_is_string(val))
            continue;
        v[spec.nrecorded].name = (sl_str_t){k, strlen(k)};
        v[spec.nrecorded++].value = (sl_str_t){json_string_value(val), json_string_length(val)};
    }
    copy_recorded(job, &spec);
}

sl_jobs_job_t *sl_jobs_store_mirror_new(const sl_jobs_mirror_meta_t *m)
{
    sl_jobs_spec_t spec = {
        .route = m->route,
        .owner = m->owner,
        .method = {nz(m->method), strlen(nz(m->method))},
        .path = {nz(m->path), strlen(nz(m->path))},
        .traceparent = {nz(m->traceparent), strlen(nz(m->traceparent))},
    };
    sl_jobs_job_t *job = job_new(&spec, NULL);
    atomic_init(&job->refs, 1); /* the caller's; the table's comes with adopt */
    snprintf(job->id, sizeof(job->id), "%s", m->id);
    job->mirror = 1;
    job->remote = m->remote;
    job->xname = sl_strdup(nz(m->executor));
    job->ctype = sl_strdup(m->content_type && *m->content_type ? m->content_type
                                                               : "application/octet-stream");
    if (m->recorded)
        mirror_recorded(job, m->recorded);
    /* The state moves with the events read (put); the times are the
     * creator's. */
    job->created_ms = m->created_ms;
    job->started_ms = m->started_ms;
    return job;
}

sl_jobs_job_t *sl_jobs_store_adopt(sl_jobs_job_t *job)
{
    size_t b;
    shard_t *s = shard_of(job->id, SL_JOBS_ID_LEN, &job->shard, &b);
    pthread_mutex_lock(&s->mu);
    sl_jobs_job_t *have = lookup(s, b, (sl_str_t){job->id, SL_JOBS_ID_LEN});
    if (have) {
        sl_jobs_job_ref(have);
        pthread_mutex_unlock(&s->mu);
        return have;
    }
    if (atomic_fetch_add(&st.live, 1) >= st.cfg.max_jobs) {
        atomic_fetch_sub(&st.live, 1);
        pthread_mutex_unlock(&s->mu);
        return NULL;
    }
    sl_jobs_job_ref(job); /* the table's */
    job->hnext = s->buckets[b];
    s->buckets[b] = job;
    job->adopted = 1;
    pthread_mutex_unlock(&s->mu);
    if (job->ended)
        sl_jobs_budget_ended(job);
    sl_jobs_job_ref(job);
    return job;
}

/* The END event's {"state":...,"exit_code":...}. */
static void mirror_end(sl_jobs_job_t *job, const void *data, size_t len)
{
    json_t *o = json_loadb(data, len, 0, NULL);
    json_t *st_ = json_object_get(o, "state"), *code = json_object_get(o, "exit_code");
    int state =
        json_is_string(st_)
            ? sl_jobs_state_parse((sl_str_t){json_string_value(st_), json_string_length(st_)})
            : -1;
    job->state = state >= (int)SL_JOBS_SUCCEEDED && state < (int)SL_JOBS_EXPIRED
                     ? (sl_jobs_state_t)state
                     : SL_JOBS_FAILED;
    job->exit_code = json_is_integer(code) ? (int)json_integer_value(code) : -1;
    job->ended_ms = sl_wall_ms();
    json_decref(o);
}

int sl_jobs_store_put(sl_jobs_job_t *job, uint64_t seq, sl_jobs_ev_type_t type, const void *data,
                      size_t len)
{
    shard_t *s = &st.shards[job->shard];
    pthread_mutex_lock(&s->mu);
    if (job->ended || seq < job->next_seq) { /* read twice (a reconnect) */
        int ended = job->ended;
        pthread_mutex_unlock(&s->mu);
        return ended;
    }
    sl_jobs_event_t *ev = event_new(type, data, len);
    ev->seq = seq;
    if (seq > job->next_seq) { /* trimmed in Redis before we read it */
        while (job->ring_n)
            drop_oldest(job);
        job->dropped_upto = seq - 1;
    }
    if (type == SL_JOBS_EV_STARTED && job->state == SL_JOBS_QUEUED) {
        job->state = SL_JOBS_RUNNING;
        if (!job->started_ms)
            job->started_ms = sl_wall_ms();
    } else if (type == SL_JOBS_EV_END) {
        mirror_end(job, data, len);
        job->ended = 1;
    }
    append_locked(job, ev);
    int ended = job->ended;
    pthread_mutex_unlock(&s->mu);
    if (ended && (job->adopted || !job->mirror)) /* else adopt puts it in line */
        sl_jobs_budget_ended(job);
    sl_jobs_budget_enforce(NULL);
    return ended;
}
