/* sluice - SPDX-License-Identifier: MIT
 *
 * The "exec" executor: runs the configured argv (never anything from the
 * request) as a child in its own process group, with the configured
 * environment and working directory. stdin is the request body (a pipe
 * filled by the request's worker) or /dev/null; stdout becomes data events
 * as it is produced; stderr lines go to the log; lines on fd 3 become
 * progress events; the exit status ends the job.
 *
 * posix_spawn with closefrom(4), an empty signal mask and default SIGPIPE
 * (the daemon blocks and ignores signals the child must not inherit);
 * exit is noticed through a pidfd watched by an ev_io on the jobs loop, and
 * reaped there with waitpid, so there are no zombies and no SIGCHLD
 * handler. Timeout and cancel send SIGTERM to the group, then SIGKILL
 * after grace_s.
 */
#include "jobs_int.h"
#include "../config.h"
#include "../log.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define LINE_MAX_BYTES 4096

typedef struct proc_opts {
    char **argv, **envp;
    char *cwd;
    int progress_fd;
} proc_opts_t;

typedef struct line_buf {
    char buf[LINE_MAX_BYTES];
    size_t n;
} line_buf_t;

typedef struct proc {
    sl_jobs_job_t *job;
    pid_t pid;
    ev_io out, err, prog, exited;
    ev_timer timeout, grace;
    line_buf_t errl, progl;
    sl_jobs_state_t outcome; /* set by timeout/cancel; else from the exit */
    int status;
} proc_t;

static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        sl_free(v[i]);
    sl_free(v);
}

static void free_opts(void *opts)
{
    proc_opts_t *o = opts;
    if (!o)
        return;
    strv_free(o->argv);
    strv_free(o->envp);
    sl_free(o->cwd);
    sl_free(o);
}

static int parse_env(json_t *env, const char *p, proc_opts_t *o, char *err, size_t errlen)
{
    if (!env) {
        o->envp = sl_calloc(2, sizeof(char *));
        o->envp[0] = sl_strdup("PATH=/usr/local/bin:/usr/bin:/bin");
        return 0;
    }
    if (!json_is_object(env)) {
        snprintf(err, errlen, "%s.env: must be an object of strings", p);
        return SL_EINVAL;
    }
    o->envp = sl_calloc(json_object_size(env) + 1, sizeof(char *));
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(env, k, v)
    {
        if (!json_is_string(v) || !*k || strchr(k, '=')) {
            snprintf(err, errlen, "%s.env.%s: must be a string (and the name without '=')", p, k);
            return SL_EINVAL;
        }
        o->envp[i] = sl_malloc(strlen(k) + json_string_length(v) + 2);
        sprintf(o->envp[i++], "%s=%s", k, json_string_value(v));
    }
    return 0;
}

static int parse(json_t *o, const char *p, void **opts, char *err, size_t errlen)
{
    static const char *const keys[] = {"argv", "env", "cwd", "progress_fd"};
    proc_opts_t *x = sl_calloc(1, sizeof(*x));
    const char *cwd;
    *opts = x;
    json_t *argv = json_object_get(o, "argv");
    if (sl_jobs_check_keys(o, p, keys, SL_ARRAY_LEN(keys), err, errlen) ||
        sl_conf_get_str(o, p, "cwd", "/", &cwd, err, errlen) ||
        sl_conf_get_bool(o, p, "progress_fd", 1, &x->progress_fd, err, errlen))
        return SL_EINVAL;
    if (!json_is_array(argv) || json_array_size(argv) == 0) {
        snprintf(err, errlen, "%s.argv: must be a non-empty array of strings", p);
        return SL_EINVAL;
    }
    x->argv = sl_calloc(json_array_size(argv) + 1, sizeof(char *));
    for (size_t i = 0; i < json_array_size(argv); i++) {
        json_t *a = json_array_get(argv, i);
        if (!json_is_string(a)) {
            snprintf(err, errlen, "%s.argv[%zu]: must be a string", p, i);
            return SL_EINVAL;
        }
        x->argv[i] = sl_strdup(json_string_value(a));
    }
    if (x->argv[0][0] != '/') {
        snprintf(err, errlen, "%s.argv[0]: must be an absolute path", p);
        return SL_EINVAL;
    }
    x->cwd = sl_strdup(cwd);
    return parse_env(json_object_get(o, "env"), p, x, err, errlen);
}

/* ---- running ---- */

static void stop_io(proc_t *pr, ev_io *w)
{
    if (w->fd >= 0) {
        ev_io_stop(sl_jobs_loop(), w);
        close(w->fd);
        w->fd = -1;
    }
}

static void on_line(proc_t *pr, ev_io *w, const char *line, size_t n)
{
    if (w == &pr->prog) {
        if (n)
            sl_jobs_emit(pr->job, SL_JOBS_EV_PROGRESS, line, n);
        return;
    }
    sl_log(SL_LOG_INFO, NULL, "job %s pid %d stderr: %.*s", pr->job->id, (int)pr->pid, (int)n,
           line);
}

/* Split into lines; an over-long line is passed on in pieces. */
static void feed_lines(proc_t *pr, ev_io *w, line_buf_t *lb, const char *d, size_t n, int eof)
{
    for (size_t i = 0; i < n; i++) {
        if (d[i] == '\n' || lb->n == sizeof(lb->buf)) {
            on_line(pr, w, lb->buf, lb->n);
            lb->n = 0;
            if (d[i] == '\n')
                continue;
        }
        lb->buf[lb->n++] = d[i];
    }
    if (eof && lb->n) {
        on_line(pr, w, lb->buf, lb->n);
        lb->n = 0;
    }
}

/* Read what is there now. Returns 1 at EOF. */
static int drain(proc_t *pr, ev_io *w)
{
    char buf[READ_CHUNK];
    for (int rounds = 0; w->fd >= 0 && rounds < 64; rounds++) {
        ssize_t n = read(w->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        int eof = n <= 0;
        if (w == &pr->out && n > 0)
            sl_jobs_emit(pr->job, SL_JOBS_EV_DATA, buf, (size_t)n);
        else if (w != &pr->out)
            feed_lines(pr, w, w == &pr->err ? &pr->errl : &pr->progl, buf, n > 0 ? (size_t)n : 0,
                       eof);
        if (eof) {
            stop_io(pr, w);
            return 1;
        }
    }
    return 0;
}

static void on_pipe(struct ev_loop *loop, ev_io *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    drain(w->data, w);
}

static void proc_free(proc_t *pr)
{
    stop_io(pr, &pr->out);
    stop_io(pr, &pr->err);
    stop_io(pr, &pr->prog);
    stop_io(pr, &pr->exited);
    ev_timer_stop(sl_jobs_loop(), &pr->timeout);
    ev_timer_stop(sl_jobs_loop(), &pr->grace);
    pr->job->xdata = NULL;
    sl_free(pr);
}

/* The child is gone: take the rest of its output (it is all in the pipes
 * now; a grandchild keeping them open is not waited for), reap, end. */
static void finish(proc_t *pr)
{
    drain(pr, &pr->out);
    drain(pr, &pr->err);
    drain(pr, &pr->prog);
    feed_lines(pr, &pr->err, &pr->errl, NULL, 0, 1);
    feed_lines(pr, &pr->prog, &pr->progl, NULL, 0, 1);
    int code = WIFEXITED(pr->status)     ? WEXITSTATUS(pr->status)
               : WIFSIGNALED(pr->status) ? 128 + WTERMSIG(pr->status)
                                         : -1;
    sl_jobs_state_t state = pr->outcome ? pr->outcome
                            : code == 0 ? SL_JOBS_SUCCEEDED
                                        : SL_JOBS_FAILED;
    /* Whatever is left in the group goes with the job. */
    kill(-pr->pid, SIGKILL);
    sl_jobs_job_t *job = pr->job;
    proc_free(pr);
    sl_jobs_finish(job, state, code, NULL);
}

static void on_exit_ready(struct ev_loop *loop, ev_io *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    proc_t *pr = w->data;
    if (waitpid(pr->pid, &pr->status, WNOHANG) != pr->pid)
        return;
    finish(pr);
}

static void on_grace(struct ev_loop *loop, ev_timer *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    proc_t *pr = w->data;
    kill(-pr->pid, SIGKILL);
}

static void terminate(proc_t *pr, sl_jobs_state_t why)
{
    if (pr->outcome)
        return;
    pr->outcome = why;
    kill(-pr->pid, SIGTERM);
    ev_timer_set(&pr->grace, ((sl_jobs_exec_def_t *)pr->job->exec)->grace_s, 0.);
    ev_timer_start(sl_jobs_loop(), &pr->grace);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    proc_t *pr = w->data;
    sl_log(SL_LOG_INFO, NULL, "job %s: timed out; stopping pid %d", pr->job->id, (int)pr->pid);
    terminate(pr, SL_JOBS_TIMED_OUT);
}

static void watch(proc_t *pr, ev_io *w, int fd, void (*cb)(struct ev_loop *, ev_io *, int))
{
    ev_io_init(w, cb, fd, EV_READ);
    w->data = pr;
    if (fd >= 0) {
        fcntl(fd, F_SETFL, O_NONBLOCK);
        ev_io_start(sl_jobs_loop(), w);
    }
}

static int do_spawn(const proc_opts_t *o, int in, int out, int err, int prog, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    sigaddset(&def, SIGTERM);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGHUP);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    /* Sources are all >= 3, so filling 0..2 first cannot clobber them. */
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, out, 1);
    posix_spawn_file_actions_adddup2(&fa, err, 2);
    if (prog >= 0)
        posix_spawn_file_actions_adddup2(&fa, prog, 3);
    posix_spawn_file_actions_addclosefrom_np(&fa, prog >= 0 ? 4 : 3);
    posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &def);
    int rv = posix_spawn(pid, o->argv[0], &fa, &at, o->argv, o->envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return rv;
}

static void close_all(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

static int start(sl_jobs_job_t *job)
{
    const sl_jobs_exec_def_t *x = job->exec;
    const proc_opts_t *o = x->opts;
    /* p[0..1] stdout, p[2..3] stderr, p[4..5] progress, p[6] stdin */
    int p[7] = {-1, -1, -1, -1, -1, -1, -1};
    if (pipe2(p, O_CLOEXEC) || pipe2(p + 2, O_CLOEXEC) ||
        (o->progress_fd && pipe2(p + 4, O_CLOEXEC)))
        goto fail;
    p[6] = job->stdin_fd >= 0 ? job->stdin_fd : open("/dev/null", O_RDONLY | O_CLOEXEC);
    job->stdin_fd = -1;
    if (p[6] < 0)
        goto fail;
    pid_t pid;
    int rv = do_spawn(o, p[6], p[1], p[3], p[5], &pid);
    if (rv != 0) {
        sl_log(SL_LOG_WARN, NULL, "job %s: cannot run %s: %s", job->id, o->argv[0], strerror(rv));
        goto fail;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    SL_ASSERT(pidfd >= 0); /* Linux >= 5.3; the pid is our unreaped child */
    fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    close(p[1]);
    close(p[3]);
    if (p[5] >= 0)
        close(p[5]);
    close(p[6]);
    proc_t *pr = sl_calloc(1, sizeof(*pr));
    pr->job = job;
    pr->pid = pid;
    watch(pr, &pr->out, p[0], on_pipe);
    watch(pr, &pr->err, p[2], on_pipe);
    watch(pr, &pr->prog, p[4], on_pipe);
    watch(pr, &pr->exited, pidfd, on_exit_ready);
    ev_timer_init(&pr->timeout, on_timeout, x->timeout_s, 0.);
    pr->timeout.data = pr;
    ev_timer_init(&pr->grace, on_grace, 0., 0.);
    pr->grace.data = pr;
    if (x->timeout_s > 0)
        ev_timer_start(sl_jobs_loop(), &pr->timeout);
    job->xdata = pr;
    sl_log(SL_LOG_DEBUG, NULL, "job %s: started pid %d", job->id, (int)pid);
    return 0;
fail:
    close_all(p, SL_ARRAY_LEN(p));
    return SL_ERROR;
}

static void cancel(sl_jobs_job_t *job, sl_jobs_state_t why)
{
    proc_t *pr = job->xdata;
    if (!pr)
        return;
    if (sl_jobs_is_stopping()) {
        /* Shutdown: no loop any more; kill and reap here. */
        pr->outcome = why;
        kill(-pr->pid, SIGKILL);
        while (waitpid(pr->pid, &pr->status, 0) < 0 && errno == EINTR)
            ;
        finish(pr);
        return;
    }
    terminate(pr, why);
}

const sl_jobs_executor_t sl_jobs_exec_process = {
    .type = "exec",
    .parse = parse,
    .free_opts = free_opts,
    .prepare = NULL,
    .start = start,
    .cancel = cancel,
};
