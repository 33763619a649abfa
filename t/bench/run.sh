#!/bin/bash
# sluice - SPDX-License-Identifier: MIT
#
# `make bench` entry: sluice (SLUICE_BIN) against h2o and nginx, each pinned
# to CPU 1 with one worker, load generators on CPU 0, loopback only. Prints
# the table and writes t/bench/out/latest.md. Knobs (environment):
# BENCH_ROUNDS=3 BENCH_DURATION=4 BENCH_IDLE_CONNS=4000 BENCH_HANDSHAKES=2000
# BENCH_SERVERS=sluice,h2o,nginx,nghttpx
# BENCH_WORKLOADS=h2c,h2tls,h1,large,large_static,h2c_return,hs_ec,hs_rsa,idle
# BENCH_CALLGRIND=1 (adds instructions/request, slow) BENCH_KEEP=1 (keep temp dir).
# BENCH_EXTRA=proxy,ws,jobs (area benchmarks run after the table; "" for none).
# See docs/bench.md for the method and how to read the table.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

missing=""
for tool in h2load wrk h2o nginx taskset openssl curl; do
    PATH=$PATH:/usr/sbin command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ "${BENCH_CALLGRIND:-0}" = 1 ] && { command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"; }
if [ -n "$missing" ]; then
    echo "bench: missing:$missing (run: make deps)" >&2
    exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "bench: needs 2 CPUs (server on CPU 1, load on CPU 0)" >&2
    exit 1
fi

# A few thousand idle connections need as many descriptors in the server
# and in the client; both inherit this limit.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 20000 ]; then hard=20000; fi
ulimit -n "$hard"

export PATH=$PATH:/usr/sbin
/usr/bin/python3 "$here/bench.py"

# Area benchmarks, each standalone (see the scripts' headers).
extra=",${BENCH_EXTRA-proxy,ws,jobs},"
case $extra in *,proxy,*)
    echo; echo "== proxy: h2 clients -> proxy -> HTTP/1.1 and h2c upstreams (sluice vs nghttpx vs nginx)"
    /usr/bin/python3 "$here/proxy_bench.py" "$SLUICE_BIN" --rounds "${BENCH_ROUNDS:-3}" \
        || echo "proxy bench failed" >&2;;
esac
case $extra in *,ws,*)
    echo; echo "== ws: echo round trips/s and broadcast fan-out (1 sender, 1000 subscribers)"
    /usr/bin/python3 "$here/ws_bench.py" "$SLUICE_BIN" --seconds 5 || echo "ws bench failed" >&2;;
esac
case $extra in *,jobs,*)
    echo; echo "== jobs: jobs/s, submit-to-first-byte p50/p99, fan-out to 1000 SSE subscribers; memory store, then the Redis store (two instances) and the redis executor"
    /usr/bin/python3 "$here/jobs_bench.py" "$SLUICE_BIN" || echo "jobs bench failed" >&2;;
esac
