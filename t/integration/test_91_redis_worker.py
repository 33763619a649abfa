"""The "redis" executor (issue 12): jobs go to external workers through a
Redis Stream and a consumer group; the workers are the reference worker
in examples/redis_worker.py (python3-redis), started here by PID against
a real redis-server on a free port. Two sluice instances share the
store: a job submitted on A is followed on B; its body reaches the
worker; a worker killed mid-job is replaced after the lease and the
output is whole, never doubled; past max_attempts the job fails; a
cancel reaches the worker; the job goes on while A restarts, and a
client resumes on A after it is back."""

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import ROUTES, SLOW, wait_for
from redisserver import RedisServer
from test_90_redis import h1, sse, submit, wait_state

WORKER = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "redis_worker.py")
STREAM = "t91:work:demo"


def config(redis_url, **executor):
    return {
        "executors": {"demo": dict({"type": "redis", "stream": STREAM, "lease_s": 1,
                                    "max_attempts": 3, "headers": ["content-type", "x-tag"]},
                                   **executor)},
        "jobs": {"heartbeat_s": 1, "store": {"type": "redis", "url": redis_url, "prefix": "t91:"}},
        "routes": [
            {"path": "/v1/tick", "handler": "job", "executor": "demo", "reply": "async"},
            {"path": "/jobs", "handler": "jobs_api"},
        ] + ROUTES,
    }


class Workers:
    def __init__(self, tmp_path, url):
        self.url, self.dir, self.procs = url, str(tmp_path), []

    def start(self, name):
        log = open(os.path.join(self.dir, name + ".log"), "wb")
        p = subprocess.Popen([sys.executable, WORKER, "--url", self.url, "--stream", STREAM,
                              "--lease-s", "1", "--name", name],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.procs.append(p)
        return p

    def log(self, name):
        with open(os.path.join(self.dir, name + ".log"), "rb") as f:
            return f.read().decode()

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def env(tmp_path, sluice_factory):
    r = RedisServer(str(tmp_path)).start()
    ws = Workers(tmp_path, r.url)

    def make(**executor):
        cfg = config(r.url, **executor)
        return sluice_factory(**cfg), sluice_factory(**cfg)
    yield r, ws, make
    ws.stop_all()
    r.stop()


def chunks(n, size):
    return b"".join(("chunk %d" % i).ljust(size - 1, ".").encode() + b"\n" for i in range(n))


def result(srv, jid):
    st, hdrs, body = h1(srv, "GET", "/jobs/%s/result" % jid)
    return st, hdrs, body


def test_worker_runs_the_job_and_every_instance_follows(env):
    r, ws, make = env
    a, b = make()
    ws.start("w1")
    jid = submit(a, "n=40&size=24&delay_ms=10")
    blocks = sse(b, jid)  # B, live, from Redis
    assert blocks[0].startswith(b"id: 1\nevent: started")
    assert b"event: progress" in blocks[1] and b'"attempt":1' in blocks[1]
    assert blocks[-1].startswith(b"id: 43\nevent: end") and b"succeeded" in blocks[-1]
    st, hdrs, body = result(a, jid)
    assert st == 200 and body == chunks(40, 24), body[:80]
    assert wait_state(a, jid, ("succeeded",))["exit_code"] == 0
    assert r.client().hget("t91:job:" + jid, "state") == b"succeeded"
    assert r.client().xpending(STREAM, "sluice")["pending"] == 0  # acknowledged


def test_body_and_headers_reach_the_worker(env):
    r, ws, make = env
    a, _ = make()
    ws.start("w1")
    c = http.client.HTTPConnection("127.0.0.1", a.h2c_port, timeout=20 * SLOW)
    c.request("POST", "/v1/tick?n=1&size=8", body=b"hello, worker",
              headers={"x-tag": "blue", "authorization": "secret", "content-type": "text/plain"})
    resp = c.getresponse()
    assert resp.status == 202
    jid = json.loads(resp.read())["id"]
    c.close()
    wait_state(a, jid, ("succeeded",))
    assert result(a, jid)[2] == b"hello, worker" + chunks(1, 8)
    entry = r.client().xrange(STREAM)[-1][1]
    assert entry[b"id"] == jid.encode() and entry[b"body"] == b"hello, worker"
    assert json.loads(entry[b"headers"]) == {"content-type": "text/plain", "x-tag": "blue"}


def events_so_far(srv, jid):
    st, _, body = h1(srv, "GET", "/jobs/" + jid)
    return json.loads(body)["last_seq"] if st == 200 else 0


def kill_mid_job(ws, srv, query, after):
    """Submit, let worker w1 write `after` events, SIGKILL it, start w2."""
    w1 = ws.start("w1")
    jid = submit(srv, query)
    assert wait_for(lambda: events_so_far(srv, jid) > after, 20 * SLOW)
    w1.send_signal(signal.SIGKILL)
    w1.wait()
    ws.start("w2")
    return jid


def test_killed_worker_is_replaced_after_the_lease(env):
    _, ws, make = env
    a, b = make()
    jid = kill_mid_job(ws, a, "n=60&size=20&delay_ms=30", 12)
    wait_state(b, jid, ("succeeded",), timeout=30)
    body = result(b, jid)[2]
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(chunks(60, 20)).hexdigest()
    assert "attempt 2" in ws.log("w2")


def test_max_attempts_fails_the_job(env):
    _, ws, make = env
    a, _ = make(max_attempts=1)
    jid = kill_mid_job(ws, a, "n=100&size=20&delay_ms=30", 4)
    s = wait_state(a, jid, ("failed",), timeout=30)
    assert s["exit_code"] is None  # no process exit code
    tail = sse(a, jid)
    assert any(b"max_attempts reached" in blk for blk in tail)


def test_cancel_reaches_the_worker(env):
    r, ws, make = env
    a, b = make()
    ws.start("w1")
    jid = submit(a, "n=1000&size=20&delay_ms=20")
    assert wait_for(lambda: events_so_far(a, jid) > 3, 20 * SLOW)
    assert h1(b, "DELETE", "/jobs/" + jid)[0] == 202
    assert wait_state(a, jid, ("cancelled",), timeout=10)["state"] == "cancelled"
    assert wait_for(lambda: "stopped (cancelled)" in ws.log("w1"), 10 * SLOW)
    assert r.client().xpending(STREAM, "sluice")["pending"] == 0


def test_queued_job_cancelled_without_a_worker(env):
    _, _, make = env
    a, _ = make()
    jid = submit(a, "n=3")  # no worker runs
    assert h1(a, "DELETE", "/jobs/" + jid)[0] == 202
    assert wait_state(a, jid, ("cancelled",), timeout=10)["state"] == "cancelled"


def test_job_goes_on_while_the_instance_restarts(env):
    _, ws, make = env
    a, _ = make()
    ws.start("w1")
    jid = submit(a, "n=80&size=20&delay_ms=25")
    first = sse(a, jid, stop_at=10)
    a.stop()
    assert a.returncode == 0
    a.start()  # same ports, a new process: the job is found in Redis
    rest = sse(a, jid, last=10)
    whole = sse(a, jid)
    assert len(whole) == 83  # started, progress, 80 data, end
    assert b"".join(first + rest) == b"".join(whole)
    assert result(a, jid)[2] == chunks(80, 20)


def test_cancel_after_the_maker_is_gone(env):
    _, ws, make = env
    a, b = make()
    ws.start("w1")
    jid = submit(a, "n=1000&size=20&delay_ms=20")
    assert wait_for(lambda: events_so_far(b, jid) > 3, 20 * SLOW)
    a.stop()  # nobody is left to hear a cancel on the control stream
    assert h1(b, "DELETE", "/jobs/" + jid)[0] == 202
    assert wait_state(b, jid, ("cancelled",), timeout=10)["state"] == "cancelled"
    assert wait_for(lambda: "stopped (cancelled)" in ws.log("w1"), 10 * SLOW)


def test_cancel_while_redis_is_down_ends_the_job_here(env):
    r, _, make = env
    a, _ = make()
    jid = submit(a, "n=3")  # no worker: it waits in the queue
    r.stop()
    assert wait_for(lambda: h1(a, "POST", "/v1/tick?n=1")[0] == 503, 10 * SLOW)
    assert h1(a, "DELETE", "/jobs/" + jid)[0] == 202
    assert wait_state(a, jid, ("cancelled",), timeout=10)["state"] == "cancelled"
    assert b"its end could not be stored" in open(a.stderr_path, "rb").read()
