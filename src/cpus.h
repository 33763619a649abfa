/* sluice - SPDX-License-Identifier: MIT
 *
 * How many CPUs this process may use, for "workers": "auto": the least of
 * the online CPUs, the CPU affinity mask (taskset, cpuset) and the cgroup
 * CPU quota (cgroup v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us),
 * a quota rounded up ("150000 100000" is 2). A container limited with
 * --cpus=2 on a 64-core host then runs 2 workers, not 64.
 */
#ifndef SL_CPUS_H
#define SL_CPUS_H

#include "sl.h"

/* At least 1. */
int sl_cpus_available(void);

/* The CPUs a quota allows: a cgroup v2 cpu.max text ("max 100000",
 * "200000 100000"), 0 when unlimited or unreadable. */
int sl_cpus_from_cpu_max(const char *text);
/* The same from cgroup v1 numbers (quota -1 = unlimited). */
int sl_cpus_from_quota(long long quota_us, long long period_us);

#endif
