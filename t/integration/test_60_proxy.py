"""Reverse proxy (issue 4): sluice in front of real app servers from Debian
(uvicorn, gunicorn with uvicorn workers) running t/integration/apps/asgi_app.py,
and in front of a second sluice (harness endpoints: trailers, 103).
Clients: curl (h1, h2c, h2 over TLS) and raw sockets (h1raw)."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import SLOW, curl, free_port, require
import h1raw

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
PY = "/usr/bin/python3"
MODES = ["h1", "h2c", "h2-tls"]


def pattern(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


class Upstream:
    """An app server on a free loopback port, stopped by PID: uvicorn,
    gunicorn with uvicorn workers, or hypercorn (HTTP/1.1 and h2c; with a
    pki, TLS with ALPN h2)."""

    def __init__(self, kind="uvicorn", port=None, pki=None, app="asgi_app:app", args=()):
        self.kind = kind
        self.app = app
        self.args = list(args)
        self.port = port or free_port()
        self.pki = pki
        self.proc = None

    def start(self):
        if self.kind == "uvicorn":
            argv = [PY, "-m", "uvicorn", "--app-dir", APPS, self.app, "--host", "127.0.0.1",
                    "--port", str(self.port), "--no-proxy-headers", "--log-level", "warning",
                    "--timeout-keep-alive", "30"]
        elif self.kind == "hypercorn":
            argv = [PY, "-m", "hypercorn", "--bind", "127.0.0.1:%d" % self.port,
                    "--log-level", "warning", self.app]
            if self.pki:
                argv += ["--certfile", self.pki.cert, "--keyfile", self.pki.key]
        else:
            require("gunicorn")
            argv = ["gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2", "--chdir", APPS,
                    "-b", "127.0.0.1:%d" % self.port, "--log-level", "warning", "asgi_app:app"]
        self.proc = subprocess.Popen(argv + self.args, cwd=APPS, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15 * SLOW
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail("%s did not start on port %d" % (self.kind, self.port))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def stats(self):
        with h1raw.H1Conn(self.port) as c:
            c.send(h1raw.request("GET", "/stats", [("Connection", "close")]))
            return c.read_response().json()


@pytest.fixture
def upstreams():
    started = []

    def make(kind="uvicorn", port=None):
        u = Upstream(kind, port).start()
        started.append(u)
        return u
    yield make
    for u in started:
        u.stop()


def proxy_server(sluice_factory, servers, route_extra=None, up_extra=None, **over):
    up = {"servers": ["127.0.0.1:%d" % s.port if hasattr(s, "port") else s for s in servers]}
    up.update(up_extra or {})
    route = {"path": "/", "handler": "proxy", "upstream": "app"}
    route.update(route_extra or {})
    routes = [{"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
              route]
    return sluice_factory(upstreams={"app": up}, routes=routes, **over)


def raw_get(port, path, headers=()):
    with h1raw.H1Conn(port) as c:
        c.send(h1raw.request("GET", path, list(headers) + [("Connection", "close")]))
        return c.read_response()


# --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_bodies_both_ways(sluice_factory, upstreams, mode):
    app = upstreams()
    s = proxy_server(sluice_factory, [app])
    n = 3 * 1024 * 1024 + 17
    r = curl(s, mode, "/bytes?n=%d" % n)
    assert r.status == 200 and r.body == pattern(n), r
    assert r.header("content-length") == str(n)
    up = os.urandom(2 * 1024 * 1024 + 5)
    r = curl(s, mode, "/sha256", upload=up)
    assert r.status == 200, r
    assert r.json() == {"sha256": hashlib.sha256(up).hexdigest(), "len": len(up)}
    # streamed both ways: the app echoes as it reads, no length either side
    r = curl(s, mode, "/echo", "-H", "Transfer-Encoding: chunked" if mode == "h1" else "X-A: b",
             upload=up)
    assert r.status == 200 and hashlib.sha256(r.body).digest() == hashlib.sha256(up).digest()
    # chunked upstream response (no length)
    r = curl(s, mode, "/stream?n=50&size=10000")
    assert r.status == 200 and r.body == pattern(10000) * 50


def test_expect_continue_head_204_304(sluice_factory, upstreams):
    s = proxy_server(sluice_factory, [upstreams()])
    up = os.urandom(300000)
    r = curl(s, "h1", "/sha256", "-H", "Expect: 100-continue", upload=up)
    assert r.status == 200 and r.json()["sha256"] == hashlib.sha256(up).hexdigest()
    r = curl(s, "h1", "/bytes?n=1234", "-I")
    # curl -I writes the head into the body file: nothing may follow it
    assert r.status == 200 and r.header("content-length") == "1234"
    assert r.body.endswith(b"\r\n\r\n") and r.body.count(b"\r\n\r\n") == 1
    for code in (204, 304, 404, 503):
        r = curl(s, "h2c", "/status/%d" % code)
        assert r.status == code and r.body == b""


def test_header_rewriting(sluice_factory, upstreams):
    app = upstreams()
    s = proxy_server(sluice_factory, [app], route_extra={
        "path": "/api/", "strip_prefix": "/api", "replace_prefix": "/",
        "set_headers": {"X-Added": "yes"}, "remove_headers": ["x-secret"],
        "set_response_headers": {"x-via-proxy": "1"}, "remove_response_headers": ["server"],
        "host_header": "upstream"})
    r = raw_get(s.h2c_port, "/api/headers", [
        ("Connection", "foo"), ("Foo", "bar"), ("Keep-Alive", "5"), ("TE", "trailers"),
        ("Proxy-Authorization", "x"), ("X-Secret", "s"), ("X-Keep", "k"),
        ("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=6.6.6.6"), ("X-Request-Id", "rid-1"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")])
    assert r.status == 200, r
    assert r.header("x-via-proxy") == "1" and r.header("server") in (None, "sluice")
    h = {}
    for k, v in r.json():
        h.setdefault(k, []).append(v)
    for gone in ("foo", "keep-alive", "te", "proxy-authorization", "x-secret", "connection"):
        assert gone not in h, (gone, h)
    assert h["x-keep"] == ["k"] and h["x-added"] == ["yes"]
    assert h["host"] == ["127.0.0.1:%d" % app.port]
    assert h["x-forwarded-for"] == ["127.0.0.1"]          # forged value dropped
    assert h["forwarded"][0].startswith("for=127.0.0.1;proto=http")
    assert h["via"] == ["1.1 sluice"] and h["x-request-id"] == ["rid-1"]
    assert h["traceparent"] == ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
    who = raw_get(s.h2c_port, "/api/whoami?q=1").json()
    assert who["path"] == "/whoami" and who["query"] == "q=1"


def test_trusted_proxy_and_made_ids(sluice_factory, upstreams):
    s = proxy_server(sluice_factory, [upstreams()],
                     route_extra={"trusted_proxies": ["127.0.0.0/8"]})
    r = raw_get(s.h2c_port, "/headers", [("X-Forwarded-For", "6.6.6.6"),
                                         ("X-Forwarded-Proto", "https")])
    h = dict((k, v) for k, v in r.json())
    assert h["x-forwarded-for"] == "6.6.6.6, 127.0.0.1"
    assert h["x-forwarded-proto"] == "https"
    assert len(h["x-request-id"]) == 32
    assert len(h["traceparent"]) == 55 and h["traceparent"].startswith("00-")
    assert h["traceparent"][3:35] == h["x-request-id"]    # one trace id for both


def test_ids_turned_off_pass_the_clients(sluice_factory, upstreams):
    s = proxy_server(sluice_factory, [upstreams()],
                     route_extra={"request_id": False, "traceparent": False})
    h = dict((k, v) for k, v in raw_get(s.h2c_port, "/headers").json())
    assert "x-request-id" not in h and "traceparent" not in h, h
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    got = raw_get(s.h2c_port, "/headers", [("X-Request-Id", "mine"), ("traceparent", tp)]).json()
    h = dict((k, v) for k, v in got)
    assert h["x-request-id"] == "mine" and h["traceparent"] == tp, h


def test_keepalive_reuse(sluice_factory, upstreams):
    app = upstreams()
    s = proxy_server(sluice_factory, [app], workers=1)
    before = app.stats()["peers"]
    for _ in range(20):
        assert raw_get(s.h2c_port, "/whoami").status == 200
    used = app.stats()["peers"] - before
    assert 1 <= used <= 2, used


def test_balancing(sluice_factory, upstreams):
    a, b = upstreams(), upstreams()
    s = proxy_server(sluice_factory, [a, b], workers=1)
    ports = [raw_get(s.h2c_port, "/whoami").json()["port"] for _ in range(20)]
    assert ports.count(a.port) == 10 and ports.count(b.port) == 10, ports
    s2 = proxy_server(sluice_factory, [a, b], workers=1,
                      up_extra={"balance": "hash", "hash_key": "header:x-user"})
    for user in ("alice", "bob", "carol"):
        got = {raw_get(s2.h2c_port, "/whoami", [("X-User", user)]).json()["port"]
               for _ in range(5)}
        assert len(got) == 1
    s3 = proxy_server(sluice_factory, [a, b], workers=1, up_extra={"balance": "least_conn"})
    ports = [raw_get(s3.h2c_port, "/whoami").json()["port"] for _ in range(10)]
    assert set(ports) == {a.port, b.port}


def test_killed_upstream_then_recovery(sluice_factory, upstreams):
    app = upstreams()
    s = proxy_server(sluice_factory, [app], workers=1,
                     up_extra={"fail_threshold": 2, "down_s": 1})
    assert raw_get(s.h2c_port, "/whoami").status == 200
    app.stop()
    r1, r2 = raw_get(s.h2c_port, "/whoami"), raw_get(s.h2c_port, "/whoami")
    assert r1.status == 502 and r1.json()["status"] == 502
    assert r2.status == 502
    r3 = raw_get(s.h2c_port, "/whoami")       # marked down: no connect at all
    assert r3.status == 503 and r3.header("retry-after") == "1"
    err = s.stderr()
    assert 'upstream "app" server 127.0.0.1:%d: connect failed' % app.port in err
    assert "marked down" in err
    upstreams(port=app.port)
    time.sleep(1.2)
    assert raw_get(s.h2c_port, "/whoami").status == 200


def test_retry_next_server(sluice_factory, upstreams):
    app = upstreams()
    dead = "127.0.0.1:%d" % free_port()
    s = proxy_server(sluice_factory, [dead, app], workers=1)
    for _ in range(4):
        assert raw_get(s.h2c_port, "/whoami").status == 200


def test_504_slow_first_byte(sluice_factory, upstreams):
    s = proxy_server(sluice_factory, [upstreams()],
                     up_extra={"timeouts": {"first_byte_s": 0.5}})
    t0 = time.monotonic()
    r = curl(s, "h2c", "/slow?delay=3")
    assert r.status == 504 and r.json()["status"] == 504
    assert time.monotonic() - t0 < 2.5 * SLOW
    assert "no response within first_byte_s" in s.stderr()


def test_streaming_is_real(sluice_factory, upstreams):
    s = proxy_server(sluice_factory, [upstreams()])
    with h1raw.H1Conn(s.h2c_port, timeout=10) as c:
        t0 = time.monotonic()
        c.send(h1raw.request("GET", "/stream?n=3&size=100&delay=1", [("Connection", "close")]))
        first = c.sock.recv(65536)
        t_first = time.monotonic() - t0
        data = first
        while True:
            b = c.sock.recv(65536)
            if not b:
                break
            data += b
        total = time.monotonic() - t0
    assert b"200" in first.split(b"\r\n")[0]
    assert t_first < 0.9, t_first
    assert total >= 1.8, total
    assert data.count(pattern(100)) == 3


def test_client_abort_cancels_upstream(sluice_factory, upstreams):
    app = upstreams()
    s = proxy_server(sluice_factory, [app])
    before = app.stats()["disconnects"]
    # HTTP/2: curl gives up after 1 s and closes the connection mid-response.
    # (An HTTP/1.1 client's FIN is a half-close to sluice; its abort is seen
    # at the next write.)
    r = curl(s, "h2c", "/hang", timeout=1)
    assert r.rc == 28 and len(r.body) == 1024, r
    deadline = time.monotonic() + 5 * SLOW
    while app.stats()["disconnects"] == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert app.stats()["disconnects"] == before + 1


def slow_reader_growth(s, n):
    """GET /bytes?n=N through s, read nothing for 2 s while the upstream
    has it all ready, then read it all. Returns (RSS growth in KiB while
    stalled, bytes read)."""
    base = s.rss_kb()
    c = h1raw.H1Conn(s.h2c_port, timeout=30)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.send(h1raw.request("GET", "/bytes?n=%d" % n, [("Connection", "close")]))
    got = len(c.sock.recv(65536))
    time.sleep(2.0)
    peak = s.rss_kb()
    while True:
        b = c.sock.recv(1 << 20)
        if not b:
            break
        got += len(b)
    c.sock.close()
    return peak - base, got


def test_memory_flat_slow_client(sluice_factory, upstreams):
    s = proxy_server(sluice_factory, [upstreams()], workers=1)
    n = 48 * 1024 * 1024
    grew, got = slow_reader_growth(s, n)
    assert grew < 16 * 1024, grew
    assert got > n


def test_gunicorn_uvicorn_workers(sluice_factory, upstreams):
    app = upstreams("gunicorn")
    s = proxy_server(sluice_factory, [app])
    up = os.urandom(1000000)
    for mode in ("h1", "h2-tls"):
        r = curl(s, mode, "/sha256", upload=up)
        assert r.status == 200 and r.json()["sha256"] == hashlib.sha256(up).hexdigest()
        r = curl(s, mode, "/bytes?n=777777")
        assert r.body == pattern(777777)


def test_trailers_and_early_hints_via_sluice_upstream(sluice_factory):
    back = sluice_factory()                 # harness endpoints as the upstream
    s = proxy_server(sluice_factory, ["127.0.0.1:%d" % back.h2c_port])
    with h1raw.H1Conn(s.h2c_port) as c:
        c.send(h1raw.request("GET", "/_h/trailers?x-checksum=abc&x-n=1", [("TE", "trailers")]))
        r = c.read_response()
        assert r.status == 200 and r.body == b"trailers follow\n"
        assert ("x-checksum", "abc") in r.trailers and ("x-n", "1") in r.trailers
        c.send(h1raw.request("GET", "/_h/early-hints", [("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200 and [i.status for i in r.informational] == [103]
    require("nghttp")
    out = subprocess.run(["nghttp", "-v", "http://127.0.0.1:%d/_h/trailers?x-t=9" % s.h2c_port],
                         stdout=subprocess.PIPE, timeout=20 * SLOW).stdout.decode()
    assert "x-t: 9" in out


def test_config_errors(tmp_path):
    from conftest import SLUICE_BIN
    def check(doc):
        p = tmp_path / "c.json"
        p.write_text(json.dumps(doc))
        return subprocess.run([SLUICE_BIN, "-t", "-c", str(p)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=10)
    base = {"listen": [{"addr": "127.0.0.1:0"}]}
    r = check(dict(base, routes=[{"path": "/", "handler": "proxy", "upstream": "nope"}]))
    assert r.returncode == 1 and b'no upstream named "nope"' in r.stderr
    r = check(dict(base, upstreams={"a": {"servers": ["127.0.0.1:99999"]}}, routes=[]))
    assert r.returncode == 1 and b"upstreams.a.servers[0]: bad port" in r.stderr
    r = check(dict(base, upstreams={"a": {"servers": ["127.0.0.1:1"], "balanse": "x"}},
                   routes=[]))
    assert r.returncode == 1 and b"upstreams.a.balanse: unknown key" in r.stderr
    r = check(dict(base, upstreams={"a": {"servers": ["127.0.0.1:1", "[::1]:2",
                                                      "unix:/tmp/x.sock",
                                                      {"addr": "localhost:3", "weight": 2}],
                                          "balance": "hash", "hash_key": "header:x-user"}},
                   routes=[{"path": "/", "handler": "proxy", "upstream": "a",
                            "trusted_proxies": ["10.0.0.0/8", "::1"]}]))
    assert r.returncode == 0, r.stderr


def test_pool_follows_concurrency(sluice_factory):
    """keepalive is a floor: the idle pool keeps as many connections as were
    busy at once within keepalive_idle_s, so 100 requests in flight reuse
    about 100 connections instead of a new one per request (a fixed bound
    of 2 closed nearly every connection after its response). The upstream
    is a second sluice (fast enough for responses to finish together),
    whose access log names the connection of every request."""
    require("h2load")
    from conftest import ROUTES
    up = sluice_factory(workers=1, access_log=True, routes=ROUTES)
    s = proxy_server(sluice_factory, ["127.0.0.1:%d" % up.h2c_port], workers=1,
                     up_extra={"keepalive": 2})
    r = subprocess.run(["h2load", "-n", "3000", "-c", "4", "-m", "25",
                        "http://127.0.0.1:%d/" % s.h2c_port],
                       capture_output=True, timeout=120 * SLOW)
    assert "3000 succeeded" in r.stdout.decode(), r.stdout
    deadline = time.monotonic() + 5 * SLOW
    lines = []
    while len(lines) < 3000 and time.monotonic() < deadline:
        lines = [json.loads(x) for x in up.stdout().splitlines() if x.startswith("{")]
        lines = [x for x in lines if x["path"] == "/"]
        time.sleep(0.1)
    conns = {x["conn"] for x in lines}
    assert len(lines) == 3000 and len(conns) <= 150, (len(lines), len(conns))
