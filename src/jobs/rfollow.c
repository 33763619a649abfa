/* sluice - SPDX-License-Identifier: MIT
 *
 * Following mirrored jobs: one connection blocks in XREAD on the event
 * stream of every mirrored job that has not ended, plus the control
 * stream (cancels for jobs that run on another instance). Idle, it
 * waits in Redis: no polling. When the set changes while a read is
 * blocked, CLIENT UNBLOCK on the command connection ends that read at
 * once and a new one starts with the new set. Jobs thread only.
 */
#include "rstore.h"
#include "../log.h"
#include <stdio.h>

#define BLOCK_MS "60000"

static struct follow {
    struct ev_loop *loop;
    sl_jobs_rconn_t *blk;
    long long blk_id; /* CLIENT ID of blk, -1 until known */
    int reading;      /* an XREAD is outstanding */
    int restart;      /* the set changed during it: read again at once */
    char ctl_last[48];
    sl_jobs_job_t **v; /* followed mirrors, referenced */
    size_t n, cap;
    ev_timer unblock_retry;
} fw;

static void kick(void);

static void on_unblock(sl_jobs_rconn_t *rc, redisReply *r, void *priv)
{
    SL_UNUSED(rc);
    SL_UNUSED(priv);
    /* 0: the XREAD had not reached Redis yet; try again shortly rather
     * than leave the new job unread until the block times out. */
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 0 && fw.reading && fw.restart)
        ev_timer_start(fw.loop, &fw.unblock_retry);
}

static void send_unblock(void)
{
    char id[24];
    sl_rs_args_t a = {0};
    snprintf(id, sizeof(id), "%lld", fw.blk_id);
    sl_rs_arg(&a, "CLIENT");
    sl_rs_arg(&a, "UNBLOCK");
    sl_rs_arg(&a, id);
    sl_rs_send(sl_rs_cmd(), &a, on_unblock, NULL);
}

static void on_unblock_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(w);
    SL_UNUSED(revents);
    if (fw.reading && fw.restart && fw.blk_id >= 0)
        send_unblock();
}

static void on_ctl(const redisReply *entries)
{
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        snprintf(fw.ctl_last, sizeof(fw.ctl_last), "%s", e->element[0]->str);
        const redisReply *op = sl_rs_field(e->element[1], "op");
        const redisReply *id = sl_rs_field(e->element[1], "id");
        if (!op || !id || op->type != REDIS_REPLY_STRING || id->type != REDIS_REPLY_STRING ||
            strcmp(op->str, "cancel") != 0)
            continue;
        int expired;
        sl_jobs_job_t *job = sl_jobs_find((sl_str_t){id->str, id->len}, &expired);
        if (job && !job->mirror) {
            sl_log(SL_LOG_INFO, NULL, "job %s: cancelled from another instance", job->id);
            sl_jobs_cancel(job);
        }
        sl_jobs_job_unref(job);
    }
}

/* The job of stream key "<prefix>ev:<id>" from the table (a reference):
 * every followed job is there until it has ended. */
static sl_jobs_job_t *followed(const char *key, size_t n)
{
    char pre[160];
    int expired;
    sl_rs_key(pre, sizeof(pre), "ev", "");
    size_t pn = strlen(pre);
    if (n != pn + SL_JOBS_ID_LEN || memcmp(key, pre, pn) != 0)
        return NULL;
    return sl_jobs_find((sl_str_t){key + pn, SL_JOBS_ID_LEN}, &expired);
}

static void on_stream(const redisReply *s)
{
    char ctl[160];
    uint64_t seq;
    if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 || s->element[0]->type != REDIS_REPLY_STRING ||
        s->element[1]->type != REDIS_REPLY_ARRAY)
        return;
    sl_rs_key(ctl, sizeof(ctl), "ctl", NULL);
    if (strcmp(s->element[0]->str, ctl) == 0) {
        on_ctl(s->element[1]);
        return;
    }
    sl_jobs_job_t *job = followed(s->element[0]->str, s->element[0]->len);
    for (size_t i = 0; job && i < s->element[1]->elements; i++) {
        int r = sl_rs_put_entry(job, s->element[1]->element[i], &seq);
        if (r < 0)
            sl_log(SL_LOG_WARN, NULL, "job %s: a stream entry that is not an event; skipped", job->id);
        else if (r == 1 && !job->mirror)
            sl_jobs_remote_ended(job); /* a remote executor's job, made here */
        if (r == 1)
            break; /* nothing after the end counts */
    }
    sl_jobs_job_unref(job);
}

/* Ended mirrors have nothing more to read. */
static void prune(void)
{
    size_t k = 0;
    for (size_t i = 0; i < fw.n; i++) {
        if (fw.v[i]->ended)
            sl_jobs_job_unref(fw.v[i]);
        else
            fw.v[k++] = fw.v[i];
    }
    fw.n = k;
}

static void on_read(sl_jobs_rconn_t *rc, redisReply *r, void *priv)
{
    SL_UNUSED(rc);
    SL_UNUSED(priv);
    fw.reading = 0;
    if (!r)
        return; /* connection lost: on_state reads again once it is back */
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++)
            on_stream(r->element[i]);
    else if (r->type == REDIS_REPLY_ERROR)
        sl_log(SL_LOG_WARN, NULL, "redis: XREAD failed: %.*s", (int)r->len, r->str);
    prune();
    kick();
}

static void read_all(void)
{
    size_t argc = 6 + 2 * (fw.n + 1);
    const char **argv = sl_malloc(argc * sizeof(*argv));
    size_t *lens = sl_malloc(argc * sizeof(*lens));
    char *keys = sl_malloc((fw.n + 1) * 160), *ids = sl_malloc((fw.n + 1) * 32);
    const char *head[] = {"XREAD", "COUNT", "256", "BLOCK", BLOCK_MS, "STREAMS"};
    size_t a = 0;
    for (size_t i = 0; i < SL_ARRAY_LEN(head); i++)
        argv[a++] = head[i];
    sl_rs_key(keys, 160, "ctl", NULL);
    argv[a++] = keys;
    for (size_t i = 0; i < fw.n; i++) {
        sl_rs_key(keys + (i + 1) * 160, 160, "ev", fw.v[i]->id);
        argv[a++] = keys + (i + 1) * 160;
    }
    argv[a++] = fw.ctl_last[0] ? fw.ctl_last : "$";
    for (size_t i = 0; i < fw.n; i++) {
        snprintf(ids + i * 32, 32, "0-%llu", (unsigned long long)(fw.v[i]->next_seq - 1));
        argv[a++] = ids + i * 32;
    }
    for (size_t i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (sl_jobs_rconn_argv(fw.blk, on_read, NULL, (int)argc, argv, lens) == 0) {
        fw.reading = 1;
        fw.restart = 0;
    }
    sl_free(argv);
    sl_free(lens);
    sl_free(keys);
    sl_free(ids);
}

static void kick(void)
{
    if (!sl_jobs_rconn_up(fw.blk))
        return;
    if (!fw.reading) {
        read_all();
    } else if (!fw.restart && fw.blk_id >= 0) {
        fw.restart = 1;
        send_unblock();
    }
}

static void on_client_id(sl_jobs_rconn_t *rc, redisReply *r, void *priv)
{
    SL_UNUSED(rc);
    SL_UNUSED(priv);
    if (r && r->type == REDIS_REPLY_INTEGER)
        fw.blk_id = r->integer;
}

static void on_state(sl_jobs_rconn_t *rc, int up, void *arg)
{
    SL_UNUSED(arg);
    fw.reading = 0;
    fw.blk_id = -1;
    if (!up)
        return;
    sl_rs_args_t a = {0};
    sl_rs_arg(&a, "CLIENT");
    sl_rs_arg(&a, "ID");
    sl_rs_send(rc, &a, on_client_id, NULL);
    kick();
}

void sl_rs_follow(sl_jobs_job_t *job)
{
    if (fw.n == fw.cap) {
        fw.cap = fw.cap ? fw.cap * 2 : 16;
        fw.v = sl_realloc(fw.v, fw.cap * sizeof(*fw.v));
    }
    sl_jobs_job_ref(job);
    fw.v[fw.n++] = job;
    kick();
}

int sl_rs_follow_start(struct ev_loop *loop)
{
    memset(&fw, 0, sizeof(fw));
    fw.loop = loop;
    fw.blk_id = -1;
    ev_timer_init(&fw.unblock_retry, on_unblock_retry, 0.005, 0.);
    fw.blk = sl_jobs_rconn_new(loop, sl_rs_cfg(), "follower", 0, on_state, NULL);
    return 0;
}

void sl_rs_follow_stop(void)
{
    ev_timer_stop(fw.loop, &fw.unblock_retry);
    sl_jobs_rconn_free(fw.blk);
    for (size_t i = 0; i < fw.n; i++)
        sl_jobs_job_unref(fw.v[i]);
    sl_free(fw.v);
    memset(&fw, 0, sizeof(fw));
}
