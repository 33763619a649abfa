/* sluice - SPDX-License-Identifier: MIT
 *
 * See reload.h. The workers are told through their mailboxes
 * (sl_worker_post), so a reload, a retirement and the next reload reach
 * each worker in the order the main thread sent them.
 */
#include "reload.h"
#include "tls.h"
#include <stdio.h>
#include <unistd.h>

typedef struct runtime {
    sl_tls_t **tls; /* per cfg->tls_cfgs */
    size_t ntls;
    SSL_CTX **ctxs; /* per listener */
} runtime_t;

static void runtime_free(void *p)
{
    runtime_t *rt = p;
    for (size_t i = 0; i < rt->ntls; i++)
        sl_tls_free(rt->tls[i]);
    sl_free(rt->tls);
    sl_free(rt->ctxs);
    sl_free(rt);
}

int sl_reload_build(sl_config_t *cfg, char *err, size_t errlen)
{
    runtime_t *rt = sl_calloc(1, sizeof(*rt));
    rt->tls = sl_calloc(cfg->ntls ? cfg->ntls : 1, sizeof(*rt->tls));
    rt->ctxs = sl_calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(*rt->ctxs));
    for (; rt->ntls < cfg->ntls; rt->ntls++) {
        rt->tls[rt->ntls] = sl_tls_new(&cfg->tls_cfgs[rt->ntls], err, errlen);
        if (!rt->tls[rt->ntls]) {
            runtime_free(rt);
            return SL_ERROR;
        }
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const sl_tls_cfg_t *t = cfg->listeners[i].tls;
        if (t)
            rt->ctxs[i] = sl_tls_default_ctx(rt->tls[t - cfg->tls_cfgs]);
    }
    cfg->runtime = rt;
    cfg->runtime_free = runtime_free;
    return 0;
}

SSL_CTX *const *sl_reload_ctxs(const sl_config_t *cfg)
{
    return ((const runtime_t *)cfg->runtime)->ctxs;
}

/* ---- apply ---- */

typedef struct reload_msg {
    const sl_config_t *cfg; /* held for the worker */
    int *keep, *fds;        /* per listener of cfg */
} reload_msg_t;

static void msg_free(reload_msg_t *m, int close_fds, size_t n)
{
    for (size_t i = 0; close_fds && i < n; i++)
        if (m->fds[i] >= 0)
            close(m->fds[i]);
    sl_free(m->keep);
    sl_free(m->fds);
    sl_free(m);
}

static void on_reload(sl_worker_t *w, void *arg)
{
    reload_msg_t *m = arg;
    sl_worker_reload(w, m->cfg, m->keep, m->fds, sl_reload_ctxs(m->cfg));
    msg_free(m, 0, 0);
}

/* The old listener bound to the same address, or -1. */
static int same_listener(const sl_config_t *old, const sl_listener_cfg_t *l)
{
    for (size_t i = 0; i < old->nlisteners; i++) {
        const sl_listener_cfg_t *o = &old->listeners[i];
        if (o->sslen == l->sslen && memcmp(&o->ss, &l->ss, l->sslen) == 0)
            return (int)i;
    }
    return -1;
}

/* fds[w * nl + i]: worker w's new socket for listener i, -1 when kept. */
static int open_new(int nworkers, const sl_config_t *old, const sl_config_t *cfg, const int *keep,
                    int *fds, char *err, size_t errlen)
{
    size_t nl = cfg->nlisteners;
    for (size_t i = 0; i < nl * (size_t)nworkers; i++)
        fds[i] = -1;
    for (size_t i = 0; i < nl; i++) {
        int port = 0;
        for (int w = 0; w < nworkers && keep[i] < 0; w++) {
            int fd = sl_listener_open(&cfg->listeners[i], port, err, errlen);
            if (fd < 0)
                return SL_ERROR;
            fds[(size_t)w * nl + i] = fd;
            port = sl_listener_port(fd); /* a ":0" port is fixed by the first */
        }
        if (keep[i] < 0)
            fprintf(stderr, "sluice: reload: listening on %s port %d\n", cfg->listeners[i].addr,
                    port);
        else
            port = old->listeners[keep[i]].bound_port;
        sl_listener_cfg_bound(&cfg->listeners[i], port);
    }
    return 0;
}

static void post_reload(sl_worker_t *w, const sl_config_t *cfg, const int *keep, const int *fds)
{
    size_t nl = cfg->nlisteners, bytes = (nl ? nl : 1) * sizeof(int);
    reload_msg_t *m = sl_calloc(1, sizeof(*m));
    m->cfg = cfg;
    m->keep = sl_malloc(bytes);
    m->fds = sl_malloc(bytes);
    memcpy(m->keep, keep, nl * sizeof(int));
    memcpy(m->fds, fds, nl * sizeof(int));
    sl_config_hold(cfg);
    if (sl_worker_post(w, on_reload, m) != 0) { /* its loop is over */
        sl_config_release(cfg);
        msg_free(m, 1, nl);
    }
}

int sl_reload_apply(sl_worker_t *workers, int nworkers, const sl_config_t *old,
                    const sl_config_t *cfg, char *err, size_t errlen)
{
    size_t nl = cfg->nlisteners;
    int *keep = sl_malloc((nl ? nl : 1) * sizeof(int));
    int *fds = sl_malloc((nl ? nl : 1) * (size_t)nworkers * sizeof(int));
    for (size_t i = 0; i < nl; i++)
        keep[i] = same_listener(old, &cfg->listeners[i]);
    int rv = open_new(nworkers, old, cfg, keep, fds, err, errlen);
    if (rv != 0) {
        for (size_t i = 0; i < nl * (size_t)nworkers; i++)
            if (fds[i] >= 0)
                close(fds[i]);
    } else {
        for (int w = 0; w < nworkers; w++)
            post_reload(&workers[w], cfg, keep, &fds[(size_t)w * nl]);
    }
    sl_free(keep);
    sl_free(fds);
    return rv;
}

/* ---- retire ---- */

static void on_retire(sl_worker_t *w, void *arg)
{
    sl_config_retire_worker(arg, w->id);
}

void sl_reload_retire(sl_worker_t *workers, int nworkers, int live)
{
    sl_config_t *cfg;
    while ((cfg = sl_config_next_retired())) {
        if (cfg->stage == SL_CONFIG_FREE) {
            sl_config_free(cfg);
            continue;
        }
        /* Workers not asked (loop over, or shutdown) keep their state
         * until sl_config_free, which frees it without their loops. */
        sl_config_expect_acks(cfg, nworkers);
        for (int w = 0; w < nworkers; w++)
            if (!live || sl_worker_post(&workers[w], on_retire, cfg) != 0)
                sl_config_ack(cfg);
        sl_config_ack(cfg); /* ours: it may free the snapshot (SL_CONFIG_FREE) */
    }
}
