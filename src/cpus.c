/* sluice - SPDX-License-Identifier: MIT
 *
 * CPUs available to the process (cpus.h). The cgroup is found through
 * /proc/self/cgroup; inside a container with its own cgroup namespace that
 * path is "/", the mount's root. Every quota from the process's cgroup up
 * to the root applies, so the smallest wins.
 */
#include "cpus.h"
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CGROUP_ROOT "/sys/fs/cgroup"

int sl_cpus_from_quota(long long quota_us, long long period_us)
{
    if (quota_us <= 0 || period_us <= 0)
        return 0;
    long long n = (quota_us + period_us - 1) / period_us;
    return n > 4096 ? 4096 : (int)n;
}

int sl_cpus_from_cpu_max(const char *text)
{
    long long quota, period;
    if (!text || strncmp(text, "max", 3) == 0)
        return 0;
    if (sscanf(text, "%lld %lld", &quota, &period) != 2)
        return 0;
    return sl_cpus_from_quota(quota, period);
}

static int read_small(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    return 0;
}

static long long read_ll(const char *path)
{
    char buf[64];
    return read_small(path, buf, sizeof(buf)) == 0 ? strtoll(buf, NULL, 10) : -1;
}

/* The least quota on dir and each parent up to root (0: none). */
static int quota_up(const char *root, const char *cgpath, int v2)
{
    char dir[512], file[600], buf[128];
    int best = 0;
    snprintf(dir, sizeof(dir), "%s%s", root, strcmp(cgpath, "/") == 0 ? "" : cgpath);
    for (;;) {
        int n;
        if (v2) {
            snprintf(file, sizeof(file), "%s/cpu.max", dir);
            n = read_small(file, buf, sizeof(buf)) == 0 ? sl_cpus_from_cpu_max(buf) : 0;
        } else {
            snprintf(file, sizeof(file), "%s/cpu.cfs_quota_us", dir);
            long long q = read_ll(file);
            snprintf(file, sizeof(file), "%s/cpu.cfs_period_us", dir);
            n = sl_cpus_from_quota(q, read_ll(file));
        }
        if (n > 0 && (best == 0 || n < best))
            best = n;
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= strlen(root) || !slash)
            return best;
        *slash = '\0';
    }
}

/* One line of /proc/self/cgroup: "0::/path" (v2) or "4:cpu,cpuacct:/path". */
static int quota_of_line(char *line)
{
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2)
        return 0;
    *c2 = '\0';
    char *path = c2 + 1;
    path[strcspn(path, "\n")] = '\0';
    const char *ctrl = c1 + 1;
    if (*ctrl == '\0')
        return quota_up(CGROUP_ROOT, path, 1);
    char list[128];
    snprintf(list, sizeof(list), ",%s,", ctrl);
    if (!strstr(list, ",cpu,"))
        return 0;
    char root[256];
    snprintf(root, sizeof(root), CGROUP_ROOT "/%s", ctrl);
    int n = quota_up(root, path, 0);
    return n ? n : quota_up(CGROUP_ROOT "/cpu", path, 0);
}

static int cgroup_quota(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[1024];
    int best = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        int n = quota_of_line(line);
        if (n > 0 && (best == 0 || n < best))
            best = n;
    }
    fclose(f);
    return best;
}

int sl_cpus_available(void)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int n = online < 1 ? 1 : (int)online;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        n = SL_MIN(n, CPU_COUNT(&set));
    int q = cgroup_quota();
    if (q > 0)
        n = SL_MIN(n, q);
    return n;
}
