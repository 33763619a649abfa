/* sluice - SPDX-License-Identifier: MIT
 *
 * Wiring: registers the handlers with the router, loads the configuration
 * (a file, or the default embedded at build time from etc/sluice.json),
 * builds TLS contexts, opens one SO_REUSEPORT socket per listener per
 * worker, starts the workers and then handles signals on the main thread:
 * SIGTERM/SIGINT drain (a second one stops at once), SIGUSR1 reopens the
 * access log, SIGCHLD reaps orphans (PID 1 in a container).
 */
#include "sl.h"
#include "access.h"
#include "config.h"
#include "conn.h"
#include "handlers.h"
#include "log.h"
#include "router.h"
#include "reload.h"
#include "service.h"
#include "tls.h"
#include "worker.h"
#include "h1/h1.h"
#include "h2/h2.h"
#include "h3/h3.h"
#include "harness/harness.h"
#include "ws/ws.h"
#include "jobs/jobs.h"
#include "reply/reply.h"
#include "proxy/proxy.h"
#include "cache/cache.h"
#include "auth/auth.h"
#include "static/static.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

extern const char sl_default_config[];

typedef struct server {
    sl_config_t *cfg; /* current: the main thread holds it (config.h) */
    const char *path; /* -c FILE, NULL for the embedded default */
    int *fds;         /* nworkers x nlisteners, until the workers own them */
    size_t nfds;
    sl_worker_t *workers;
    int nworkers;
    char *pid_written; /* the pid file written at start, removed at exit */
} server_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice [-c FILE] [-t | --print-config | -s SIGNAL] [-h] [--version]\n"
               "  -c FILE         configuration file (default: the embedded etc/sluice.json)\n"
               "  -t              check the configuration and exit (0 valid, 1 invalid)\n"
               "  --print-config  print the effective configuration (file, environment,\n"
               "                  defaults; secrets redacted) as JSON and exit\n"
               "  -s SIGNAL       signal the running sluice named by pid_file:\n"
               "                  reload (SIGHUP), reopen (SIGUSR1), stop (SIGTERM)\n"
               "  -h              this help\n"
               "  --version       print the version\n");
}

static void register_handlers(void)
{
    sl_router_register(&sl_health_handler);
    sl_router_register(&sl_return_handler);
    sl_router_register(&sl_metrics_handler);
    sl_router_register(&sl_harness_handler);
    sl_router_register(&sl_ws_handler);
    /* upstreams before executors: the "upstream" executor looks its group up */
    sl_config_register_section(&sl_proxy_upstreams_section);
    sl_config_register_section(&sl_cache_section);
    sl_h3_register();
    sl_config_register_section(&sl_jobs_section);
    sl_reply_to_register(); /* its executor key before "executors" is parsed */
    sl_config_register_section(&sl_jobs_executors_section);
    sl_router_register(&sl_reply_job_handler);
    sl_router_register(&sl_reply_api_handler);
    sl_router_register(&sl_proxy_handler);
    sl_router_register(&sl_static_handler);
    sl_router_register(&sl_cache_purge_handler);
    sl_worker_at_exit(sl_cache_worker_exit);
    sl_router_set_gate(&sl_auth_gate);
    sl_router_init(); /* "routes" last: a route names upstreams and executors */
}

/* Every worker accepts from the one socket the service manager passed
 * (it outlives a restart); SO_REUSEPORT needs sockets of our own. */
static int share_inherited(server_t *s, size_t l, int fd, char *err, size_t errlen)
{
    size_t nl = s->cfg->nlisteners;
    for (int w = 0; w < s->nworkers; w++) {
        int d = w == 0 ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (d < 0) {
            snprintf(err, errlen, "listen %s: %s", s->cfg->listeners[l].addr, strerror(errno));
            return SL_ERROR;
        }
        s->fds[(size_t)w * nl + l] = d;
    }
    return 0;
}

/* One socket per listener per worker; a ":0" port is fixed by the first
 * bind so every worker shares it. */
static int open_sockets(server_t *s, char *err, size_t errlen)
{
    size_t nl = s->cfg->nlisteners;
    s->nfds = nl * (size_t)s->nworkers;
    s->fds = sl_malloc(sizeof(int) * s->nfds);
    for (size_t i = 0; i < s->nfds; i++)
        s->fds[i] = -1;
    for (size_t l = 0; l < nl; l++) {
        int port = 0, fd = sl_service_socket_for(&s->cfg->listeners[l]);
        if (fd >= 0 && share_inherited(s, l, fd, err, errlen))
            return SL_ERROR;
        for (int w = 0; w < s->nworkers && fd < 0; w++) {
            int f = sl_listener_open(&s->cfg->listeners[l], port, err, errlen);
            if (f < 0)
                return SL_ERROR;
            s->fds[(size_t)w * nl + l] = f;
            port = sl_listener_port(f);
        }
        port = sl_listener_port(s->fds[l]);
        sl_listener_cfg_bound(&s->cfg->listeners[l], port);
        fprintf(stderr, "sluice: listening on %s port %d (%s%s)\n", s->cfg->listeners[l].addr,
                port,
                s->cfg->listeners[l].tls   ? "tls, alpn h2,http/1.1"
                : s->cfg->listeners[l].h2c ? "cleartext, http/1.1 + h2c"
                                           : "cleartext, http/1.1",
                fd >= 0 ? ", from the service manager" : "");
    }
    sl_service_close_unused();
    return 0;
}

static int start_workers(server_t *s)
{
    size_t nl = s->cfg->nlisteners;
    s->workers = sl_calloc((size_t)s->nworkers, sizeof(*s->workers));
    for (int w = 0; w < s->nworkers; w++) {
        if (sl_worker_init(&s->workers[w], w, s->cfg, &s->fds[(size_t)w * nl],
                           sl_reload_ctxs(s->cfg)) != 0)
            return SL_ERROR;
        for (size_t l = 0; l < nl; l++)
            s->fds[(size_t)w * nl + l] = -1; /* owned by the worker now */
        if (sl_worker_start(&s->workers[w]) != 0)
            return SL_ERROR;
    }
    return 0;
}

static int all_done(const server_t *s)
{
    for (int w = 0; w < s->nworkers; w++)
        if (!sl_worker_is_done(&s->workers[w]))
            return 0;
    return 1;
}

static void command_all(server_t *s, int cmd)
{
    for (int w = 0; w < s->nworkers; w++)
        sl_worker_command(&s->workers[w], cmd);
}

static void reopen_logs(server_t *s)
{
    char err[512];
    if (sl_access_reopen(s->cfg->access_log_path, err, sizeof(err)) != 0)
        fprintf(stderr, "sluice: SIGUSR1: %s; still writing to the old file\n", err);
    else if (s->cfg->access_log_path)
        fprintf(stderr, "sluice: SIGUSR1: reopened %s\n", s->cfg->access_log_path);
}

static sl_config_t *load_config(const char *path, char *err, size_t errlen)
{
    return path ? sl_config_load_file(path, err, errlen)
                : sl_config_load_string(sl_default_config, "(embedded etc/sluice.json)", err,
                                        errlen);
}

/* What a reload cannot change in a running process: said once, kept. */
static void warn_restart_only(const sl_config_t *old, const sl_config_t *cfg)
{
    json_t *oj = json_object_get(old->root, "jobs"), *nj = json_object_get(cfg->root, "jobs");
    const char *what[4];
    size_t n = 0;
    if (old->workers != cfg->workers)
        what[n++] = "workers";
    if (!sl_cstr_same(old->pid_file, cfg->pid_file))
        what[n++] = "pid_file";
    if (!json_equal(oj, nj) && (oj || nj))
        what[n++] = "jobs";
    if (!old->access_log_path != !cfg->access_log_path)
        what[n++] = "access_log (stdout <-> file)";
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "sluice: reload: %s changed; it takes effect at the next restart\n",
                what[i]);
}

static void notify_reloading(void)
{
    struct timespec ts;
    char state[96];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    sl_service_notify(state);
}

/* SIGHUP: the new snapshot, or the old one kept and one error line. */
static void reload(server_t *s)
{
    char err[1024];
    notify_reloading();
    sl_config_t *cfg = load_config(s->path, err, sizeof(err));
    s->cfg->replaced_at = ev_time(); /* read by the workers once they have cfg */
    if (cfg && (sl_reload_build(cfg, err, sizeof(err)) != 0 ||
                sl_reload_apply(s->workers, s->nworkers, s->cfg, cfg, err, sizeof(err)) != 0)) {
        sl_config_release(cfg); /* frees it at the next retire step */
        cfg = NULL;
    }
    if (!cfg) {
        s->cfg->replaced_at = 0; /* it stays current */
        fprintf(stderr, "sluice: reload failed: %s; keeping the running configuration\n", err);
        sl_metrics_reload(0);
        sl_service_notify("READY=1");
        return;
    }
    warn_restart_only(s->cfg, cfg);
    if (cfg->access_log_path && !sl_cstr_same(cfg->access_log_path, s->cfg->access_log_path) &&
        sl_access_reopen(cfg->access_log_path, err, sizeof(err)) != 0)
        fprintf(stderr, "sluice: reload: %s; still writing to the old file\n", err);
    sl_log_set_level(cfg->log_level);
    sl_config_release(s->cfg);
    s->cfg = cfg;
    sl_metrics_reload(1);
    fprintf(stderr, "sluice: reloaded %s\n", cfg->path);
    sl_service_notify("READY=1");
}

static void wait_for_signals(server_t *s, const sigset_t *set)
{
    struct timespec tick = {0, 200 * 1000 * 1000};
    int draining = 0;
    while (!all_done(s)) {
        int sig = sigtimedwait(set, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            if (!draining) {
                fprintf(stderr, "sluice: %s: draining (up to %.0fs)\n",
                        sig == SIGTERM ? "SIGTERM" : "SIGINT", s->cfg->timeouts.drain_s);
                sl_service_notify("STOPPING=1");
                sl_conn_process_drain();
                command_all(s, SL_WORKER_CMD_DRAIN);
                draining = 1;
            } else {
                fprintf(stderr, "sluice: second signal: stopping now\n");
                command_all(s, SL_WORKER_CMD_STOP);
            }
        } else if (sig == SIGHUP && !draining) {
            reload(s);
        } else if (sig == SIGUSR1) {
            reopen_logs(s);
        } else if (sig == SIGCHLD) {
            sl_service_reap();
        }
        sl_reload_retire(s->workers, s->nworkers, 1);
    }
}

static void server_free(server_t *s)
{
    for (int w = 0; s->workers && w < s->nworkers; w++) {
        if (s->workers[w].loop && s->workers[w].thread)
            sl_worker_join(&s->workers[w]);
        sl_worker_dispose(&s->workers[w]);
    }
    for (size_t i = 0; i < s->nfds; i++)
        if (s->fds[i] >= 0)
            close(s->fds[i]);
    sl_free(s->fds);
    sl_jobs_stop(); /* after the workers: no subscriber is left */
    if (s->pid_written)
        sl_service_remove_pid(s->pid_written);
    sl_free(s->pid_written);
    sl_config_release(s->cfg);
    sl_reload_retire(s->workers, s->nworkers, 0); /* every snapshot is unused now */
    sl_free(s->workers);
}

static int check_only(sl_config_t *cfg)
{
    char err[1024];
    for (size_t i = 0; i < cfg->ntls; i++) {
        if (sl_tls_check(&cfg->tls_cfgs[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "sluice: configuration error: listen tls: %s\n", err);
            return 1;
        }
    }
    printf("sluice: configuration %s is valid\n", cfg->path);
    return 0;
}

static int print_config(const sl_config_t *cfg)
{
    json_t *doc = sl_config_effective(cfg);
    char *text = json_dumps(doc, JSON_INDENT(2));
    json_decref(doc);
    if (!text)
        return 1;
    puts(text);
    free(text);
    return 0;
}

enum { MODE_RUN, MODE_TEST, MODE_PRINT, MODE_SIGNAL };

/* Once the workers are up: the pid file and the service manager. */
static int announce(server_t *s, char *err, size_t errlen)
{
    if (s->cfg->pid_file) {
        if (sl_service_write_pid(s->cfg->pid_file, err, errlen) != 0)
            return SL_ERROR;
        s->pid_written = sl_strdup(s->cfg->pid_file);
    }
    fprintf(stderr, "sluice %s: %d worker(s) running, config %s\n", SL_VERSION, s->nworkers,
            s->cfg->path);
    char state[64];
    snprintf(state, sizeof(state), "READY=1\nMAINPID=%ld", (long)getpid());
    sl_service_notify(state);
    return 0;
}

static int run(server_t *s)
{
    char err[1024];
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGCHLD);
    /* Block before the threads start so only sigtimedwait sees them. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sl_service_take_sockets(); /* it edits the environment: before any thread */
    /* The jobs thread starts after the mask, so it blocks them too. */
    if (sl_jobs_start(sl_config_section(s->cfg, "jobs")) != 0) {
        fprintf(stderr, "sluice: cannot start the jobs thread\n");
        return 1;
    }
    if (sl_access_open(s->cfg->access_log_path, err, sizeof(err)) != 0 ||
        sl_reload_build(s->cfg, err, sizeof(err)) != 0 || open_sockets(s, err, sizeof(err)) != 0) {
        fprintf(stderr, "sluice: %s\n", err);
        return 1;
    }
    if (start_workers(s) != 0) {
        fprintf(stderr, "sluice: cannot start workers\n");
        command_all(s, SL_WORKER_CMD_STOP);
        return 1;
    }
    if (announce(s, err, sizeof(err)) != 0) {
        fprintf(stderr, "sluice: %s\n", err);
        command_all(s, SL_WORKER_CMD_STOP);
        return 1;
    }
    wait_for_signals(s, &set);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"print-config", no_argument, NULL, 'P'},
        {"signal", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *sig = NULL;
    int mode = MODE_RUN, opt;
    char err[1024];
    server_t s = {0};

    while ((opt = getopt_long(argc, argv, "c:ts:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 't': mode = MODE_TEST; break;
        case 'P': mode = MODE_PRINT; break;
        case 's': mode = MODE_SIGNAL, sig = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("sluice %s\n", SL_VERSION); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 1;
    }
    register_handlers();
    s.path = path;
    s.cfg = load_config(path, err, sizeof(err));
    if (!s.cfg) {
        fprintf(stderr, "sluice: configuration error: %s\n", err);
        return 1;
    }
    int rc;
    if (mode != MODE_RUN) {
        rc = mode == MODE_TEST    ? check_only(s.cfg)
             : mode == MODE_PRINT ? print_config(s.cfg)
                                  : sl_service_signal(s.cfg->pid_file, sig);
        sl_config_free(s.cfg);
        return rc;
    }
    sl_log_set_level(s.cfg->log_level);
    sl_conn_set_starters(sl_h1_conn_start, sl_h2_conn_start);
    signal(SIGPIPE, SIG_IGN);
    s.nworkers = s.cfg->workers;
    sl_metrics_reload(-1);
    rc = run(&s);
    server_free(&s);
    if (rc == 0)
        fprintf(stderr, "sluice: stopped\n");
    return rc;
}
