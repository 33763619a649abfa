/* sluice - SPDX-License-Identifier: MIT
 *
 * The Redis store (docs/redis.md): every job made here is written to
 * Redis as it goes (a hash for its metadata, a stream for its events with
 * entry id 0-<seq>, so Last-Event-ID means the same on every instance),
 * and a job made by another instance is found there and mirrored into
 * the local table: its retained events are paged in with XRANGE, then
 * rfollow.c follows the stream. Local readers always read the local
 * table, so a thousand subscribers of one job cost one stream read.
 *
 * Everything here runs on the jobs thread, over one pipelined connection
 * (rconn.c); workers never touch Redis. Writes are in event order (one
 * connection, one thread). A new job is answered only once its hash is
 * stored (sl_jobs_persisted), so an id a client was given can be found
 * on any instance.
 */
#include "rstore.h"
#include "../log.h"
#include "../req.h"
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static struct rs {
    struct ev_loop *loop;
    const sl_jobs_cfg_t *cfg;
    sl_jobs_rconn_t *cmd;
    char instance[96];
    ev_tstamp last_error_log;
} rs;

/* ---- helpers shared with rfollow.c ---- */

void sl_rs_arg_bin(sl_rs_args_t *a, const void *p, size_t n)
{
    SL_ASSERT(a->n < SL_RS_MAX_ARGS);
    a->v[a->n] = p;
    a->l[a->n++] = n;
}

void sl_rs_arg(sl_rs_args_t *a, const char *s)
{
    sl_rs_arg_bin(a, s, strlen(s));
}

void sl_rs_arg_u64(sl_rs_args_t *a, uint64_t v)
{
    SL_ASSERT(a->nn < (int)SL_ARRAY_LEN(a->nums));
    snprintf(a->nums[a->nn], sizeof(a->nums[0]), "%llu", (unsigned long long)v);
    sl_rs_arg(a, a->nums[a->nn++]);
}

int sl_rs_send(sl_jobs_rconn_t *rc, sl_rs_args_t *a, sl_jobs_rconn_cb cb, void *priv)
{
    return sl_jobs_rconn_argv(rc, cb, priv, a->n, a->v, a->l);
}

void sl_rs_key(char *out, size_t cap, const char *kind, const char *id)
{
    if (id)
        snprintf(out, cap, "%s%s:%s", rs.cfg->store.prefix, kind, id);
    else
        snprintf(out, cap, "%s%s", rs.cfg->store.prefix, kind);
}

const sl_jobs_store_cfg_t *sl_rs_cfg(void)
{
    return &rs.cfg->store;
}

sl_jobs_rconn_t *sl_rs_cmd(void)
{
    return rs.cmd;
}

const redisReply *sl_rs_field(const redisReply *arr, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; arr && arr->type == REDIS_REPLY_ARRAY && i + 1 < arr->elements; i += 2) {
        const redisReply *k = arr->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == n && memcmp(k->str, name, n) == 0)
            return arr->element[i + 1];
    }
    return NULL;
}

/* "0-<seq>": sluice's entry ids; anything else is not an event of ours. */
static int entry_seq(const redisReply *id, uint64_t *seq)
{
    if (id->type != REDIS_REPLY_STRING || id->len < 3 || memcmp(id->str, "0-", 2) != 0)
        return SL_EINVAL;
    return sl_str_parse_u64((sl_str_t){id->str + 2, id->len - 2}, 1, UINT64_MAX, seq);
}

int sl_rs_put_entry(sl_jobs_job_t *job, const redisReply *e, uint64_t *seq)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || entry_seq(e->element[0], seq) != 0)
        return -1;
    const redisReply *t = sl_rs_field(e->element[1], "type");
    const redisReply *d = sl_rs_field(e->element[1], "data");
    sl_jobs_ev_type_t type =
        t && t->type == REDIS_REPLY_STRING ? sl_jobs_ev_type_parse(t->str, t->len) : 0;
    if (!type)
        return -1;
    int string = d && d->type == REDIS_REPLY_STRING;
    return sl_jobs_store_put(job, *seq, type, string ? d->str : "", string ? d->len : 0);
}

/* ---- writes ---- */

/* A failed write is logged (at most once a second: an outage must not
 * flood the log); the job goes on here either way. */
static void on_write(sl_jobs_rconn_t *rc, redisReply *r, void *priv)
{
    SL_UNUSED(rc);
    SL_UNUSED(priv);
    if (r && r->type != REDIS_REPLY_ERROR)
        return;
    sl_jobs_stat_store_error();
    ev_tstamp now = ev_now(rs.loop);
    if (now - rs.last_error_log < 1.0)
        return;
    rs.last_error_log = now;
    sl_log(SL_LOG_WARN, NULL, "redis: a job write failed: %.*s", r ? (int)r->len : 24,
           r ? r->str : "the connection went away");
}

static void write_cmd(sl_rs_args_t *a)
{
    if (sl_rs_send(rs.cmd, a, on_write, NULL) != 0)
        on_write(rs.cmd, NULL, NULL);
}

static char *recorded_json(const sl_jobs_job_t *job)
{
    json_t *o = json_object();
    for (size_t i = 0; i < job->nrecorded; i++)
        json_object_set_new(o, job->recorded[i].name.p, json_string(job->recorded[i].value.p));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* One script makes a job, so that an owner's share and an
 * Idempotency-Key hold across instances. A key already taken answers
 * its value ("id fp [body_fp]") and nothing is written; else the owner's
 * set (id -> the time its job stops counting) is pruned, counted and
 * added to in the same step as the hash is written, and the key is set
 * (SET NX with the job's lifetime). KEYS: the job's hash, the owner's set
 * or "", the Idempotency-Key's key or "". ARGV: max_age_s, now_ms,
 * max_jobs_per_owner, deadline_ms, id, the key's value, then the hash's
 * fields. */
static const char create_lua[] =
    "if KEYS[3] ~= '' then\n"
    "  local held = redis.call('GET', KEYS[3])\n"
    "  if held then return held end\n"
    "end\n"
    "if KEYS[2] ~= '' then\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])\n"
    "  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end\n"
    "  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])\n"
    "  redis.call('EXPIRE', KEYS[2], ARGV[1])\n"
    "end\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV, 7))\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[1])\n"
    "if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[6], 'NX', 'EX', ARGV[1]) end\n"
    "return 1\n";

/* The key's value names the job that holds it: "id fp [body_fp]". */
static void on_created(sl_jobs_rconn_t *rc, redisReply *r, void *priv)
{
    sl_jobs_job_t *job = priv;
    int ok = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    int share = r && r->type == REDIS_REPLY_INTEGER && r->integer == 0;
    int dup = r && r->type == REDIS_REPLY_STRING && r->len > SL_JOBS_ID_LEN && job->idem;
    const char *fail = NULL;
    if (dup) {
        job->dup = sl_malloc(r->len + 1);
        memcpy(job->dup, r->str, r->len);
        job->dup[r->len] = '\0';
        sl_log(SL_LOG_INFO, NULL,
               "job %s: its Idempotency-Key is held by job %.*s; answering with that", job->id,
               SL_JOBS_ID_LEN, job->dup);
        fail = "";
    } else if (share) {
        sl_log(SL_LOG_INFO, NULL, "job %s: its owner has max_jobs_per_owner live jobs", job->id);
        fail = "owner_share_full";
    } else if (!ok) {
        on_write(rc, r, NULL);
        sl_log(SL_LOG_WARN, NULL, "job %s: could not be stored in Redis; it fails", job->id);
        fail = "store_unavailable";
    }
    sl_jobs_store_persisted(job, ok      ? 1
                                 : dup   ? SL_JOBS_PERSIST_DUP
                                 : share ? SL_JOBS_PERSIST_SHARE
                                         : SL_JOBS_PERSIST_FAILED);
    sl_jobs_lifecycle_stored(job, fail);
    sl_jobs_job_unref(job);
}

/* The owner's set of live jobs, scored by when each stops counting. */
static void owner_key(char *out, size_t cap, const sl_jobs_job_t *job)
{
    sl_rs_key(out, cap, "owner", job->owner);
}

/* An Idempotency-Key's key: the SHA-256 of owner, route and key, so that
 * neither a credential's hash nor a client's string is a key name. */
static void idem_key(char *out, size_t cap, const sl_jobs_job_t *job)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (!EVP_Digest(job->idem, strlen(job->idem), md, &n, EVP_sha256(), NULL))
        sl_assert_fail("SHA-256 for an Idempotency-Key", __FILE__, __LINE__);
    sl_hex_encode(md, n, hex);
    sl_rs_key(out, cap, "idem", hex);
}

static void idem_value(char *out, size_t cap, sl_jobs_job_t *job)
{
    char body[SL_JOBS_FP_LEN + 1];
    int known = sl_jobs_get_body_fp(job, body);
    snprintf(out, cap, "%s %s%s%s", job->id, job->idem_fp, known ? " " : "", known ? body : "");
}

/* The body's digest joins the key's value, if the key is still this
 * job's: a replay elsewhere compares its body with it. */
static const char body_fp_lua[] = "local v = redis.call('GET', KEYS[1])\n"
                                  "if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then\n"
                                  "  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')\n"
                                  "end\n"
                                  "return 1\n";

void sl_jobs_rstore_body_fp(sl_jobs_job_t *job)
{
    char k[200], v[SL_JOBS_ID_LEN + 2 * SL_JOBS_FP_LEN + 4], mine[SL_JOBS_ID_LEN + 2];
    sl_rs_args_t a = {0};
    idem_key(k, sizeof(k), job);
    idem_value(v, sizeof(v), job);
    snprintf(mine, sizeof(mine), "%s ", job->id);
    sl_rs_arg(&a, "EVAL");
    sl_rs_arg(&a, body_fp_lua);
    sl_rs_arg(&a, "1");
    sl_rs_arg(&a, k);
    sl_rs_arg(&a, mine);
    sl_rs_arg(&a, v);
    write_cmd(&a);
}

void sl_jobs_rstore_create(sl_jobs_job_t *job)
{
    char k[160], ok[160] = "", ik[200] = "", iv[SL_JOBS_ID_LEN + 2 * SL_JOBS_FP_LEN + 4] = "";
    char *hdrs = recorded_json(job);
    sl_jobs_info_t info;
    sl_rs_args_t a = {0};
    uint64_t now = sl_wall_ms(), age = (uint64_t)rs.cfg->store.max_age_s;
    sl_jobs_job_info(job, &info);
    sl_rs_key(k, sizeof(k), "job", job->id);
    if (job->owner[0])
        owner_key(ok, sizeof(ok), job);
    if (job->idem) {
        idem_key(ik, sizeof(ik), job);
        idem_value(iv, sizeof(iv), job);
    }
    sl_rs_arg(&a, "EVAL");
    sl_rs_arg(&a, create_lua);
    sl_rs_arg(&a, "3");
    sl_rs_arg(&a, k);
    sl_rs_arg(&a, ok);
    sl_rs_arg(&a, ik);
    sl_rs_arg_u64(&a, age);
    sl_rs_arg_u64(&a, now);
    sl_rs_arg_u64(&a, (uint64_t)rs.cfg->max_jobs_per_owner);
    sl_rs_arg_u64(&a, now + age * 1000);
    sl_rs_arg(&a, job->id);
    sl_rs_arg(&a, iv);
    const char *f[][2] = {{"id", job->id},
                          {"owner", job->owner},
                          {"route", job->route},
                          {"executor", info.executor},
                          {"method", job->method},
                          {"path", job->path},
                          {"traceparent", job->traceparent},
                          {"content_type", info.content_type},
                          {"state", "queued"},
                          {"headers", hdrs},
                          {"instance", rs.instance},
                          {"remote", job->remote ? "1" : "0"}};
    for (size_t i = 0; i < SL_ARRAY_LEN(f); i++) {
        sl_rs_arg(&a, f[i][0]);
        sl_rs_arg(&a, f[i][1]);
    }
    sl_rs_arg(&a, "created_ms");
    sl_rs_arg_u64(&a, info.created_ms);
    sl_jobs_job_ref(job);
    if (sl_rs_send(rs.cmd, &a, on_created, job) != 0)
        on_created(rs.cmd, NULL, job);
    free(hdrs);
}

/* A job starts: its first event, the stream's lifetime and the state
 * in one step. KEYS: the stream, the hash. ARGV: entry id, max_events,
 * data, max_age_s, started_ms. */
static const char started_lua[] =
    "redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], ARGV[1], 'type', 'started', 'data', "
    "ARGV[3])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "redis.call('HSET', KEYS[2], 'state', 'running', 'started_ms', ARGV[5])\n"
    "return 1\n";

/* A job ends, in one step: the outcome and when it expires (expires_ms:
 * from then every instance answers 410, with no write at expiry), the
 * keys' lifetimes, the owner's set (an ended job counts until it
 * expires) and its Idempotency-Key. KEYS: the hash, the stream, the
 * owner's set or "", the key or "". ARGV: state, ended_ms, exit_code,
 * expires_ms, ttl_s, id. */
static const char end_lua[] =
    "redis.call('HSET', KEYS[1], 'state', ARGV[1], 'ended_ms', ARGV[2], 'exit_code', ARGV[3], "
    "'expires_ms', ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[1], 2 * tonumber(ARGV[5]))\n"
    "redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]) + 1)\n"
    "if KEYS[3] ~= '' then redis.call('ZADD', KEYS[3], 'XX', ARGV[4], ARGV[6]) end\n"
    "if KEYS[4] ~= '' then redis.call('EXPIRE', KEYS[4], ARGV[5]) end\n"
    "return 1\n";

/* A remote job's end that Redis did not take: it ends here all the
 * same, so that its readers are not left waiting for it. */
typedef struct end_w {
    sl_jobs_job_t *job;
    size_t len;
    char body[];
} end_w_t;

static void on_remote_end(sl_jobs_rconn_t *rc, redisReply *r, void *priv)
{
    end_w_t *e = priv;
    sl_jobs_job_t *job = e->job;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        on_write(rc, r, NULL);
        sl_log(SL_LOG_WARN, NULL, "job %s: its end could not be stored; it ends here only",
               job->id);
        if (sl_jobs_store_put(job, job->next_seq, SL_JOBS_EV_END, e->body, e->len) == 1 &&
            !job->mirror)
            sl_jobs_remote_ended(job);
    }
    sl_jobs_job_unref(job);
    sl_free(e);
}

/* id: "0-<seq>" for a job whose events are made here, "0-*" for one
 * whose events are authored in Redis (Redis then numbers it). */
static void xadd(sl_jobs_job_t *job, const char *id, sl_jobs_ev_type_t type, const void *data,
                 size_t len)
{
    char k[160];
    sl_rs_args_t a = {0};
    sl_rs_key(k, sizeof(k), "ev", job->id);
    if (type == SL_JOBS_EV_STARTED) {
        char jk[160];
        sl_rs_key(jk, sizeof(jk), "job", job->id);
        sl_rs_arg(&a, "EVAL");
        sl_rs_arg(&a, started_lua);
        sl_rs_arg(&a, "2");
        sl_rs_arg(&a, k);
        sl_rs_arg(&a, jk);
        sl_rs_arg(&a, id);
        sl_rs_arg_u64(&a, (uint64_t)rs.cfg->store.max_events);
        sl_rs_arg_bin(&a, data, len);
        sl_rs_arg_u64(&a, (uint64_t)rs.cfg->store.max_age_s);
        sl_rs_arg_u64(&a, sl_wall_ms());
        write_cmd(&a);
        return;
    }
    sl_rs_arg(&a, "XADD");
    sl_rs_arg(&a, k);
    sl_rs_arg(&a, "MAXLEN");
    sl_rs_arg(&a, "~");
    sl_rs_arg_u64(&a, (uint64_t)rs.cfg->store.max_events);
    sl_rs_arg(&a, id);
    sl_rs_arg(&a, "type");
    sl_rs_arg(&a, sl_jobs_ev_type_name(type));
    sl_rs_arg(&a, "data");
    sl_rs_arg_bin(&a, data, len);
    if (job->remote && type == SL_JOBS_EV_END) {
        end_w_t *e = sl_malloc(sizeof(*e) + len);
        e->job = job;
        e->len = len;
        memcpy(e->body, data, len);
        sl_jobs_job_ref(job);
        if (sl_rs_send(rs.cmd, &a, on_remote_end, e) != 0)
            on_remote_end(rs.cmd, NULL, e);
    } else {
        write_cmd(&a);
    }
}

void sl_jobs_rstore_event(sl_jobs_job_t *job, const sl_jobs_event_t *ev)
{
    char id[32];
    snprintf(id, sizeof(id), "0-%llu", (unsigned long long)ev->seq);
    xadd(job, id, ev->type, ev->data, ev->len);
}

void sl_jobs_rstore_append(sl_jobs_job_t *job, sl_jobs_ev_type_t type, const void *data, size_t len)
{
    xadd(job, "0-*", type, data, len);
}

void sl_jobs_rstore_follow(sl_jobs_job_t *job)
{
    sl_rs_follow(job);
}

void sl_jobs_rstore_end(sl_jobs_job_t *job)
{
    char k[160], ek[160], ok[160] = "", ik[200] = "", code[16];
    sl_jobs_info_t info;
    sl_rs_args_t a = {0};
    sl_jobs_job_info(job, &info);
    sl_rs_key(k, sizeof(k), "job", job->id);
    sl_rs_key(ek, sizeof(ek), "ev", job->id);
    if (job->owner[0])
        owner_key(ok, sizeof(ok), job);
    if (job->idem && sl_jobs_persisted(job) == 1) /* the key is this job's */
        idem_key(ik, sizeof(ik), job);
    snprintf(code, sizeof(code), "%d", info.exit_code);
    sl_rs_arg(&a, "EVAL");
    sl_rs_arg(&a, end_lua);
    sl_rs_arg(&a, "4");
    sl_rs_arg(&a, k);
    sl_rs_arg(&a, ek);
    sl_rs_arg(&a, ok);
    sl_rs_arg(&a, ik);
    sl_rs_arg(&a, sl_jobs_state_name(info.state));
    sl_rs_arg_u64(&a, info.ended_ms);
    sl_rs_arg(&a, code);
    sl_rs_arg_u64(&a, info.ended_ms + (uint64_t)rs.cfg->ttl_s * 1000);
    sl_rs_arg_u64(&a, (uint64_t)rs.cfg->ttl_s);
    sl_rs_arg(&a, job->id);
    write_cmd(&a);
}

/* End the job from here (cancel, timeout, a failure before a worker got
 * it): the end goes into its stream, a worker that holds it sees the
 * hash's cancel flag and stops. */
void sl_jobs_rstore_end_remote(sl_jobs_job_t *job, sl_jobs_state_t state, const char *error)
{
    char k[160];
    sl_rs_args_t a = {0};
    char body[SL_JOBS_END_BODY_MAX];
    sl_rs_key(k, sizeof(k), "job", job->id);
    sl_rs_arg(&a, "HSET");
    sl_rs_arg(&a, k);
    sl_rs_arg(&a, "cancel");
    sl_rs_arg(&a, "1");
    write_cmd(&a);
    if (error)
        sl_jobs_emit_error(job, error); /* a remote job's events go to its stream */
    sl_jobs_emit(job, SL_JOBS_EV_END, body, sl_jobs_end_body(body, sizeof(body), state, -1));
}

void sl_jobs_rstore_cancel(sl_jobs_job_t *job)
{
    char k[160];
    sl_rs_args_t a = {0};
    sl_rs_key(k, sizeof(k), "ctl", NULL);
    sl_rs_arg(&a, "XADD");
    sl_rs_arg(&a, k);
    sl_rs_arg(&a, "MAXLEN");
    sl_rs_arg(&a, "~");
    sl_rs_arg_u64(&a, SL_RS_CTL_LEN);
    sl_rs_arg(&a, "*");
    sl_rs_arg(&a, "op");
    sl_rs_arg(&a, "cancel");
    sl_rs_arg(&a, "id");
    sl_rs_arg(&a, job->id);
    write_cmd(&a);
}

/* ---- lookups ---- */

/* One id being found; done gets the job (a reference) or NULL. */
typedef void (*found_fn)(void *arg, sl_jobs_job_t *job, int status);
typedef struct find {
    char id[SL_JOBS_ID_LEN + 1];
    found_fn done;
    void *arg;
    sl_jobs_job_t *job; /* the mirror being filled */
    int final;          /* the hash says it has ended */
    uint64_t last;      /* last seq paged in */
} find_t;

static void find_done(find_t *f, sl_jobs_job_t *job, int status)
{
    if (status == SL_JOBS_UNAVAILABLE)
        sl_jobs_stat_store_error();
    f->done(f->arg, job, status);
    sl_jobs_job_unref(f->job);
    sl_free(f);
}

static const char *str_field(const redisReply *arr, const char *name)
{
    const redisReply *v = sl_rs_field(arr, name);
    return v && v->type == REDIS_REPLY_STRING ? v->str : NULL;
}

static uint64_t num_field(const redisReply *arr, const char *name)
{
    const char *s = str_field(arr, name);
    return s ? strtoull(s, NULL, 10) : 0;
}

static void page(find_t *f);

/* Retained events are in: the mirror joins the table and is followed. */
static void adopt(find_t *f)
{
    if (f->job->next_seq == 1 && f->final) {
        find_done(f, NULL, SL_JOBS_GONE); /* ended, and its events expired */
        return;
    }
    sl_jobs_job_t *job = sl_jobs_store_adopt(f->job);
    if (!job) {
        sl_log(SL_LOG_WARN, NULL, "job %s: cannot mirror it (jobs.max_jobs reached)", f->job->id);
        find_done(f, NULL, SL_JOBS_UNAVAILABLE);
        return;
    }
    if (job == f->job && !job->ended)
        sl_rs_follow(job);
    find_done(f, job, SL_JOBS_FOUND);
}

static void on_page(sl_jobs_rconn_t *rc, redisReply *r, void *priv)
{
    SL_UNUSED(rc);
    find_t *f = priv;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        find_done(f, NULL, SL_JOBS_UNAVAILABLE);
        return;
    }
    for (size_t i = 0; i < r->elements; i++)
        if (sl_rs_put_entry(f->job, r->element[i], &f->last) < 0)
            sl_log(SL_LOG_WARN, NULL, "job %s: a stream entry that is not an event; skipped",
                   f->job->id);
    if (r->elements == SL_RS_PAGE)
        page(f);
    else
        adopt(f);
}

static void page(find_t *f)
{
    char k[160], from[32];
    sl_rs_args_t a = {0};
    sl_rs_key(k, sizeof(k), "ev", f->job->id);
    if (f->last)
        snprintf(from, sizeof(from), "(0-%llu", (unsigned long long)f->last);
    else
        snprintf(from, sizeof(from), "-");
    sl_rs_arg(&a, "XRANGE");
    sl_rs_arg(&a, k);
    sl_rs_arg(&a, from);
    sl_rs_arg(&a, "+");
    sl_rs_arg(&a, "COUNT");
    sl_rs_arg_u64(&a, SL_RS_PAGE);
    if (sl_rs_send(rs.cmd, &a, on_page, f) != 0)
        find_done(f, NULL, SL_JOBS_UNAVAILABLE);
}

static void on_meta(sl_jobs_rconn_t *rc, redisReply *r, void *priv)
{
    SL_UNUSED(rc);
    find_t *f = priv;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        find_done(f, NULL, SL_JOBS_UNAVAILABLE);
        return;
    }
    const char *state = str_field(r, "state");
    if (r->elements == 0 || !state || !str_field(r, "id")) {
        find_done(f, NULL, SL_JOBS_UNKNOWN);
        return;
    }
    int st = sl_jobs_state_parse((sl_str_t){state, strlen(state)});
    uint64_t expires = num_field(r, "expires_ms");
    if (st == SL_JOBS_EXPIRED || (expires && expires <= sl_wall_ms())) {
        find_done(f, NULL, SL_JOBS_GONE);
        return;
    }
    const char *hdrs = str_field(r, "headers");
    sl_jobs_mirror_meta_t m = {
        .id = f->id,
        .owner = str_field(r, "owner"),
        .route = str_field(r, "route"),
        .executor = str_field(r, "executor"),
        .content_type = str_field(r, "content_type"),
        .method = str_field(r, "method"),
        .path = str_field(r, "path"),
        .traceparent = str_field(r, "traceparent"),
        .recorded = hdrs ? json_loads(hdrs, 0, NULL) : NULL,
        .created_ms = num_field(r, "created_ms"),
        .started_ms = num_field(r, "started_ms"),
        .remote = num_field(r, "remote") == 1,
    };
    f->final = st >= 0 && sl_jobs_state_is_final((sl_jobs_state_t)st);
    f->job = sl_jobs_store_mirror_new(&m);
    json_decref(m.recorded);
    page(f);
}

/* Find id: the local table (a mirror made meanwhile), else Redis. */
static void find(const char *id, found_fn done, void *arg)
{
    int expired = 0;
    sl_jobs_job_t *job = sl_jobs_find((sl_str_t){id, SL_JOBS_ID_LEN}, &expired);
    if (job || expired) {
        done(arg, job, job ? SL_JOBS_FOUND : SL_JOBS_GONE);
        return;
    }
    find_t *f = sl_calloc(1, sizeof(*f));
    char k[160];
    sl_rs_args_t a = {0};
    snprintf(f->id, sizeof(f->id), "%s", id);
    f->done = done;
    f->arg = arg;
    sl_rs_key(k, sizeof(k), "job", id);
    sl_rs_arg(&a, "HGETALL");
    sl_rs_arg(&a, k);
    if (sl_rs_send(rs.cmd, &a, on_meta, f) != 0)
        find_done(f, NULL, SL_JOBS_UNAVAILABLE);
}

static void lookup_found(void *arg, sl_jobs_job_t *job, int status)
{
    sl_jobs_lookup_done(arg, job, status);
}

static void list(struct sl_jobs_lookup *l, const sl_jobs_list_q_t *q);

void sl_jobs_rstore_lookup(struct sl_jobs_lookup *l)
{
    const sl_jobs_list_q_t *q = sl_jobs_lookup_query(l);
    if (q)
        list(l, q);
    else
        find(sl_jobs_lookup_id(l), lookup_found, l);
}

/* ---- listing an owner's jobs across instances ---- */

#define LIST_CANDIDATES 1000 /* ids looked at per listing */

typedef struct lister {
    struct sl_jobs_lookup *l;
    const sl_jobs_list_q_t *q;
    size_t pending;
    int failed;
    sl_jobs_job_t **got;
    size_t n;
} lister_t;

static int by_id(const void *a, const void *b)
{
    return strcmp((*(sl_jobs_job_t *const *)a)->id, (*(sl_jobs_job_t *const *)b)->id);
}

/* The jobs found in Redis and the ones held here, merged: one per id,
 * the query's filters, id order, at most q->max. */
static void list_finish(lister_t *ls)
{
    const sl_jobs_list_q_t *q = ls->q;
    sl_jobs_job_t **v = sl_malloc((ls->n + q->max) * sizeof(*v));
    size_t n = 0, k = 0;
    for (size_t i = 0; i < ls->n; i++)
        v[n++] = ls->got[i];
    n += sl_jobs_list(q->state, q->route, q->owner, (sl_str_t){q->after, strlen(q->after)}, v + n,
                      q->max);
    qsort(v, n, sizeof(*v), by_id);
    for (size_t i = 0; i < n; i++) {
        sl_jobs_info_t info;
        sl_jobs_job_info(v[i], &info);
        int keep = k < q->max && (k == 0 || strcmp(v[k - 1]->id, v[i]->id) != 0) &&
                   info.state != SL_JOBS_EXPIRED && (q->state < 0 || (int)info.state == q->state) &&
                   (!q->route || strcmp(q->route, info.route) == 0);
        if (keep)
            v[k++] = v[i];
        else
            sl_jobs_job_unref(v[i]);
    }
    sl_jobs_lookup_listed(ls->l, v, k, ls->failed ? SL_JOBS_UNAVAILABLE : SL_JOBS_FOUND);
    sl_free(ls->got);
    sl_free(ls);
}

static void list_found(void *arg, sl_jobs_job_t *job, int status)
{
    lister_t *ls = arg;
    if (job)
        ls->got[ls->n++] = job;
    ls->failed |= status == SL_JOBS_UNAVAILABLE;
    if (--ls->pending == 0)
        list_finish(ls);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void on_owner_ids(sl_jobs_rconn_t *rc, redisReply *r, void *priv)
{
    SL_UNUSED(rc);
    lister_t *ls = priv;
    const char *ids[LIST_CANDIDATES];
    size_t n = 0;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        ls->failed = 1;
        list_finish(ls);
        return;
    }
    for (size_t i = 0; i < r->elements && n < LIST_CANDIDATES; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING && e->len == SL_JOBS_ID_LEN &&
            strcmp(e->str, ls->q->after) > 0)
            ids[n++] = e->str;
    }
    /* The oldest max ids after the cursor are the page. */
    qsort(ids, n, sizeof(*ids), cmp_str);
    if (ls->q->state < 0 && !ls->q->route) /* else filters may pass over some */
        n = SL_MIN(n, ls->q->max);
    ls->got = sl_calloc(n + 1, sizeof(*ls->got));
    ls->pending = n + 1; /* + this call, so that none finishes early */
    for (size_t i = 0; i < n; i++)
        find(ids[i], list_found, ls);
    list_found(ls, NULL, SL_JOBS_FOUND);
}

static void list(struct sl_jobs_lookup *l, const sl_jobs_list_q_t *q)
{
    char ok[160];
    sl_rs_args_t a = {0};
    lister_t *ls = sl_calloc(1, sizeof(*ls));
    ls->l = l;
    ls->q = q;
    sl_rs_key(ok, sizeof(ok), "owner", q->owner);
    sl_rs_arg(&a, "ZRANGE");
    sl_rs_arg(&a, ok);
    sl_rs_arg_u64(&a, sl_wall_ms());
    sl_rs_arg(&a, "+inf");
    sl_rs_arg(&a, "BYSCORE");
    if (sl_rs_send(rs.cmd, &a, on_owner_ids, ls) != 0) {
        ls->failed = 1;
        list_finish(ls);
    }
}

/* ---- life ---- */

int sl_jobs_rstore_available(void)
{
    return !rs.cfg || !rs.cfg->store.redis || sl_jobs_rconn_up(rs.cmd);
}

int sl_jobs_rstore_start(struct ev_loop *loop, const sl_jobs_cfg_t *cfg)
{
    char host[64] = "";
    memset(&rs, 0, sizeof(rs));
    rs.loop = loop;
    rs.cfg = cfg;
    gethostname(host, sizeof(host) - 1);
    snprintf(rs.instance, sizeof(rs.instance), "%s:%d", host, (int)getpid());
    rs.cmd = sl_jobs_rconn_new(loop, &cfg->store, "commands", 1, NULL, NULL);
    return sl_rs_follow_start(loop);
}

void sl_jobs_rstore_stop(void)
{
    if (!rs.cmd)
        return;
    sl_rs_follow_stop();
    sl_jobs_rconn_free(rs.cmd); /* pending lookups answer "unavailable" */
    memset(&rs, 0, sizeof(rs));
}
