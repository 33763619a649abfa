"""HTTP/2 to upstreams (issue 11): "protocol": "h2c" (prior knowledge) and
"h2" (TLS, ALPN) groups. Real servers behind sluice: Debian's hypercorn
running the test ASGI app over h2c and over TLS, and a python3-grpcio
server (generic handlers, raw bytes, no generated code) with a grpcio
client in front. Also curl, h2load and raw sockets for flow control."""

import hashlib
import json
import os
import subprocess
import threading
import time
from concurrent import futures

import pytest

from conftest import SLOW, SLUICE_BIN, curl, free_port, require, run
from test_60_proxy import Upstream, pattern, proxy_server, slow_reader_growth
from test_63_proxy_tls import Pki, TlsUpstream
from testservers import H2Server

grpc = pytest.importorskip("grpc")


@pytest.fixture
def hyper():
    h = Upstream("hypercorn").start()
    yield h
    h.stop()


def h2c_server(sluice_factory, app, **over):
    return proxy_server(sluice_factory, ["127.0.0.1:%d" % app.port],
                        up_extra={"protocol": "h2c"}, **over)


# --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["h1", "h2c", "h2-tls"])
def test_h2c_upstream_bodies_both_ways(sluice_factory, hyper, mode):
    require("curl")
    s = h2c_server(sluice_factory, hyper)
    n = 3 * 1024 * 1024 + 5
    r = curl(s, mode, "/bytes?n=%d" % n)
    assert r.status == 200 and r.body == pattern(n), r
    up = os.urandom(2 * 1024 * 1024 + 3)
    r = curl(s, mode, "/sha256", upload=up)
    assert r.status == 200 and r.json() == {"sha256": hashlib.sha256(up).hexdigest(),
                                            "len": len(up)}, r
    r = curl(s, mode, "/stream?n=20&size=5000")
    assert r.status == 200 and r.body == pattern(5000) * 20
    r = curl(s, mode, "/headers", "-H", "X-Pass: yes")
    got = {k: v for k, v in r.json()}
    # the fields headers.c writes for HTTP/1.1 upstreams, as HTTP/2 fields
    assert got["x-pass"] == "yes" and got["x-forwarded-for"] == "127.0.0.1"
    assert "sluice" in got["via"] and len(got["x-request-id"]) == 32
    assert got["traceparent"][3:35] == got["x-request-id"]
    assert got["forwarded"].startswith("for=127.0.0.1;proto=") and got["x-forwarded-proto"]
    assert 'host="%s"' % got["x-forwarded-host"] in got["forwarded"]
    assert "connection" not in got and "transfer-encoding" not in got


def test_h2c_upstream_is_multiplexed(sluice_factory, hyper):
    require("h2load")
    s = h2c_server(sluice_factory, hyper, workers=1)
    r = subprocess.run(["h2load", "-n", "400", "-c", "8", "-m", "10",
                        "http://127.0.0.1:%d/whoami" % s.h2c_port],
                       capture_output=True, timeout=60 * SLOW)
    out = r.stdout.decode()
    assert "400 succeeded" in out, out
    # 400 requests from 8 client connections (and this one) rode one
    # upstream connection
    assert curl(s, "h2c", "/stats").json()["peers"] == 1


def test_h2c_upstream_slow_client_holds_one_window(sluice_factory, hyper):
    """A client that reads nothing while a 48 MiB body is ready upstream:
    sluice opens the upstream stream's window only as the client takes
    bytes, so its memory stays flat (the HTTP/1.1 path's bound)."""
    s = h2c_server(sluice_factory, hyper, workers=1)
    n = 48 * 1024 * 1024
    grew, got = slow_reader_growth(s, n)
    assert grew < 16 * 1024, grew
    assert got > n


def test_h2c_upstream_down_and_config_errors(sluice_factory, tmp_path):
    s = proxy_server(sluice_factory, ["127.0.0.1:%d" % free_port()],
                     up_extra={"protocol": "h2c", "retries": 0})
    r = curl(s, "h2c", "/x")
    assert r.status == 502, r
    assert "h2: connect failed" in s.stderr() or "h2: " in s.stderr()
    bad = [({"protocol": "h2"}, "needs \"tls\""),
           ({"protocol": "h2c", "tls": {"verify": False}}, "use \"h2\" with tls"),
           ({"protocol": "auto"}, "needs \"tls\""),
           ({"protocol": "h3"}, "must be \"http/1.1\", \"h2c\", \"h2\" or \"auto\"")]
    for extra, want in bad:
        p = tmp_path / "c.json"
        p.write_text(json.dumps({"listen": [{"addr": "127.0.0.1:0"}], "routes": [],
                                 "upstreams": {"a": dict({"servers": ["127.0.0.1:1"]},
                                                         **extra)}}))
        r = run([SLUICE_BIN, "-t", "-c", str(p)])
        assert r.returncode == 1 and want in r.stderr.decode(), (extra, r.stderr)


def test_h2_upstream_over_tls(sluice_factory, tmp_path):
    require("openssl")
    pki = Pki(str(tmp_path))
    app = Upstream("hypercorn", pki=pki).start()
    try:
        s = proxy_server(sluice_factory, ["127.0.0.1:%d" % app.port],
                         up_extra={"protocol": "h2", "tls": {"ca_file": pki.ca}}, workers=1)
        n = 1024 * 1024 + 7
        for mode in ("h1", "h2c"):
            r = curl(s, mode, "/bytes?n=%d" % n)
            assert r.status == 200 and r.body == pattern(n), r
        up = os.urandom(500000)
        r = curl(s, "h2-tls", "/sha256", upload=up)
        assert r.json()["sha256"] == hashlib.sha256(up).hexdigest()
        # the wrong CA: the handshake fails, 502, and the log says why
        s2 = proxy_server(sluice_factory, ["127.0.0.1:%d" % app.port],
                          up_extra={"protocol": "h2", "tls": {"ca_file": pki.other_ca},
                                    "retries": 0})
        assert curl(s2, "h1", "/whoami").status == 502
        assert "certificate verify failed" in s2.stderr()
    finally:
        app.stop()


# ------------------------------------------------------------------ gRPC ---
class GrpcApp:
    """A grpcio server with raw-bytes methods: U (unary echo), SS (server
    streaming, 1000 messages), CS (client streaming, total length), B
    (bidi, upper-case echo), Slow (waits for its deadline or a cancel)."""

    def __init__(self):
        self.cancelled = threading.Event()
        self.seen_metadata = {}
        h = grpc.method_handlers_generic_handler("t.S", {
            "U": grpc.unary_unary_rpc_method_handler(self.unary),
            "SS": grpc.unary_stream_rpc_method_handler(self.server_stream),
            "CS": grpc.stream_unary_rpc_method_handler(self.client_stream),
            "B": grpc.stream_stream_rpc_method_handler(self.bidi),
            "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
            "Fail": grpc.unary_unary_rpc_method_handler(self.fail)})
        self.server = grpc.server(futures.ThreadPoolExecutor(8))
        self.server.add_generic_rpc_handlers((h,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def unary(self, req, ctx):
        self.seen_metadata = dict(ctx.invocation_metadata())
        return b"echo:" + req

    def server_stream(self, req, ctx):
        for i in range(1000):
            yield b"m%04d" % i

    def client_stream(self, it, ctx):
        return b"%d" % sum(len(x) for x in it)

    def bidi(self, it, ctx):
        for x in it:
            yield x.upper()

    def slow(self, req, ctx):
        ctx.add_callback(self.cancelled.set)
        deadline = time.monotonic() + 10
        while ctx.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)
        return b"late"

    def fail(self, req, ctx):
        ctx.abort(grpc.StatusCode.PERMISSION_DENIED, "no, " + req.decode())

    def stop(self):
        self.server.stop(0)


@pytest.fixture
def grpc_proxy(sluice_factory):
    app = GrpcApp()
    s = proxy_server(sluice_factory, ["127.0.0.1:%d" % app.port],
                     up_extra={"protocol": "h2c"}, workers=1)
    ch = grpc.insecure_channel("127.0.0.1:%d" % s.h2c_port)
    yield app, s, ch
    ch.close()
    app.stop()


def test_grpc_calls_through_the_proxy(grpc_proxy):
    app, s, ch = grpc_proxy
    assert ch.unary_unary("/t.S/U")(b"hi", timeout=10 * SLOW,
                                    metadata=[("x-user", "ann")]) == b"echo:hi"
    assert app.seen_metadata.get("x-user") == "ann"
    msgs = list(ch.unary_stream("/t.S/SS")(b"", timeout=20 * SLOW))
    assert msgs == [b"m%04d" % i for i in range(1000)]
    parts = [os.urandom(1000) for _ in range(300)]
    assert ch.stream_unary("/t.S/CS")(iter(parts), timeout=20 * SLOW) == b"300000"
    got = list(ch.stream_stream("/t.S/B")(iter([b"ab", b"cd", b"ef"] * 50), timeout=20 * SLOW))
    assert got == [b"AB", b"CD", b"EF"] * 50
    # an application error: grpc-status and grpc-message trailers pass through
    with pytest.raises(grpc.RpcError) as e:
        ch.unary_unary("/t.S/Fail")(b"bob", timeout=10 * SLOW)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.value.details() == "no, bob"


def test_grpc_deadline_and_cancel(grpc_proxy):
    app, s, ch = grpc_proxy
    with pytest.raises(grpc.RpcError) as e:
        ch.unary_unary("/t.S/Slow")(b"", timeout=0.5)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert app.cancelled.wait(5 * SLOW)  # the server heard of it
    app.cancelled.clear()
    f = ch.unary_unary("/t.S/Slow").future(b"", timeout=30)
    time.sleep(0.3)
    f.cancel()
    assert f.cancelled()
    assert app.cancelled.wait(5 * SLOW)  # the client's cancel reached the server


def test_grpc_dead_upstream_is_unavailable(sluice_factory):
    s = proxy_server(sluice_factory, ["127.0.0.1:%d" % free_port()],
                     up_extra={"protocol": "h2c", "retries": 0})
    ch = grpc.insecure_channel("127.0.0.1:%d" % s.h2c_port)
    try:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/t.S/U")(b"x", timeout=10 * SLOW, wait_for_ready=False)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        ch.close()
    # the answer is gRPC-shaped: HTTP 200 with grpc-status 14 (trailers-only)
    r = curl(s, "h2c", "/t.S/U", "-H", "content-type: application/grpc", "-H", "te: trailers",
             upload=b"\0\0\0\0\0")
    assert r.status == 200 and r.header("grpc-status") == "14", r


def test_grpc_timeout_enforced_by_sluice(sluice_factory, hyper):
    """grpc-timeout bounds the upstream wait even when the server ignores
    it (hypercorn's /slow does): 200 with grpc-status 4 DEADLINE_EXCEEDED
    at the deadline (the upstream stream is reset: logged)."""
    s = h2c_server(sluice_factory, hyper)
    t0 = time.monotonic()
    r = curl(s, "h2c", "/slow?delay=5", "-X", "GET", "-H", "content-type: application/grpc",
             "-H", "te: trailers", "-H", "grpc-timeout: 300m")
    took = time.monotonic() - t0
    assert r.status == 200 and r.header("grpc-status") == "4", r
    assert 0.25 < took < 3, took
    assert "grpc-timeout reached" in s.stderr()
    # the connection stays usable for the next request
    assert curl(s, "h2c", "/whoami").status == 200


class GoawayServer(H2Server):
    """A small HTTP/2 server (python3-h2) whose first connection answers a
    request with GOAWAY (last stream id 0: nothing was processed) and
    closes; later connections answer 200 "served by connection N"."""

    def on_event(self, h, e, state, n):
        import h2.events
        if not isinstance(e, h2.events.RequestReceived):
            return True
        if n == 1:
            h.close_connection(last_stream_id=0)
            return False
        body = b"served by connection %d" % n
        h.send_headers(e.stream_id, [(":status", "200"), ("content-length", str(len(body)))])
        h.send_data(e.stream_id, body, end_stream=True)
        return True


def test_goaway_requests_go_to_a_new_connection(sluice_factory):
    """A GOAWAY whose last stream id is below a request's: the server never
    processed it, so sluice sends it again on a new connection."""
    pytest.importorskip("h2.connection")
    app = GoawayServer()
    try:
        s = proxy_server(sluice_factory, ["127.0.0.1:%d" % app.port],
                         up_extra={"protocol": "h2c"}, workers=1)
        r = curl(s, "h2c", "/x")
        assert r.status == 200 and r.body == b"served by connection 2", r
        assert app.conns == 2
    finally:
        app.stop()


def open_ws_over_h2(port, path):
    """An RFC 8441 WebSocket from an HTTP/2 client (python3-h2) through
    sluice; returns the client and the stream once the 200 came."""
    from test_45_ws_h2 import Client as H2Client
    c = H2Client(port, False)
    c.pump(2.0 * SLOW, lambda: 8 in c.remote_settings)
    sid = c.connect_ws(path=path)
    c.pump(10 * SLOW, lambda: c.st(sid)["headers"] is not None or c.st(sid)["reset"])
    h = c.st(sid)["headers"]
    if not (h and h[":status"] == "200"):
        c.close()
        pytest.fail("WebSocket over h2 refused: %r" % c.st(sid))
    return c, sid


def test_websocket_over_h2_both_hops(sluice_factory):
    """An HTTP/2 client's WebSocket (RFC 8441) goes to an h2c upstream as
    extended CONNECT, not over HTTP/1.1: the upstream here is a second
    sluice with its WebSocket echo, whose access log shows the CONNECT
    arriving over HTTP/2."""
    pytest.importorskip("h2.connection")
    import wsraw
    from test_61_proxy_ws import h2_read_message
    from wsraw import BINARY, CLOSE, TEXT, close_payload
    from conftest import ROUTES
    up = sluice_factory(routes=[{"path": "/ws/", "handler": "ws", "app": "echo"}] + ROUTES)
    s = proxy_server(sluice_factory, ["127.0.0.1:%d" % up.h2c_port],
                     up_extra={"protocol": "h2c"}, workers=1)
    c, sid = open_ws_over_h2(s.h2c_port, "/ws/echo")
    try:
        c.send(sid, wsraw.frame(TEXT, b"hello over h2"))
        assert h2_read_message(c, sid, 10 * SLOW) == (TEXT, b"hello over h2")
        big = os.urandom(1 << 20)
        c.send(sid, wsraw.frame(BINARY, big))
        op, back = h2_read_message(c, sid, 30 * SLOW)
        assert op == BINARY and back == big
        c.send(sid, wsraw.frame(CLOSE, close_payload(1000)))
        f = c.frame(sid, 10 * SLOW)
        assert f.op == CLOSE and f.code == 1000
    finally:
        c.close()
    deadline = time.monotonic() + 10 * SLOW
    ws = []
    while not ws and time.monotonic() < deadline:  # logged when the stream ends
        time.sleep(0.1)
        lines = [json.loads(x) for x in up.stdout().splitlines() if x.startswith("{")]
        ws = [x for x in lines if x["path"] == "/ws/echo"]
    assert ws and ws[0]["method"] == "CONNECT" and ws[0]["protocol"] == "HTTP/2", lines


def test_websocket_over_h2_to_hypercorn(sluice_factory, hyper):
    """End to end over HTTP/2 on both hops with an independent server:
    hypercorn offers extended CONNECT, so an HTTP/2 client's WebSocket
    reaches the ASGI app as a WebSocket over HTTP/2 (scope http_version
    "2"), echoes, and closes with the app's code."""
    pytest.importorskip("h2.connection")
    import wsraw
    from test_61_proxy_ws import h2_read_message
    from wsraw import CLOSE, TEXT
    s = h2c_server(sluice_factory, hyper, workers=1)
    c, sid = open_ws_over_h2(s.h2c_port, "/ws/echo")
    try:
        op, first = h2_read_message(c, sid, 10 * SLOW)
        hello = json.loads(first)
        assert op == TEXT and hello["path"] == "/ws/echo" and hello["http_version"] == "2", hello
        names = [k for k, _ in hello["headers"]]
        assert "x-forwarded-for" in names and "upgrade" not in names, names
        c.send(sid, wsraw.frame(TEXT, b"hello hypercorn"))
        assert h2_read_message(c, sid, 10 * SLOW) == (TEXT, b"hello hypercorn")
        c.send(sid, wsraw.frame(TEXT, b"close-me"))
        f = c.frame(sid, 10 * SLOW)
        assert f.op == CLOSE and f.code == 4001, f
    finally:
        c.close()
    assert "extended CONNECT" not in s.stderr()


def test_auto_follows_alpn(sluice_factory, tmp_path):
    """"protocol": "auto" offers h2 and http/1.1 and goes the way each
    server's ALPN answer says: hypercorn picks h2 (requests multiplexed on
    one connection), uvicorn picks http/1.1 (the HTTP/1.1 path, pooled)."""
    require("h2load")
    pki = Pki(str(tmp_path))
    h2app = Upstream("hypercorn", pki=pki).start()
    h1app = TlsUpstream(pki).start()
    try:
        for app, want_peers in ((h2app, 1), (h1app, None)):
            s = proxy_server(sluice_factory, ["127.0.0.1:%d" % app.port], workers=1,
                             up_extra={"protocol": "auto", "tls": {"ca_file": pki.ca}})
            up = os.urandom(300000)
            r = curl(s, "h2c", "/sha256", upload=up)
            assert r.status == 200 and r.json()["sha256"] == hashlib.sha256(up).hexdigest(), r
            r = subprocess.run(["h2load", "-n", "200", "-c", "4", "-m", "10",
                                "http://127.0.0.1:%d/whoami" % s.h2c_port],
                               capture_output=True, timeout=60 * SLOW)
            assert "200 succeeded" in r.stdout.decode(), r.stdout
            peers = curl(s, "h2c", "/stats").json()["peers"]
            if want_peers:
                assert peers == want_peers, peers
            else:
                assert peers > 1, peers  # HTTP/1.1: one request per connection at a time
    finally:
        h2app.stop()
        h1app.stop()
