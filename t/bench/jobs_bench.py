#!/usr/bin/python3
"""Jobs benchmark (issues 5 and 12), standalone:

    t/bench/jobs_bench.py [--quick] [--store memory|redis|both] SLUICE_BIN

starts sluice on a free loopback port with a builtin ticker executor and
prints three numbers per store (memory: one instance; redis: a
redis-server on a free port and two instances sharing it, plus the
"redis" executor with --redis-workers reference workers,
examples/redis_worker.py):
  1. job throughput: jobs created and finished per second (h2load, each
     request is one ticker job of one event, streamed back);
  2. submit-to-first-byte latency p50/p99 (one keep-alive HTTP/1.1
     connection, sequential jobs, time from sending the request to the
     first body byte);
  3. fan-out: 1 job, N SSE subscribers (default 1000) on
     /jobs/{id}/events; events per second delivered in total (redis:
     half the subscribers on each instance, the job made on the first).
The redis executor's numbers are bound by the Python workers, not by
sluice: they say what a job costs end to end through a queue.
"""
import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "..", "..", "examples", "redis_worker.py")


def start_redis():
    d = tempfile.mkdtemp(prefix="jobs-bench-redis-")
    port = free_port()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
                          "--save", "", "--daemonize", "no"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port, d
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("redis-server did not start")


def start(binary, port, workers, redis_port=None):
    d = tempfile.mkdtemp(prefix="jobs-bench-")
    cfg = {
        "workers": workers, "access_log": False, "log_level": "warn",
        "listen": [{"addr": "127.0.0.1:%d" % port}],
        "limits": {"max_conns_per_worker": 20000},
        "executors": {"tick": {"type": "builtin", "kind": "ticker", "max_events": 100000}},
        "jobs": {"max_jobs": 1000000, "ttl_s": 2, "max_tombstones": 1000},
        "routes": [{"path": "/v1/tick", "handler": "job", "executor": "tick"},
                   {"path": "/jobs", "handler": "jobs_api"},
                   {"path": "/healthz", "handler": "health", "check": "live"}],
    }
    if redis_port:
        cfg["jobs"]["store"] = {"type": "redis", "url": "redis://127.0.0.1:%d/0" % redis_port}
        cfg["executors"]["work"] = {"type": "redis", "stream": "sluice:work:bench",
                                    "concurrency": 10000, "queue": 100000}
        cfg["routes"].append({"path": "/v1/work", "handler": "job", "executor": "work"})
    path = os.path.join(d, "sluice.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    p = subprocess.Popen([binary, "-c", path], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(d, "stderr"), "wb"))
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return p, d
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("sluice did not start; see %s/stderr" % d)


def throughput(port, n, path="/v1/tick?n=1&interval_ms=0"):
    h2load = shutil.which("h2load")
    if not h2load:
        return "h2load not installed"
    r = subprocess.run([h2load, "-n", str(n), "-c", "4", "-m", "32",
                        "http://127.0.0.1:%d%s" % (port, path)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    out = r.stdout.decode()
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    ok = re.search(r"(\d+) succeeded", out)
    codes = re.search(r"status codes: (.*)", out)  # what the others got
    return "%s jobs/s (%s of %d jobs succeeded; status codes: %s)" % (
        m.group(3) if m else "?", ok.group(1) if ok else "?", n,
        codes.group(1) if codes else "?")


def first_byte(port, n, path="/v1/tick?n=1&interval_ms=0"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("GET", path)
        r = c.getresponse()
        r.read(1)
        lat.append(time.perf_counter() - t0)
        r.read()
    c.close()
    lat.sort()
    return "p50 %.3f ms, p99 %.3f ms (%d jobs)" % (lat[len(lat) // 2] * 1e3,
                                                 lat[int(len(lat) * 0.99)] * 1e3, n)


async def subscriber(port, jid, counts, i):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /jobs/%s/events HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n" % jid.encode())
    await w.drain()
    n = 0
    tail = b""
    while True:
        b = await r.read(65536)
        if not b:
            break
        buf = tail + b
        n += buf.count(b"\nevent: data\n")
        tail = buf[-12:]  # shorter than the pattern: nothing counted twice
    counts[i] = n
    w.close()


async def fan_out_run(ports, jid, subs):
    counts = [0] * subs
    await asyncio.gather(*[subscriber(ports[i % len(ports)], jid, counts, i)
                           for i in range(subs)])
    return counts


def fan_out(port, subs, events, ports=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/v1/tick?n=%d&size=64&interval_ms=1" % events,
              headers={"Prefer": "respond-async"})
    r = c.getresponse()
    jid = r.getheader("job-id")
    r.read()
    t0 = time.perf_counter()
    counts = asyncio.run(fan_out_run(ports or [port], jid, subs))
    dt = time.perf_counter() - t0
    total = sum(counts)
    bad = sorted(set(x for x in counts if x != events))
    if bad:
        print("  incomplete counts:", bad[:10], file=sys.stderr)
    return "%d subscribers x %d events: %.0f events/s delivered (%.2f s, %d/%d complete)" % (
        subs, events, total / dt, dt, sum(1 for x in counts if x == events), subs)


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def run_memory(a):
    port = free_port()
    p, d = start(os.path.abspath(a.binary), port, a.workers)
    try:
        print("memory store:")
        print("  jobs throughput (builtin ticker):", throughput(port, 2000 if a.quick else 20000))
        print("  submit-to-first-byte:", first_byte(port, 200 if a.quick else 2000))
        print("  fan-out:", fan_out(port, 100 if a.quick else a.subscribers,
                                    200 if a.quick else 1000))
    finally:
        stop(p)
        shutil.rmtree(d, ignore_errors=True)


def run_redis(a):
    if not shutil.which("redis-server"):
        print("redis store: redis-server not installed")
        return
    rp, rport, rd = start_redis()
    ports = [free_port(), free_port()]
    procs = [start(os.path.abspath(a.binary), pt, a.workers, rport) for pt in ports]
    workers = []
    try:
        print("redis store (two instances, one redis-server):")
        print("  jobs throughput (builtin ticker):", throughput(ports[0], 2000 if a.quick else 20000))
        print("  submit-to-first-byte:", first_byte(ports[0], 200 if a.quick else 2000))
        print("  fan-out over both instances:", fan_out(ports[0], 100 if a.quick else a.subscribers,
                                                        200 if a.quick else 1000, ports))
        url = "redis://127.0.0.1:%d/0" % rport
        workers = [subprocess.Popen([sys.executable, WORKER, "--url", url, "--stream",
                                     "sluice:work:bench", "--name", "w%d" % i],
                                    stdout=subprocess.DEVNULL,
                                    stderr=open(os.path.join(rd, "worker%d.log" % i), "wb"))
                   for i in range(a.redis_workers)]
        print("  redis executor, %d Python workers: throughput:" % a.redis_workers,
              throughput(ports[0], 500 if a.quick else 3000, "/v1/work?n=1&size=16"))
        print("  redis executor: submit-to-first-byte:",
              first_byte(ports[0], 100 if a.quick else 500, "/v1/work?n=1&size=16"))
    finally:
        for w in workers:
            w.kill()
            w.wait()
        for p, d in procs:
            stop(p)
            shutil.rmtree(d, ignore_errors=True)
        stop(rp)
        for i in range(len(workers)):  # a worker that died says why
            with open(os.path.join(rd, "worker%d.log" % i), "rb") as f:
                tail = f.read()[-2000:]
            if b"Traceback" in tail:
                print("  worker %d failed:" % i, tail.decode(errors="replace"), file=sys.stderr)
        shutil.rmtree(rd, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--store", choices=("memory", "redis", "both"), default="both")
    ap.add_argument("--redis-workers", type=int, default=2)
    a = ap.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    if a.store in ("memory", "both"):
        run_memory(a)
    if a.store in ("redis", "both"):
        run_redis(a)


if __name__ == "__main__":
    main()
