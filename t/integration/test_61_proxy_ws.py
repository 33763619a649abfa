"""WebSocket through the reverse proxy (issue 4): sluice tunnels a WebSocket
from an HTTP/1.1 client (Upgrade, cleartext and TLS) or an HTTP/2 client
(RFC 8441 extended CONNECT, h2c and TLS) to uvicorn's WebSocket (the
installed python3-websockets) behind it. Clients: python3-websockets for
HTTP/1.1, python3-h2 with hand-built frames (wsraw) for HTTP/2."""

import asyncio
import hashlib
import json
import os
import time

import pytest

import wsraw
from conftest import SLOW, client_ssl
from test_60_proxy import Upstream, proxy_server, upstreams  # noqa: F401
from wsraw import BINARY, CLOSE, TEXT, close_payload

websockets = pytest.importorskip("websockets")
pytest.importorskip("h2.connection")
from test_45_ws_h2 import Client as H2Client  # noqa: E402

MIB = 1024 * 1024


def hdict(pairs):
    return {k.lower(): v for k, v in pairs}


def wait_ws_closed(app, n):
    """The app counts a WebSocket as closed once its handler returns."""
    deadline = time.monotonic() + 10 * SLOW
    while app.stats()["ws_closed"] < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return app.stats()["ws_closed"]


def h1_url(s, tls, path="/ws/echo"):
    if tls:
        return "wss://localhost:%d%s" % (s.tls_port, path)
    return "ws://127.0.0.1:%d%s" % (s.h2c_port, path)


async def h1_session(url, tls):
    kw = {"ssl": client_ssl(), "server_hostname": "localhost"} if tls else {}
    async with websockets.connect(url, max_size=None, open_timeout=10 * SLOW,
                                  close_timeout=5, **kw) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10 * SLOW))
        await ws.send("hello")
        echo_text = await asyncio.wait_for(ws.recv(), 10 * SLOW)
        big = os.urandom(MIB)
        await ws.send(big)
        echo_big = await asyncio.wait_for(ws.recv(), 30 * SLOW)
        ext = ws.extensions
        await ws.send("close-me")
        try:
            await asyncio.wait_for(ws.recv(), 10 * SLOW)
        except websockets.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
        else:
            code = "no close"
        return first, echo_text, hashlib.sha256(echo_big).digest() == hashlib.sha256(big).digest(), \
            ext, code


@pytest.mark.parametrize("tls", [False, True], ids=["h1", "h1-tls"])
def test_h1_websocket_through_proxy(sluice_factory, upstreams, tls):  # noqa: F811
    app = upstreams()
    s = proxy_server(sluice_factory, [app])
    first, text, big_ok, ext, code = asyncio.run(h1_session(h1_url(s, tls), tls))
    up = hdict(first["headers"])
    # the upstream saw a real upgrade with forwarding fields
    assert up["upgrade"].lower() == "websocket" and "upgrade" in up["connection"].lower()
    assert up["sec-websocket-version"] == "13" and len(up["sec-websocket-key"]) == 24
    assert up["x-forwarded-for"] == "127.0.0.1" and "sluice" in up["via"]
    assert up["x-forwarded-proto"] == ("https" if tls else "http")
    assert text == "hello" and big_ok
    # permessage-deflate offered by the client passes through to uvicorn
    assert [e.name for e in ext] == ["permessage-deflate"]
    assert code == 4001  # the app's close reaches the client
    assert wait_ws_closed(app, 1) == 1


def test_h1_raw_handshake_and_client_abort(sluice_factory, upstreams):  # noqa: F811
    app = upstreams()
    s = proxy_server(sluice_factory, [app])
    with wsraw.WSConn(s.h2c_port, path="/ws/echo") as c:
        assert c.status == 101, c.head
        assert c.header("sec-websocket-accept") == c.expected_accept()
        assert c.header("upgrade").lower() == "websocket"
        assert c.recv_frame().op == TEXT  # the app's first message
        c.send_frame(BINARY, b"x" * 70000)
        f = c.recv_frame()
        assert f.op == BINARY and f.payload == b"x" * 70000
    # the client vanished without a close frame: the app hears of it
    assert wait_ws_closed(app, 1) == 1
    # a broken handshake is answered by sluice, not tunnelled
    with wsraw.WSConn(s.h2c_port, path="/ws/echo",
                      headers=[("Host", "x"), ("Upgrade", "websocket"),
                               ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")]) as c:
        assert c.status == 400


def test_h1_upstream_down_is_502(sluice_factory, upstreams):  # noqa: F811
    from conftest import free_port
    s = proxy_server(sluice_factory, ["127.0.0.1:%d" % free_port()])
    with wsraw.WSConn(s.h2c_port, path="/ws/echo") as c:
        assert c.status in (502, 503), c.head


def ws_server_port(s, user):
    """Open a WebSocket through s as X-User user; the port that served it."""
    def hdrs(base):
        return base + [("X-User", user)]
    with wsraw.WSConn(s.h2c_port, path="/ws/echo", headers=hdrs) as c:
        assert c.status == 101, c.head
        return json.loads(c.recv_frame().payload)["port"]


def test_ws_hash_balancing_follows_the_key(sluice_factory, upstreams):  # noqa: F811
    """Regression (issue 11): the tunnel passed no balance key, so with
    "balance": "hash" every WebSocket landed on one server. Now a key
    keeps to one server, keys spread over both, and a WebSocket goes
    where a plain request with the same key goes."""
    from test_60_proxy import raw_get
    a, b = upstreams(), upstreams()
    s = proxy_server(sluice_factory, [a, b], workers=1,
                     up_extra={"balance": "hash", "hash_key": "header:x-user"})
    seen = {}
    for user in ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"):
        ports = {ws_server_port(s, user) for _ in range(2)}
        assert len(ports) == 1, (user, ports)
        seen[user] = ports.pop()
        http = raw_get(s.h2c_port, "/whoami", [("X-User", user)]).json()["port"]
        assert http == seen[user], (user, http, seen[user])
    assert set(seen.values()) == {a.port, b.port}, seen


@pytest.mark.parametrize("dead", ["tcp", "unix"])
def test_ws_connect_failure_counts_for_health(sluice_factory, tmp_path, dead):
    """Regression (issue 11): a tunnel whose connect failed at once (a unix
    socket that is gone fails inside connect(2); loopback TCP fails a
    moment later) did not tell passive health, so the next request tried
    the dead server again. Now one failed WebSocket connect marks it down
    (fail_threshold 1) and the next request is 503 with Retry-After."""
    from conftest import free_port
    from test_60_proxy import raw_get
    server = ("127.0.0.1:%d" % free_port() if dead == "tcp"
              else "unix:" + str(tmp_path / "gone.sock"))
    s = proxy_server(sluice_factory, [server], workers=1,
                     up_extra={"fail_threshold": 1, "down_s": 30, "retries": 0})
    with wsraw.WSConn(s.h2c_port, path="/ws/echo") as c:
        assert c.status == 502, c.head
    r = raw_get(s.h2c_port, "/whoami")
    assert r.status == 503 and r.header("retry-after"), (r.status, r.head)
    assert "websocket: connect failed" in s.stderr() and "marked down" in s.stderr()


def h2_read_message(c, sid, timeout):
    f = c.frame(sid, timeout)
    payload, op = f.payload, f.op
    while not f.fin:
        f = c.frame(sid, timeout)
        payload += f.payload
    return op, payload


@pytest.mark.parametrize("mode", ["h2c", "h2-tls"])
def test_h2_websocket_through_proxy(sluice_factory, upstreams, mode):  # noqa: F811
    app = upstreams()
    s = proxy_server(sluice_factory, [app])
    tls = mode == "h2-tls"
    c = H2Client(s.tls_port if tls else s.h2c_port, tls)
    try:
        c.pump(2.0 * SLOW, lambda: 8 in c.remote_settings)
        assert c.remote_settings.get(8) == 1
        sid = c.connect_ws(path="/ws/echo",
                           extra=[("sec-websocket-extensions", "permessage-deflate")])
        c.pump(10 * SLOW, lambda: c.st(sid)["headers"] is not None or c.st(sid)["reset"])
        h = c.st(sid)["headers"]
        assert h and h[":status"] == "200", c.st(sid)
        assert "sec-websocket-accept" not in h and "sec-websocket-extensions" not in h
        op, first = h2_read_message(c, sid, 10 * SLOW)
        up = hdict(json.loads(first)["headers"])
        # sluice made the key; the offer of an h2 client is not passed on
        assert len(up["sec-websocket-key"]) == 24 and "sec-websocket-extensions" not in up
        assert up["upgrade"].lower() == "websocket"
        c.send(sid, wsraw.frame(TEXT, b"hi there"))
        assert h2_read_message(c, sid, 10 * SLOW) == (TEXT, b"hi there")
        big = os.urandom(MIB)
        c.send(sid, wsraw.frame(BINARY, big))
        op, back = h2_read_message(c, sid, 30 * SLOW)
        assert op == BINARY and hashlib.sha256(back).digest() == hashlib.sha256(big).digest()
        # client close: echoed by the app, then the stream ends
        c.send(sid, wsraw.frame(CLOSE, close_payload(1000)))
        f = c.frame(sid, 10 * SLOW)
        assert f.op == CLOSE and f.code == 1000
        c.pump(10 * SLOW, lambda: c.st(sid)["ended"] or c.st(sid)["reset"] is not None)
        assert c.st(sid)["ended"]
        # a second WebSocket on the same connection; the app closes it
        sid2 = c.connect_ws(path="/ws/echo")
        h2_read_message(c, sid2, 10 * SLOW)
        c.send(sid2, wsraw.frame(TEXT, b"close-me"))
        f = c.frame(sid2, 10 * SLOW)
        assert f.op == CLOSE and f.code == 4001
        c.send(sid2, wsraw.frame(CLOSE, close_payload(4001)))  # finish the close handshake
        c.pump(10 * SLOW, lambda: c.st(sid2)["ended"] or c.st(sid2)["reset"] is not None)
        assert c.st(sid2)["ended"] or c.st(sid2)["reset"] is not None
    finally:
        c.close()
    assert wait_ws_closed(app, 2) == 2


def test_h2_bad_extended_connect(sluice_factory, upstreams):  # noqa: F811
    app = upstreams()
    s = proxy_server(sluice_factory, [app])
    c = H2Client(s.h2c_port, False)
    try:
        c.pump(2.0 * SLOW, lambda: 8 in c.remote_settings)
        sid = c.connect_ws(path="/ws/echo", protocol="not-websocket")
        c.pump(10 * SLOW, lambda: c.st(sid)["headers"] is not None or c.st(sid)["reset"])
        h = c.st(sid)["headers"]
        assert c.st(sid)["reset"] is not None or h[":status"] == "400"
    finally:
        c.close()
    assert app.stats()["requests"] == 1  # only the /stats call itself
