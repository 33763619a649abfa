/* sluice - SPDX-License-Identifier: MIT
 *
 * Opening a file below the document root so that nothing outside it can
 * be reached, whatever the symlinks in the tree say. The kernel does the
 * resolution (openat2 RESOLVE_BENEATH: ".." and absolute symlinks that
 * would leave the root fail with EXDEV; RESOLVE_NO_MAGICLINKS refuses
 * /proc-style links). Kernels before 5.6 lack openat2; there every
 * component is opened with O_NOFOLLOW, which refuses all symlinks.
 * Files are opened O_NONBLOCK so a FIFO in the root cannot stall a worker.
 */
#include "static_int.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

/* Cleared once by the first worker that sees ENOSYS. */
static atomic_int have_openat2 = 1;

/* The O_NOFOLLOW walk: each directory component, then the last name. */
static int open_walk(int rootfd, const char *rel)
{
    int dir = rootfd;
    const char *p = rel;
    for (;;) {
        const char *slash = strchr(p, '/');
        if (!slash)
            break;
        char name[256];
        size_t n = (size_t)(slash - p);
        if (n >= sizeof(name)) {
            if (dir != rootfd)
                close(dir);
            return -ENAMETOOLONG;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        int next = openat(dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        if (dir != rootfd)
            close(dir);
        if (next < 0)
            return -e;
        dir = next;
        p = slash + 1;
    }
    int fd = openat(dir, *p ? p : ".", OPEN_FLAGS | O_NOFOLLOW);
    int e = errno;
    if (dir != rootfd)
        close(dir);
    return fd >= 0 ? fd : -e;
}

int sl_static_open(int rootfd, const char *rel)
{
    if (atomic_load_explicit(&have_openat2, memory_order_relaxed)) {
        struct open_how how;
        memset(&how, 0, sizeof(how));
        how.flags = OPEN_FLAGS;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        long fd = syscall(SYS_openat2, rootfd, *rel ? rel : ".", &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        if (errno != ENOSYS)
            return -errno;
        atomic_store_explicit(&have_openat2, 0, memory_order_relaxed);
    }
    return open_walk(rootfd, rel);
}
