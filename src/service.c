/* sluice - SPDX-License-Identifier: MIT
 *
 * Service manager and container duties (service.h). The notify protocol
 * is one datagram per state on an AF_UNIX socket ("@" = abstract name),
 * simple enough not to need libsystemd. Activated sockets are matched to
 * listeners by address (getsockname), so the unit's ListenStream= lines
 * and the config's "listen" can be written in any order.
 */
#include "service.h"
#include "log.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_INHERITED 64
#define LISTEN_FDS_START 3

static int inherited[MAX_INHERITED];
static size_t ninherited;

void sl_service_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = path ? strlen(path) : 0;
    if (n == 0 || n >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@'))
        return;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
        sl_log(SL_LOG_WARN, NULL, "NOTIFY_SOCKET %s: %s", path, strerror(errno));
    close(fd);
}

void sl_service_take_sockets(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (!pid || !fds || strtol(pid, NULL, 10) != (long)getpid())
        return;
    long n = strtol(fds, NULL, 10);
    for (long i = 0; i < n && ninherited < MAX_INHERITED; i++) {
        int fd = LISTEN_FDS_START + (int)i;
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        inherited[ninherited++] = fd;
    }
    /* Not for the processes the exec executor starts. */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

static int same_addr(int fd, const sl_listener_cfg_t *lc)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int type = 0;
    socklen_t tl = sizeof(type);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 || len != lc->sslen ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM)
        return 0;
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (void *)&ss, *b = (const void *)&lc->ss;
        return a->sin6_port == b->sin6_port &&
               memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
    }
    const struct sockaddr_in *a = (void *)&ss, *b = (const void *)&lc->ss;
    return ss.ss_family == AF_INET && a->sin_port == b->sin_port &&
           a->sin_addr.s_addr == b->sin_addr.s_addr;
}

int sl_service_socket_for(const sl_listener_cfg_t *lc)
{
    for (size_t i = 0; i < ninherited; i++) {
        if (inherited[i] >= 0 && same_addr(inherited[i], lc)) {
            int fd = inherited[i];
            inherited[i] = -1;
            return fd;
        }
    }
    return -1;
}

void sl_service_close_unused(void)
{
    for (size_t i = 0; i < ninherited; i++) {
        if (inherited[i] < 0)
            continue;
        sl_log(SL_LOG_WARN, NULL, "socket activation: fd %d matches no listener; closed",
               inherited[i]);
        close(inherited[i]);
        inherited[i] = -1;
    }
}

int sl_service_write_pid(const char *path, char *err, size_t errlen)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0 ||
        rename(tmp, path) != 0) {
        snprintf(err, errlen, "pid_file %s: %s", path, strerror(errno));
        unlink(tmp);
        return SL_ERROR;
    }
    return 0;
}

static long read_pid(const char *path)
{
    char buf[32] = {0};
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *end;
    long pid = strtol(buf, &end, 10);
    return pid > 0 && (*end == '\n' || *end == '\0') ? pid : -1;
}

void sl_service_remove_pid(const char *path)
{
    if (path && read_pid(path) == (long)getpid())
        unlink(path);
}

int sl_service_signal(const char *path, const char *what)
{
    static const struct {
        const char *name;
        int sig;
    } sigs[] = {{"reload", SIGHUP}, {"reopen", SIGUSR1}, {"stop", SIGTERM}};
    int sig = 0;
    for (size_t i = 0; i < SL_ARRAY_LEN(sigs); i++)
        if (strcmp(what, sigs[i].name) == 0)
            sig = sigs[i].sig;
    if (!sig) {
        fprintf(stderr, "sluice: -s %s: expected reload, reopen or stop\n", what);
        return 1;
    }
    if (!path) {
        fprintf(stderr, "sluice: -s %s: the configuration sets no pid_file\n", what);
        return 1;
    }
    long pid = read_pid(path);
    if (pid < 0) {
        fprintf(stderr, "sluice: -s %s: no pid in %s\n", what, path);
        return 1;
    }
    if (kill((pid_t)pid, sig) != 0) {
        fprintf(stderr, "sluice: -s %s: pid %ld: %s\n", what, pid, strerror(errno));
        return 1;
    }
    return 0;
}

void sl_service_reap(void)
{
    int status;
    while (waitpid(-1, &status, WNOHANG | __WNOTHREAD) > 0) {
    }
}
