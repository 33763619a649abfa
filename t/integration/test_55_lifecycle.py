"""Lifecycle: SIGTERM drains in-flight requests (GOAWAY on HTTP/2,
Connection: close on HTTP/1.1) and exits 0; /readyz turns 503 while
draining; drain_timeout_s bounds the drain; connections spread over both
workers; the JSON access log."""

import json
import signal
import socket
import time

import pytest

import h1raw
import h2raw
from conftest import SLOW, curl
from h2raw import RawH2, harness_bytes


def test_sigterm_idle_exits_0(sluice_factory):
    s = sluice_factory()
    s.signal(signal.SIGTERM)
    assert s.wait_exit(10 * SLOW) == 0


def test_sigint_exits_0(sluice_factory):
    s = sluice_factory()
    s.signal(signal.SIGINT)
    assert s.wait_exit(10 * SLOW) == 0


def stream_data(r, sid):
    return b"".join(f.payload for f in r.frames if f.type == h2raw.DATA and f.sid == sid)


# python3-h2 4.1 closes its state machine on any GOAWAY and then refuses
# the DATA that a graceful drain still sends, so these use raw frames.
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_sigterm_drains_h2_stream(sluice_factory, tls):
    s = sluice_factory(drain_timeout_s=20)
    with RawH2(s.tls_port if tls else s.h2c_port, tls=tls, timeout=20 * SLOW) as r:
        r.handshake()
        r.send(h2raw.headers_frame(1, h2raw.req_headers(
            "/_h/stream/10?size=100&interval_ms=200&seed=9",
            scheme="https" if tls else "http")))
        assert r.wait_for(lambda f: f.sid == 1 and f.type == h2raw.DATA) is not None
        t_sig = time.monotonic()
        s.signal(signal.SIGTERM)
        # the in-flight stream completes, and a GOAWAY arrives
        end = r.wait_end(1, 15 * SLOW, goaway=False)
        assert end is not None and end.type == h2raw.DATA, end
        assert time.monotonic() - t_sig > 1.0, "stream finished too early to prove a drain"
        assert stream_data(r, 1) == harness_bytes(1000, 9)
        gs = r.goaways()
        if not gs:
            g = r.wait_goaway(5 * SLOW)
            gs = [g] if g else []
        assert gs, "no GOAWAY during the drain"
        assert all(g.error_code == h2raw.NO_ERROR for g in gs), gs
        assert gs[-1].last_sid >= 1
        assert r.wait_closed(10 * SLOW)
    assert s.wait_exit(10 * SLOW) == 0


def test_sigterm_refuses_new_connections(sluice_factory):
    s = sluice_factory(drain_timeout_s=20)
    with RawH2(s.h2c_port, timeout=20 * SLOW) as r:
        r.handshake()
        r.send(h2raw.headers_frame(1, h2raw.req_headers("/_h/stream/10?size=10&interval_ms=200")))
        assert r.wait_for(lambda f: f.sid == 1 and f.type == h2raw.DATA) is not None
        s.signal(signal.SIGTERM)
        assert r.wait_goaway(5 * SLOW) is not None
        time.sleep(0.3)
        # the listeners are closed while the old connection drains
        for port in (s.h2c_port, s.tls_port):
            with socket.socket() as x:
                x.settimeout(2)
                assert x.connect_ex(("127.0.0.1", port)) != 0, "still accepting on %d" % port
        end = r.wait_end(1, 15 * SLOW, goaway=False)
        assert end is not None and end.type == h2raw.DATA, end
        assert stream_data(r, 1) == harness_bytes(100)
    assert s.wait_exit(10 * SLOW) == 0


def test_sigterm_h1_in_flight(sluice_factory):
    s = sluice_factory(drain_timeout_s=20)
    with h1raw.H1Conn(s.h2c_port, timeout=20 * SLOW) as c:
        c.send(h1raw.request("GET", "/_h/delay/1000"))
        time.sleep(0.3)
        s.signal(signal.SIGTERM)
        r = c.read_response()
        assert r.status == 200
        assert r.json() == {"delay_ms": 1000}
        assert (r.header("connection") or "").lower() == "close"
        assert c.wait_closed(5 * SLOW)
    assert s.wait_exit(10 * SLOW) == 0


def test_sigterm_h1_streaming_completes(sluice_factory):
    s = sluice_factory(drain_timeout_s=20)
    with h1raw.H1Conn(s.h2c_port, timeout=20 * SLOW) as c:
        c.send(h1raw.request("GET", "/_h/stream/8?size=10&interval_ms=150"))
        time.sleep(0.3)
        s.signal(signal.SIGTERM)
        r = c.read_response()
        assert r.status == 200 and r.body == harness_bytes(80)
        assert c.wait_closed(5 * SLOW), "keep-alive connection not closed after the drain"
    assert s.wait_exit(10 * SLOW) == 0


def test_drain_timeout_bounds_shutdown(sluice_factory):
    s = sluice_factory(drain_timeout_s=1)
    with RawH2(s.h2c_port, timeout=20 * SLOW) as r:
        r.handshake()
        r.send(h2raw.headers_frame(1, h2raw.req_headers(
            "/_h/stream/100?size=10&interval_ms=200")))
        assert r.wait_for(lambda f: f.sid == 1 and f.type == h2raw.DATA) is not None
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        rc = s.wait_exit(10 * SLOW)
        took = time.monotonic() - t0
        # the cut stream was not reported as complete
        r.drain(1)
        assert not any(f.sid == 1 and f.type == h2raw.DATA and f.flags & h2raw.END_STREAM
                       for f in r.frames)
    assert rc == 0
    assert took < 4 * SLOW, took
    assert took > 0.8, "exited before drain_timeout_s with a stream in flight (%.2fs)" % took


def test_readyz_503_while_draining(sluice_factory):
    """Drain with a long stream open; then /readyz on an already-open
    connection says 503 draining (h1 keep-alive, or an h2 connection that
    got only the first, 'shutdown notice' GOAWAY)."""
    s = sluice_factory(drain_timeout_s=20)
    h1 = h1raw.H1Conn(s.h2c_port, timeout=10 * SLOW)
    h1.send(h1raw.request("GET", "/readyz"))
    r = h1.read_response()
    assert r.status == 200 and r.json() == {"status": "ready"}
    h2c = RawH2(s.h2c_port)
    h2c.handshake()
    h2c.send(h2raw.headers_frame(1, h2raw.req_headers("/readyz")))
    h2c.wait_for(lambda f: f.sid == 1 and f.flags & h2raw.END_STREAM)
    assert h2raw.stream_status(h2c.frames, 1) == 200
    # keeps the daemon draining for ~4 s
    h2c.send(h2raw.headers_frame(3, h2raw.req_headers("/_h/stream/20?size=10&interval_ms=200")))
    assert h2c.wait_for(lambda f: f.sid == 3 and f.type == h2raw.DATA) is not None
    s.signal(signal.SIGTERM)
    g = h2c.wait_goaway(5 * SLOW)
    assert g is not None, "no GOAWAY after SIGTERM"
    seen = {}
    # h2 first: a new stream is allowed only until the final GOAWAY, which
    # follows the notice after about a second; send it before anything slow.
    if g.last_sid >= 5:
        h2c.send(h2raw.headers_frame(5, h2raw.req_headers("/readyz")))
    # h1 keep-alive connection opened before the drain
    if h1.send(h1raw.request("GET", "/readyz")):
        try:
            r = h1.read_response(timeout=5 * SLOW)
            seen["h1"] = r.status
            if r.status == 503:
                assert r.json() == {"status": "draining"}
                assert (r.header("connection") or "").lower() == "close"
        except (h1raw.Closed, TimeoutError) as e:
            seen["h1"] = "closed (%s)" % type(e).__name__
    # h2: a new stream is allowed only while the GOAWAY's last id allows it
    if g.last_sid >= 5:
        f = h2c.wait_for(lambda f: f.sid == 5 and (f.flags & h2raw.END_STREAM or
                                                   f.type == h2raw.RST_STREAM), 5 * SLOW)
        seen["h2"] = h2raw.stream_status(h2c.frames, 5) if f is not None else None
    else:
        seen["h2"] = "GOAWAY last_stream_id=%d (no new streams)" % g.last_sid
    assert 200 not in seen.values(), "/readyz said ready while draining: %r" % seen
    assert 503 in seen.values(), "could not observe /readyz 503 while draining: %r" % seen
    # the long stream still finishes
    assert h2c.wait_end(3, 10 * SLOW, goaway=False) is not None
    assert not h2c.resets(3)
    h1.close()
    h2c.close()
    assert s.wait_exit(10 * SLOW) == 0


# ---------------------------------------------------------------------------
# workers and the access log
# ---------------------------------------------------------------------------
def test_connections_on_both_workers(sluice_factory):
    s = sluice_factory(workers=2)
    for i in range(50):
        with h1raw.H1Conn(s.h2c_port if i % 2 else s.tls_port, tls=bool(i % 2 == 0)) as c:
            c.send(h1raw.request("GET", "/_h/anything?i=%d" % i, [("Connection", "close")]))
            assert c.read_response().status == 200
    lines = s.wait_access(lambda ls: len(
        [x for x in ls if x.get("path", "").startswith("/_h/anything")]) >= 50)
    mine = [x for x in lines if x.get("path", "").startswith("/_h/anything")]
    assert len(mine) == 50, len(mine)
    workers = {x["worker"] for x in mine}
    assert len(workers) == 2, "all 50 connections on worker(s) %r" % workers
    conns = {(x["worker"], x["conn"]) for x in mine}
    assert len(conns) == 50


def test_access_duration_starts_after_idle(sluice_factory):
    """A request's start is the time its loop iteration woke up, not an
    earlier one: after 1.5 s of silence on a keep-alive connection, a fast
    request still logs a duration of milliseconds."""
    s = sluice_factory()
    with h1raw.H1Conn(s.h2c_port, timeout=10 * SLOW) as c:
        c.send(b"GET /_h/bytes/3?first HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 200
        time.sleep(1.5)
        c.send(b"GET /_h/bytes/3?second HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 200
    lines = s.wait_access(lambda ls: any("second" in x["path"] for x in ls))
    second = [x for x in lines if "second" in x["path"]]
    assert second and second[0]["duration_ms"] < 500, second


def test_access_log_fields(sluice_factory):
    s = sluice_factory()
    curl(s, "h2-tls", "/_h/bytes/1234")
    curl(s, "h1", "/_h/sink", upload=b"x" * 777)
    curl(s, "h2c", "/_h/status/404")
    curl(s, "h1-tls", "/_h/anything?q=1")
    curl(s, "h2c", "/_h/delay/300")
    lines = s.wait_access(lambda ls: len(ls) >= 5 + 1)  # + the start-up /healthz
    by_path = {x["path"]: x for x in lines}
    need = ["time", "worker", "conn", "protocol", "stream", "method", "path", "status",
            "bytes_in", "bytes_out", "duration_ms", "peer"]
    for x in lines:
        for k in need:
            assert k in x, "access line lacks %r: %r" % (k, x)
        assert isinstance(x["worker"], int)
        assert isinstance(x["duration_ms"], (int, float)) and x["duration_ms"] >= 0
        assert x["time"][:4].isdigit()
    # the duration runs from the request's arrival to its end
    assert 290 <= by_path["/_h/delay/300"]["duration_ms"] < 3000, by_path["/_h/delay/300"]
    b = by_path["/_h/bytes/1234"]
    assert b["protocol"] == "HTTP/2" and b["method"] == "GET" and b["status"] == 200
    assert b["bytes_out"] == 1234
    assert b["tls"] in ("TLSv1.2", "TLSv1.3") and b["alpn"] == "h2"
    k = by_path["/_h/sink"]
    assert k["protocol"] == "HTTP/1.1" and k["method"] == "POST" and k["bytes_in"] == 777
    assert "tls" not in k or k["tls"] in (None, "")
    assert by_path["/_h/status/404"]["status"] == 404
    a = [x for x in lines if x["path"].startswith("/_h/anything")][0]
    assert a["alpn"] == "http/1.1"


def test_access_log_off(sluice_factory):
    s = sluice_factory(access_log=False)
    curl(s, "h1", "/healthz")
    time.sleep(0.3)
    assert s.stdout().strip() == ""


def test_errors_go_to_stderr_not_stdout(sluice_factory):
    s = sluice_factory()
    with h1raw.H1Conn(s.h2c_port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        c.read_all(timeout=2)
    deadline = time.monotonic() + 5
    while "Content-Length" not in s.stderr() and time.monotonic() < deadline:
        time.sleep(0.1)
    # the error line is on stderr, naming the cause...
    err = [l for l in s.stderr().splitlines() if "client sent a bad request head" in l]
    assert len(err) == 1 and "Content-Length" in err[0], s.stderr()
    # ...and stdout has nothing but JSON access lines, none of them that text
    out = s.stdout()
    assert "client sent" not in out, out
    for line in out.splitlines():
        json.loads(line)
