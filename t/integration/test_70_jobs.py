"""Jobs (issue 5): the "job" route in every reply mode over h1, h2c and
h2+TLS, the /jobs API (status, events with resume, result, cancel, list,
404/410, Idempotency-Key), retention loss as an explicit `dropped` event,
fan-out to many subscribers, the exec executor (stdin/stdout, progress fd,
cancel and timeout kill the process, queue full -> 503, a job outliving its
client). Clients: curl, h2load, python http.client; not our own code."""

import hashlib
import http.client
import json
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import ROUTES, SLOW, curl, module_server, require

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "job_app.py")
MODES = ["h1", "h2c", "h2-tls"]


ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": "Bearer " + ADMIN_TOKEN}


def config(tmp, jobs=None, execs=None):
    ex = {
        "tick": {"type": "builtin", "kind": "ticker", "max_events": 10000},
        "echo": {"type": "exec", "argv": ["/usr/bin/python3", APP, "--echo-stdin"],
                 "content_type": "text/plain"},
        "lines": {"type": "exec", "argv": ["/usr/bin/python3", APP, "--lines", "5",
                                           "--interval", "0.2"]},
        "sleeper": {"type": "exec", "concurrency": 1, "queue": 1, "grace_s": 1,
                    "argv": ["/usr/bin/python3", APP, "--pidfile", os.path.join(tmp, "pid"),
                             "--sleep", "60"]},
        "slow": {"type": "exec", "timeout_s": 1, "grace_s": 1,
                 "argv": ["/usr/bin/python3", APP, "--pidfile", os.path.join(tmp, "tpid"),
                          "--sleep", "60"]},
    }
    ex.update(execs or {})
    routes = [
        {"path": "/v1/tick", "handler": "job", "executor": "tick"},
        {"path": "/v1/echo", "handler": "job", "executor": "echo"},
        {"path": "/v1/lines", "handler": "job", "executor": "lines"},
        {"path": "/v1/sleeper", "handler": "job", "executor": "sleeper"},
        {"path": "/v1/slow", "handler": "job", "executor": "slow"},
        {"path": "/v1/rec", "handler": "job", "executor": "tick",
         "record_headers": ["x-a", "x-b", "user-agent", "x-absent"]},
        {"path": "/jobs", "handler": "jobs_api"},
    ] + ROUTES
    token = os.path.join(tmp, "admin.token")
    with open(token, "w") as f:
        f.write(ADMIN_TOKEN + "\n")
    return {"executors": ex, "routes": routes,
            "jobs": dict({"heartbeat_s": 1, "admin_token_file": token}, **(jobs or {}))}


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    with module_server(tmp_path_factory, certs, "jobs", config=config) as s:
        yield s


def ticks(n, size=16):
    """What the ticker produces for n events of size bytes."""
    out = b""
    for i in range(1, n + 1):
        head = b"tick %d" % i
        ev = bytearray(b"." * size)
        ev[:min(len(head), size)] = head[:size]
        ev[size - 1:size] = b"\n"
        out += bytes(ev)
    return out


def parse_sse(body):
    """[(id, event, data)] of a text/event-stream body, parsed as the HTML
    spec's event stream interpretation does: CRLF, LF and a lone CR each
    end a line; comments skipped."""
    events, eid, ev, data = [], None, "message", []
    for line in re.split(r"\r\n|\r|\n", body.decode("utf-8", "replace")):
        if line == "":
            if data or eid is not None:
                events.append((eid, ev, "\n".join(data)))
            eid, ev, data = None, "message", []
            continue
        if line.startswith(":"):
            continue
        k, _, v = line.partition(":")
        v = v[1:] if v.startswith(" ") else v
        if k == "id":
            eid = int(v)
        elif k == "event":
            ev = v
        elif k == "data":
            data.append(v)
    return events


def h1(srv, method, path, headers=None, body=None, timeout=20):
    c = http.client.HTTPConnection("127.0.0.1", srv.h2c_port, timeout=timeout * SLOW)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def submit(srv, path):
    st, h, body = h1(srv, "POST", path, {"Prefer": "respond-async"})
    assert st == 202, body
    return h["job-id"]


def status(srv, jid):
    st, _, body = h1(srv, "GET", "/jobs/" + jid)
    assert st == 200, body
    return json.loads(body)


def wait_state(srv, jid, pred, timeout=10):
    deadline = time.monotonic() + timeout * SLOW
    while True:
        s = status(srv, jid)
        if pred(s["state"]) or time.monotonic() > deadline:
            return s
        time.sleep(0.05)


def pid_alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def read_pid(path, timeout=10):
    deadline = time.monotonic() + timeout * SLOW
    while not os.path.exists(path):
        assert time.monotonic() < deadline, "the job never wrote its pid"
        time.sleep(0.05)
    with open(path) as f:
        return int(f.read())


# ---------------------------------------------------------------------------
# reply modes over every protocol
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_stream_raw(srv, mode):
    r = curl(srv, mode, "/v1/tick?n=20&size=32&interval_ms=5")
    assert r.status == 200, r
    assert r.body == ticks(20, 32)
    jid = r.header("job-id")
    assert jid and r.header("location") == "/jobs/" + jid
    assert r.header("x-accel-buffering") == "no"


@pytest.mark.parametrize("mode", MODES)
def test_stream_sse(srv, mode):
    r = curl(srv, mode, "/v1/tick?n=10&interval_ms=5", "-H", "Accept: text/event-stream")
    assert r.status == 200, r
    assert r.header("content-type") == "text/event-stream"
    assert r.header("cache-control") == "no-cache"
    ev = parse_sse(r.body)
    assert [e[1] for e in ev] == ["started"] + ["data"] * 10 + ["end"]
    assert [e[0] for e in ev] == list(range(1, 13))
    assert "".join(e[2] for e in ev if e[1] == "data").encode() == ticks(10)
    assert json.loads(ev[-1][2]) == {"state": "succeeded", "exit_code": 0}


@pytest.mark.parametrize("mode", MODES)
def test_respond_async_then_result(srv, mode):
    r = curl(srv, mode, "/v1/tick?n=5&interval_ms=20", "-H", "Prefer: respond-async")
    assert r.status == 202, r
    assert r.header("preference-applied") == "respond-async"
    st = r.json()
    assert r.header("location") == "/jobs/" + st["id"] == st["location"]
    assert st["state"] in ("queued", "running")
    r = curl(srv, mode, r.header("location") + "/result", "-H", "Prefer: wait=10")
    assert r.status == 200 and r.body == ticks(5), r
    assert r.header("job-state") == "succeeded"


@pytest.mark.parametrize("mode", MODES)
def test_prefer_wait(srv, mode):
    r = curl(srv, mode, "/v1/tick?n=3&interval_ms=10", "-H", "Prefer: wait=10")
    assert r.status == 200 and r.body == ticks(3), r
    # not done within 1 s: 202 and the job goes on
    r = curl(srv, mode, "/v1/tick?n=3&interval_ms=1000", "-H", "Prefer: wait=1")
    assert r.status == 202, r
    assert r.json()["state"] == "running"


# ---------------------------------------------------------------------------
# the /jobs API
# ---------------------------------------------------------------------------
def test_api_status_list_cancel_404(srv):
    a = submit(srv, "/v1/tick?n=3&interval_ms=10")
    b = submit(srv, "/v1/tick?n=1000&interval_ms=100")
    assert wait_state(srv, a, lambda s: s == "succeeded")["exit_code"] == 0
    # without owners the id is the capability: listing needs the admin token
    assert h1(srv, "GET", "/jobs?route=/v1/tick")[0] == 404
    st, _, body = h1(srv, "GET", "/jobs?route=/v1/tick&limit=1000", ADMIN)
    ids = [j["id"] for j in json.loads(body)["jobs"]]
    assert st == 200 and a in ids and b in ids and ids == sorted(ids)
    st, _, body = h1(srv, "GET", "/jobs?state=running&limit=1000", ADMIN)
    assert b in [j["id"] for j in json.loads(body)["jobs"]]
    # paging: after= continues exactly where limit stopped
    st, _, body = h1(srv, "GET", "/jobs?limit=1", ADMIN)
    first = json.loads(body)
    st, _, body = h1(srv, "GET", "/jobs?limit=1000&after=" + first["next"], ADMIN)
    rest = [j["id"] for j in json.loads(body)["jobs"]]
    assert first["jobs"][0]["id"] not in rest and len(rest) >= 1
    st, _, body = h1(srv, "DELETE", "/jobs/" + b)
    assert st == 202
    assert wait_state(srv, b, lambda s: s != "running")["state"] == "cancelled"
    st, h, _ = h1(srv, "GET", "/jobs/" + b + "/result")
    assert st == 409 and h["job-state"] == "cancelled"
    assert h1(srv, "GET", "/jobs/0123456789ABCDEFGHJKMNPQRS")[0] == 404
    assert h1(srv, "GET", "/jobs/nope/events")[0] == 404
    assert h1(srv, "GET", "/jobs?state=bogus")[0] == 400
    assert h1(srv, "GET", "/v1/tick?n=abc")[0] == 400
    assert h1(srv, "POST", "/jobs/" + a)[0] == 405


@pytest.mark.parametrize("mode", ["h1", "h2c"])
def test_recorded_headers(srv, mode):
    r = curl(srv, mode, "/v1/rec?n=1&interval_ms=0", "-X", "POST", "-H", "Prefer: respond-async",
             "-H", "X-A: one", "-H", "X-A: two", "-H", "X-B: " + "b" * 1500,
             "-H", "X-Unlisted: secret", "-H", "X-Request-Id: r1", "-A", "ua/" + mode)
    assert r.status == 202, (r.stderr, r.body)
    s = status(srv, r.header("job-id"))
    # exactly the listed ones present: repeats joined, values cut at 1024
    assert s["headers"] == {"x-a": "one, two", "x-b": "b" * 1024, "user-agent": "ua/" + mode}
    # default list: content-type, user-agent, x-request-id
    r = curl(srv, mode, "/v1/tick?n=1&interval_ms=0", "-X", "POST", "-H", "Prefer: respond-async",
             "-H", "X-Request-Id: rid-" + mode, "-H", "X-A: one", "-A", "")
    assert r.status == 202, (r.stderr, r.body)
    assert status(srv, r.header("job-id"))["headers"] == {"x-request-id": "rid-" + mode}


@pytest.mark.parametrize("bad", [["X-A"], ["a b"], [""], [5], "x-a", ["x-a", "x-a"],
                                 ["h%d" % i for i in range(17)]])
def test_record_headers_refused(sluice_factory, tmp_path, bad):
    from conftest import SLUICE_BIN, run
    cfg = config(str(tmp_path))
    cfg["routes"][0]["record_headers"] = bad
    s = sluice_factory(start=False, **cfg)
    r = run([SLUICE_BIN, "-t", "-c", s.cfg_path], timeout=15)
    assert r.returncode != 0
    assert "routes[0].record_headers" in r.stderr.decode(), r.stderr.decode()


def test_idempotency_key(srv):
    hdr = {"Prefer": "respond-async", "Idempotency-Key": "k-%d" % time.monotonic_ns()}
    s1, h1_, _ = h1(srv, "POST", "/v1/tick?n=2", hdr)
    s2, h2_, _ = h1(srv, "POST", "/v1/tick?n=2", hdr)
    assert s1 == s2 == 202 and h1_["job-id"] == h2_["job-id"]
    s3, h3_, _ = h1(srv, "POST", "/v1/tick?n=2", dict(hdr, **{"Idempotency-Key": "other"}))
    assert h3_["job-id"] != h1_["job-id"]


def read_sse_until(sock_file, n_data):
    """Read SSE lines from a raw h1 response until n_data data events."""
    got, buf = [], b""
    while len([e for e in got if e[1] == "data"]) < n_data:
        line = sock_file.readline()
        assert line, "stream ended early"
        buf += line
        if line == b"\r\n" or line == b"\n":
            pass
        evs = parse_sse(buf)
        got = evs if buf.endswith(b"\n\n") else evs[:-1]
    return got


def test_sse_resume_exact(srv):
    """Cut mid-stream, resume with Last-Event-ID and with ?from=: exactly
    the remaining events, no gap, no duplicate (sha256 of joined data)."""
    jid = submit(srv, "/v1/tick?n=60&size=20&interval_ms=20")
    c = http.client.HTTPConnection("127.0.0.1", srv.h2c_port, timeout=20 * SLOW)
    c.request("GET", "/jobs/%s/events" % jid)
    r = c.getresponse()
    assert r.status == 200
    buf = b""
    while buf.count(b"event: data") < 12:
        buf += r.read1(4096) if hasattr(r, "read1") else r.read(64)
    c.close()  # the cut
    first = parse_sse(buf[:buf.rindex(b"\n\n") + 2])
    last_id = first[-1][0]
    st, _, rest = h1(srv, "GET", "/jobs/%s/events" % jid, {"Last-Event-ID": str(last_id)})
    assert st == 200
    second = parse_sse(rest)
    assert second[0][0] == last_id + 1
    ids = [e[0] for e in first + second]
    assert ids == list(range(1, len(ids) + 1))
    joined = "".join(e[2] for e in first + second if e[1] == "data").encode()
    st, _, result = h1(srv, "GET", "/jobs/%s/result" % jid)
    assert st == 200
    assert hashlib.sha256(joined).hexdigest() == hashlib.sha256(result).hexdigest()
    assert result == ticks(60, 20)
    r = curl(srv, "h2c", "/jobs/%s/events?from=%d" % (jid, last_id))
    assert r.body == rest


def test_h2_100_concurrent_jobs_one_connection(srv):
    h2load = require("h2load")
    r = subprocess.run([h2load, "-n", "100", "-c", "1", "-m", "100",
                        srv.url("/v1/tick?n=5&interval_ms=20")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60 * SLOW)
    out = r.stdout.decode()
    assert "100 succeeded" in out and "100 2xx" in out, out


def test_fan_out_50_subscribers_identical(srv):
    jid = submit(srv, "/v1/tick?n=40&size=24&interval_ms=25")
    bodies = [None] * 50

    def sub(i):
        c = http.client.HTTPConnection("127.0.0.1", srv.h2c_port, timeout=30 * SLOW)
        c.request("GET", "/jobs/%s/events" % jid)
        bodies[i] = c.getresponse().read()
        c.close()

    threads = [threading.Thread(target=sub, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60 * SLOW)
    # Compare the events, not the bytes: a subscriber may also get a
    # heartbeat comment (": hb" plus its blank line) the others did not.
    events = [parse_sse(b) for b in bodies]
    assert all(e == events[0] for e in events)
    ev = events[0]
    assert "".join(e[2] for e in ev if e[1] == "data").encode() == ticks(40, 24)
    lines = srv.wait_access(
        lambda ls: len([l for l in ls if jid + "/events" in l.get("path", "")]) >= 50)
    workers = {l.get("worker") for l in lines if jid + "/events" in l.get("path", "")}
    assert len(workers) == 2, workers  # spread over both workers


# ---------------------------------------------------------------------------
# retention, TTL, bounds
# ---------------------------------------------------------------------------
def test_retention_overflow_dropped_event(sluice_factory, tmp_path):
    s = sluice_factory(**config(str(tmp_path), jobs={"retain_bytes": 2048}))
    jid = submit(s, "/v1/tick?n=100&size=100&interval_ms=0")
    assert wait_state(s, jid, lambda st: st == "succeeded")["dropped_upto"] > 0
    st, _, body = h1(s, "GET", "/jobs/%s/events" % jid)
    ev = parse_sse(body)
    assert ev[0][1] == "dropped"
    gone = json.loads(ev[0][2])
    assert gone["from"] == 1 and ev[1][0] == gone["to"] + 1 == ev[0][0] + 1
    assert ev[-1][1] == "end"
    # the tail that is retained is exact
    tail = "".join(e[2] for e in ev if e[1] == "data").encode()
    assert ticks(100, 100).endswith(tail) and len(tail) >= 100
    assert h1(s, "GET", "/jobs/%s/result" % jid)[0] == 409


def test_ttl_expiry_410(sluice_factory, tmp_path):
    s = sluice_factory(**config(str(tmp_path), jobs={"ttl_s": 1}))
    jid = submit(s, "/v1/tick?n=1&interval_ms=0")
    wait_state(s, jid, lambda st: st == "succeeded")
    deadline = time.monotonic() + 5 * SLOW
    while h1(s, "GET", "/jobs/" + jid)[0] == 200:
        assert time.monotonic() < deadline, "job did not expire"
        time.sleep(0.1)
    assert h1(s, "GET", "/jobs/" + jid)[0] == 410
    assert h1(s, "GET", "/jobs/%s/events" % jid)[0] == 410


def test_max_jobs_503(sluice_factory, tmp_path):
    s = sluice_factory(**config(str(tmp_path), jobs={"max_jobs": 2}))
    submit(s, "/v1/tick?n=1")
    submit(s, "/v1/tick?n=1")
    st, h, _ = h1(s, "POST", "/v1/tick?n=1", {"Prefer": "respond-async"})
    assert st == 503 and h.get("retry-after")


# ---------------------------------------------------------------------------
# exec executor
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_exec_stdin_to_stdout(srv, mode):
    payload = os.urandom(200000).hex().encode()
    r = curl(srv, mode, "/v1/echo", upload=payload)
    assert r.status == 200 and r.body == payload, r
    assert r.header("content-type") == "text/plain"


def test_exec_progress_and_exit(srv):
    r = curl(srv, "h2c", "/v1/lines", "-H", "Accept: text/event-stream")
    ev = parse_sse(r.body)
    prog = [json.loads(e[2]) for e in ev if e[1] == "progress"]
    assert prog == [{"done": i, "of": 5} for i in range(1, 6)]
    assert "".join(e[2] for e in ev if e[1] == "data") == "".join(
        "line %d\n" % i for i in range(1, 6))
    assert json.loads(ev[-1][2]) == {"state": "succeeded", "exit_code": 0}
    assert "job_app: finished 5 lines" in srv.stderr()


def test_exec_client_gone_job_finishes(srv):
    r = curl(srv, "h1", "/v1/lines", "--max-time", "0.5")
    jid = r.header("job-id")
    assert r.rc == 28 and jid, r  # cut by --max-time while streaming
    st, h, body = h1(srv, "GET", "/jobs/%s/result" % jid, {"Prefer": "wait=20"})
    assert st == 200 and body == b"".join(b"line %d\n" % i for i in range(1, 6))
    assert h["job-exit-code"] == "0"


def test_exec_cancel_kills_process_and_queue_full(srv):
    pidfile = os.path.join(srv.tmp, "pid")
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    a = submit(srv, "/v1/sleeper")
    pid = read_pid(pidfile)
    assert pid_alive(pid)
    b = submit(srv, "/v1/sleeper")  # queued behind a (concurrency 1)
    assert status(srv, b)["state"] == "queued"
    st, h, _ = h1(srv, "POST", "/v1/sleeper", {"Prefer": "respond-async"})
    assert st == 503 and h["retry-after"] == "1"
    assert h1(srv, "DELETE", "/jobs/" + b)[0] == 202
    assert wait_state(srv, b, lambda s: s != "queued")["state"] == "cancelled"
    assert h1(srv, "DELETE", "/jobs/" + a)[0] == 202
    assert wait_state(srv, a, lambda s: s == "cancelled")["state"] == "cancelled"
    assert not pid_alive(pid)


def test_exec_timeout(srv):
    pidfile = os.path.join(srv.tmp, "tpid")
    jid = submit(srv, "/v1/slow")
    pid = read_pid(pidfile)
    s = wait_state(srv, jid, lambda st: st not in ("queued", "running"), timeout=15)
    assert s["state"] == "timed_out"
    assert not pid_alive(pid)
    assert h1(srv, "GET", "/jobs/%s/result" % jid)[0] == 504


@pytest.mark.parametrize("mode", MODES)
def test_sse_output_cannot_forge_fields(srv, mode):
    """Job output with CR, LF and CRLF (and field-looking text after them)
    stays inside data: lines; a spec parser sees the same events as ever."""
    payload = (b"a\rid: 666\revent: end\rdata: forged\r\rb\r\nid: 777\r\n\r\nc\n"
               b"event: x\n\nd\r")
    r = curl(srv, mode, "/v1/echo", "-H", "Accept: text/event-stream", upload=payload)
    assert r.status == 200, r
    ev = parse_sse(r.body)
    assert [e[1] for e in ev] == ["started"] + ["data"] * (len(ev) - 2) + ["end"], ev
    assert [e[0] for e in ev] == list(range(1, len(ev) + 1)), ev
    # each data event is one chunk of output with its line ends made LF
    got = "".join(e[2] for e in ev if e[1] == "data")
    assert got == re.sub(r"\r\n|\r", "\n", payload.decode()), got
