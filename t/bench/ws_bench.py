#!/usr/bin/python3
"""WebSocket benchmark for sluice: echo round trips per second and
broadcast fan-out (1 sender, N subscribers, messages delivered per
second). Standalone: starts the given sluice binary on a free loopback
port with a temporary config, drives it with python3-websockets, prints
one line per measurement and stops the daemon by PID.

    t/bench/ws_bench.py BUILD/sluice [--seconds 5] [--clients 16] [--subscribers 1000]
"""

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

import websockets


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


async def echo_bench(url, clients, seconds, size):
    msg = b"x" * size
    stop = time.monotonic() + seconds
    counts = []

    async def one():
        n = 0
        async with websockets.connect(url, compression=None, max_size=None) as ws:
            while time.monotonic() < stop:
                await ws.send(msg)
                await ws.recv()
                n += 1
        counts.append(n)
    await asyncio.gather(*[one() for _ in range(clients)])
    return sum(counts) / seconds


async def broadcast_bench(url, subscribers, seconds, size):
    subs = []
    for i in range(0, subscribers, 100):
        subs += await asyncio.gather(*[websockets.connect(url, compression=None, max_queue=None)
                                       for _ in range(min(100, subscribers - i))])
    pub = await websockets.connect(url, compression=None)
    await asyncio.sleep(0.3)
    delivered = 0
    msg = "b" * size
    t0 = time.monotonic()
    sent = 0
    while time.monotonic() - t0 < seconds:
        await pub.send(msg)
        sent += 1
        # lock step on the publisher's own copy keeps queues short
        await pub.recv()
        got = await asyncio.gather(*[s.recv() for s in subs])
        delivered += len(got)
    elapsed = time.monotonic() - t0
    for s in subs + [pub]:
        await s.close()
    return sent / elapsed, delivered / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sluice")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * a.subscribers + 256)), hard))
    port = free_port()
    d = tempfile.mkdtemp(prefix="ws-bench-")
    cfg = {"workers": a.workers, "access_log": False, "log_level": "warn",
           "listen": [{"addr": "127.0.0.1:%d" % port}],
           "limits": {"max_conns_per_worker": 4 * a.subscribers + 100},
           "routes": [
               {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
               {"path": "/_h/ws/echo", "handler": "ws", "app": "echo", "deflate": False},
               {"path": "/_h/ws/broadcast/", "handler": "ws", "app": "broadcast",
                "deflate": False, "max_subscribers": a.subscribers + 10}]}
    path = os.path.join(d, "sluice.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    proc = subprocess.Popen([a.sluice, "-c", path], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(d, "stderr.log"), "wb"))
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        base = "ws://127.0.0.1:%d" % port
        rt = asyncio.run(echo_bench(base + "/_h/ws/echo", a.clients, a.seconds, a.size))
        print("ws echo: %d clients, %d-byte messages: %.0f round trips/s" % (a.clients, a.size, rt))
        sent, deliv = asyncio.run(broadcast_bench(base + "/_h/ws/broadcast/bench",
                                                  a.subscribers, a.seconds, a.size))
        print("ws broadcast: 1 sender, %d subscribers, %d-byte messages: %.0f published/s, "
              "%.0f delivered/s" % (a.subscribers, a.size, sent, deliv))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
