#!/usr/bin/python3
"""A reference worker for sluice's "redis" executor (docs/redis.md, "Work
queue"). Copy it and replace run() with your work. Debian: python3-redis.

    python3 examples/redis_worker.py --url redis://127.0.0.1:6379/0 \\
        --stream sluice:work:render --lease-s 30

The protocol, in order:
  1. XAUTOCLAIM the stream's entries whose lease ran out (a worker died),
     else XREADGROUP a new one.
  2. Skip (XACK) a job whose hash says cancel=1 or a final state; fail a
     job delivered more than max_attempts times.
  3. Append events to the job's stream with entry id 0-* through FENCED:
     the append happens only while this worker still holds the entry (and
     renews its lease); a cancelled job stops it.
  4. Append the end event, set the hash's final state and TTLs, XACK.

The demo work: the request body, if any, is echoed back in pieces of
size= bytes; then n= chunks "chunk <i>" padded to size= bytes, delay_ms=
apart. A job taken over after a worker died resumes after the data
events already written, so its output is whole and never doubled."""

import argparse
import json
import os
import socket
import sys
import time
import urllib.parse

import redis

FINAL = ("succeeded", "failed", "cancelled", "timed_out", "expired")

# KEYS: work stream, job events, job hash. ARGV: group, entry id,
# consumer, type, data, max_events. 1: appended; 0: the lease is lost
# (another worker holds the job); -1: the job was cancelled.
FENCED = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
if redis.call('HGET', KEYS[3], 'cancel') == '1' then return -1 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '0-*', 'type', ARGV[4], 'data', ARGV[5])
return 1
"""


class Lost(Exception):
    """The job is no longer ours (lease lost or cancelled)."""


class Job:
    def __init__(self, w, entry_id, f):
        self.w, self.entry = w, entry_id
        self.f = {k.decode(): v for k, v in f.items()}
        self.id = self.f["id"].decode()
        self.meta, self.events = self.f["meta"].decode(), self.f["events"].decode()

    def s(self, k, default=""):
        v = self.f.get(k)
        return v.decode() if v is not None else default

    def emit(self, type_, data):
        if isinstance(data, (dict, list)):
            data = json.dumps(data, separators=(",", ":"))
        r = self.w.fenced(keys=[self.w.stream, self.events, self.meta],
                          args=[self.w.group, self.entry, self.w.name, type_, data,
                                self.s("max_events", "10000")])
        if r != 1:
            raise Lost("cancelled" if r == -1 else "lease lost")

    def finish(self, state, exit_code):
        self.emit("end", {"state": state, "exit_code": exit_code})
        ttl = int(self.s("ttl_s", "300"))
        r = self.w.r
        r.hset(self.meta, mapping={"state": state, "exit_code": exit_code,
                                   "ended_ms": int(time.time() * 1000)})
        r.expire(self.meta, 2 * ttl)
        r.expire(self.events, ttl + 1)
        r.xack(self.w.stream, self.w.group, self.entry)

    def data_written(self):
        """Data events already in the job's stream (an earlier attempt's)."""
        n = 0
        for _, f in self.w.r.xrange(self.events):
            n += f.get(b"type") == b"data"
        return n


def run(job, done):
    """The work. done = data events an earlier attempt already wrote."""
    q = urllib.parse.parse_qs(job.s("query"))
    n = int(q.get("n", ["10"])[0])
    size = max(2, int(q.get("size", ["16"])[0]))
    delay = int(q.get("delay_ms", ["0"])[0]) / 1000.0
    body = job.f.get("body", b"")
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    pieces += [("chunk %d" % i).ljust(size - 1, ".").encode() + b"\n" for i in range(n)]
    for p in pieces[done:]:
        job.emit("data", p)
        if delay:
            time.sleep(delay)
    return 0


class Worker:
    def __init__(self, a):
        self.r = redis.Redis.from_url(a.url)
        self.stream, self.group, self.lease_ms = a.stream, a.group, a.lease_s * 1000
        self.name = a.name or "%s-%d" % (socket.gethostname(), os.getpid())
        self.fenced = self.r.register_script(FENCED)
        try:
            self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def log(self, msg):
        print("worker %s: %s" % (self.name, msg), file=sys.stderr, flush=True)

    def next_entry(self):
        _, claimed, _ = self.r.xautoclaim(self.stream, self.group, self.name,
                                          self.lease_ms, "0-0", count=1)
        if claimed:
            return claimed[0]
        got = self.r.xreadgroup(self.group, self.name, {self.stream: ">"}, count=1, block=1000)
        return got[0][1][0] if got else None

    def attempts(self, entry_id):
        p = self.r.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
        return p[0]["times_delivered"] if p else 1

    def handle(self, entry_id, fields):
        if not fields:  # the entry was trimmed or deleted
            self.r.xack(self.stream, self.group, entry_id)
            return
        job = Job(self, entry_id, fields)
        state = (self.r.hget(job.meta, "state") or b"").decode()
        if self.r.hget(job.meta, "cancel") == b"1" or state in FINAL:
            self.r.xack(self.stream, self.group, entry_id)
            return
        n = self.attempts(entry_id)
        try:
            if n > int(job.s("max_attempts", "3")):
                self.log("job %s: attempt %d is past max_attempts; it fails" % (job.id, n))
                job.emit("error", {"error": "worker lost: max_attempts reached"})
                job.finish("failed", -1)
                return
            self.log("job %s: attempt %d" % (job.id, n))
            job.emit("progress", {"worker": self.name, "attempt": n})
            code = run(job, job.data_written())
            job.finish("succeeded" if code == 0 else "failed", code)
            self.log("job %s: done" % job.id)
        except Lost as e:
            self.log("job %s: stopped (%s)" % (job.id, e))
            if str(e) == "cancelled":
                self.r.xack(self.stream, self.group, entry_id)

    def serve(self):
        while True:
            e = self.next_entry()
            if e:
                self.handle(*e)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--stream", required=True, help="the executor's stream")
    ap.add_argument("--group", default="sluice", help="the executor's group")
    ap.add_argument("--lease-s", type=int, default=30, help="the executor's lease_s")
    ap.add_argument("--name", help="consumer name (default host-pid)")
    Worker(ap.parse_args()).serve()


if __name__ == "__main__":
    main()
