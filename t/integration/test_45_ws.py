"""WebSockets over HTTP/1.1 (RFC 6455): echo with python3-websockets (with
and without permessage-deflate, cleartext and TLS), the handshake answers
(400 / 426), and raw-socket cases for every protocol-error close code
(1002, 1007, 1009), ping/pong, the close handshake, keepalive and drain."""

import asyncio
import signal
import time

import pytest

from conftest import client_ssl, module_server

import wsraw
from wsraw import BINARY, CLOSE, CONT, PING, PONG, TEXT, WSConn, close_payload

websockets = pytest.importorskip("websockets")

WS_ROUTES = [
    {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
    {"path": "/_h/ws/echo", "handler": "ws", "app": "echo", "max_message_bytes": 65536},
    {"path": "/_h/ws/plain", "handler": "ws", "app": "echo", "deflate": False},
    {"path": "/_h/ws/ka", "handler": "ws", "app": "echo", "ping_interval_s": 1,
     "idle_timeout_s": 3},
    {"path": "/_h/ws/broadcast/", "handler": "ws", "app": "broadcast"},
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    with module_server(tmp_path_factory, certs, "ws", routes=WS_ROUTES) as s:
        yield s


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ws_url(srv, path, tls=False):
    if tls:
        return "wss://localhost:%d%s" % (srv.tls_port, path)
    return "ws://127.0.0.1:%d%s" % (srv.h2c_port, path)


def client_kw(tls, compression):
    """websockets.connect options: compression on or off, TLS to the
    self-signed test certificate."""
    kw = {"compression": compression, "max_size": 1 << 20}
    if tls:
        kw["ssl"] = client_ssl()
        kw["host"] = "127.0.0.1"
    return kw


# ---------------------------------------------------------------- echo ----
@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
@pytest.mark.parametrize("compression", [None, "deflate"], ids=["plain", "deflate"])
def test_echo_websockets_client(srv, tls, compression):
    async def go():
        kw = client_kw(tls, compression)
        async with websockets.connect(ws_url(srv, "/_h/ws/echo", tls), **kw) as ws:
            if compression:
                assert ws.extensions, "permessage-deflate was not negotiated"
            else:
                assert not ws.extensions
            msgs = ["hello", "h\u00e9llo w\u00f6rld \U0001f600", "", "x" * 200, "y" * 30000]
            for m in msgs:
                await ws.send(m)
                assert await ws.recv() == m
            for n in (0, 1, 125, 126, 65535, 65536 - 14):  # 7-bit, 16-bit lengths and edges
                b = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
                await ws.send(b)
                got = await ws.recv()
                assert isinstance(got, bytes) and got == b
            # fragmented message (websockets sends an iterable as fragments)
            await ws.send(["ab", "cd", "\u00e9f"])
            assert await ws.recv() == "abcd\u00e9f"
            pong = await ws.ping(b"keepalive?")
            await asyncio.wait_for(pong, 5)
            await ws.close(1000, "bye")
            assert ws.close_code == 1000
    run(go())


@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
@pytest.mark.parametrize("compression", [None, "deflate"], ids=["plain", "deflate"])
def test_message_of_exactly_the_limit(srv, tls, compression):
    """max_message_bytes is inclusive and counts the decompressed message:
    65536 random (incompressible) bytes come back, with or without
    permessage-deflate (whose wire form is then a little larger); one byte
    more is 1009."""
    import os
    data = os.urandom(65536)

    async def go():
        kw = client_kw(tls, compression)
        async with websockets.connect(ws_url(srv, "/_h/ws/echo", tls), **kw) as ws:
            await ws.send(data)
            assert await ws.recv() == data
            await ws.send(data + b"!")
            with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
                await ws.recv()
            assert e.value.rcvd.code == 1009
    run(go())


def test_dev_default_echoes_1mib_compressed(sluice_factory):
    """The dev default route (max_message_bytes 1 MiB) with a browser-like
    client offering permessage-deflate: a 1 MiB binary message comes back."""
    import os
    s = sluice_factory(routes=WS_ROUTES[:1] + [{"path": "/_h/ws/echo", "match": "exact",
                                                "handler": "ws", "app": "echo"}])
    data = os.urandom(1 << 20)

    async def go():
        async with websockets.connect(ws_url(s, "/_h/ws/echo"), compression="deflate",
                                      max_size=2 << 20) as ws:
            assert ws.extensions
            await ws.send(data)
            assert await ws.recv() == data
    run(go(), timeout=60)


def test_echo_64bit_length_and_too_big(srv):
    """A 70000-byte frame uses the 64-bit length form; the route allows
    65536, so 1009 comes back."""
    with WSConn(srv.h2c_port, "/_h/ws/echo") as c:
        assert c.status == 101
        c.send_frame(BINARY, b"z" * 70000)
        f = c.recv_close()
        assert f.code == 1009
        assert c.wait_eof()


def test_echo_64bit_length_ok(srv):
    with WSConn(srv.h2c_port, "/_h/ws/plain") as c:
        data = bytes(range(256)) * 400  # 102400 bytes: 64-bit length form
        c.send_frame(BINARY, data)
        f = c.recv_frame()
        assert f.op == BINARY and f.fin and f.payload == data


# ------------------------------------------------------------ handshake ----
def test_handshake_accept_header(srv):
    with WSConn(srv.h2c_port, "/_h/ws/plain") as c:
        assert c.status == 101
        assert c.header("sec-websocket-accept") == c.expected_accept()
        assert c.header("upgrade").lower() == "websocket"
        assert "upgrade" in c.header("connection").lower()
        assert c.header("sec-websocket-extensions") is None


def _without(name):
    return lambda h: [x for x in h if x[0].lower() != name]


def _replace(name, value):
    return lambda h: [(n, value if n.lower() == name else v) for n, v in h]


@pytest.mark.parametrize("mutate,status", [
    (_without("sec-websocket-key"), 400),
    (_replace("sec-websocket-key", "short"), 400),
    (_replace("sec-websocket-key", "!!!!!!!!!!!!!!!!!!!!!!=="), 400),
    (_without("connection"), 400),
    (_replace("upgrade", "h2c-or-something"), 400),
    (_replace("sec-websocket-version", "8"), 426),
    (_without("sec-websocket-version"), 426),
    (_without("upgrade"), 426),
], ids=["no-key", "short-key", "bad-key", "no-connection", "wrong-upgrade", "version-8",
        "no-version", "plain-get"])
def test_handshake_refused(srv, mutate, status):
    with WSConn(srv.h2c_port, "/_h/ws/echo", headers=mutate) as c:
        assert c.status == status, c.head
        if status == 426:
            assert c.header("sec-websocket-version") == "13"


def test_handshake_non_get(srv):
    import socket
    s = socket.create_connection(("127.0.0.1", srv.h2c_port), timeout=5)
    s.sendall(b"POST /_h/ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n")
    head = s.recv(4096)
    s.close()
    assert head.startswith(b"HTTP/1.1 400"), head


def test_deflate_negotiation_params(srv):
    def offer(v):
        return lambda h: h + [("Sec-WebSocket-Extensions", v)]
    cases = [
        ("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
         ["server_no_context_takeover", "client_no_context_takeover"]),
        ("permessage-deflate; server_max_window_bits=10; client_max_window_bits",
         ["server_max_window_bits=10"]),
        ("permessage-deflate; server_max_window_bits=8, permessage-deflate", []),
    ]
    for value, want in cases:
        with WSConn(srv.h2c_port, "/_h/ws/echo", headers=offer(value)) as c:
            assert c.status == 101
            ext = c.header("sec-websocket-extensions")
            assert ext is not None and ext.startswith("permessage-deflate"), ext
            for w in want:
                assert w in ext, (value, ext)
            if not want:
                assert "window_bits" not in ext
    with WSConn(srv.h2c_port, "/_h/ws/echo",
                headers=offer("permessage-deflate; bogus_param")) as c:
        assert c.status == 101 and c.header("sec-websocket-extensions") is None


# --------------------------------------------------------------- framing ----
def test_ping_pong_same_payload_and_interleaved(srv):
    with WSConn(srv.h2c_port, "/_h/ws/plain") as c:
        c.send_frame(PING, b"abc\x00\xff")
        f = c.recv_frame()
        assert f.op == PONG and f.payload == b"abc\x00\xff"
        # a ping between the fragments of a text message
        c.send_frame(TEXT, b"frag-", fin=False)
        c.send_frame(PING, b"mid")
        c.send_frame(CONT, b"ment", fin=False)
        c.send_frame(PONG, b"unsolicited")
        c.send_frame(CONT, b"ed", fin=True)
        f = c.recv_frame()
        assert f.op == PONG and f.payload == b"mid"
        f = c.recv_frame()
        assert f.op == TEXT and f.payload == b"frag-mented"


def test_close_handshake_echoes_code(srv):
    with WSConn(srv.h2c_port, "/_h/ws/plain") as c:
        c.send_frame(CLOSE, close_payload(3001, "b\u00e9y".encode()))
        f = c.recv_frame()
        assert f.op == CLOSE and f.code == 3001
        assert c.wait_eof()
    with WSConn(srv.h2c_port, "/_h/ws/plain") as c:
        c.send_frame(CLOSE, b"")
        f = c.recv_frame()
        assert f.op == CLOSE and f.payload == b""
        assert c.wait_eof()


BAD = [
    ("unmasked", [wsraw.frame(TEXT, b"hi", mask=False)], 1002),
    ("rsv1-no-deflate", [wsraw.frame(TEXT, b"hi", rsv=4)], 1002),
    ("rsv2", [wsraw.frame(BINARY, b"hi", rsv=2)], 1002),
    ("rsv3-ping", [wsraw.frame(PING, b"hi", rsv=1)], 1002),
    ("opcode-3", [wsraw.frame(3, b"")], 1002),
    ("opcode-11", [wsraw.frame(11, b"")], 1002),
    ("fragmented-ping", [wsraw.frame(PING, b"x", fin=False)], 1002),
    ("ping-126", [wsraw.frame(PING, b"p" * 126)], 1002),
    ("close-126", [wsraw.frame(CLOSE, close_payload(1000, b"r" * 124))], 1002),
    ("lone-continuation", [wsraw.frame(CONT, b"x")], 1002),
    ("text-inside-fragmented", [wsraw.frame(TEXT, b"a", fin=False), wsraw.frame(TEXT, b"b")], 1002),
    ("close-1-byte", [wsraw.frame(CLOSE, b"\x03")], 1002),
    ("close-code-999", [wsraw.frame(CLOSE, close_payload(999))], 1002),
    ("close-code-1005", [wsraw.frame(CLOSE, close_payload(1005))], 1002),
    ("close-code-1006", [wsraw.frame(CLOSE, close_payload(1006))], 1002),
    ("close-code-2000", [wsraw.frame(CLOSE, close_payload(2000))], 1002),
    ("close-code-5000", [wsraw.frame(CLOSE, close_payload(5000))], 1002),
    ("bad-utf8", [wsraw.frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")], 1007),
    ("overlong-utf8", [wsraw.frame(TEXT, b"\xc0\xaf")], 1007),
    ("past-10ffff", [wsraw.frame(TEXT, b"\xf4\x90\x80\x80")], 1007),
    ("truncated-utf8-at-end", [wsraw.frame(TEXT, b"ok\xe2\x82")], 1007),
    ("bad-utf8-in-close-reason", [wsraw.frame(CLOSE, close_payload(1000, b"\xff"))], 1007),
    ("too-big-fragments", [wsraw.frame(BINARY, b"a" * 40000, fin=False),
                           wsraw.frame(CONT, b"b" * 40000)], 1009),
]


@pytest.mark.parametrize("frames,code", [(f, c) for _, f, c in BAD], ids=[n for n, _, _ in BAD])
def test_protocol_error_close_codes(srv, frames, code):
    with WSConn(srv.h2c_port, "/_h/ws/echo") as c:
        assert c.status == 101
        for fr in frames:
            c.send(fr)
        f = c.recv_close()
        assert f.code == code, f
        assert c.wait_eof()
    assert "client sent" in srv.stderr()


def test_utf8_fails_fast_across_fragments(srv):
    """The invalid byte arrives in the second fragment of an unfinished
    message: the close comes without waiting for the last fragment."""
    with WSConn(srv.h2c_port, "/_h/ws/echo") as c:
        c.send_frame(TEXT, b"caf\xc3", fin=False)   # valid so far (open sequence)
        c.send_frame(CONT, b"\xa9 ok \xe2\x82", fin=False)  # still valid
        c.send_frame(CONT, b"\xff", fin=False)      # invalid: must fail now
        f = c.recv_close(timeout=5)
        assert f.code == 1007


def test_utf8_valid_across_fragments(srv):
    with WSConn(srv.h2c_port, "/_h/ws/plain") as c:
        c.send_frame(TEXT, b"\xf0\x9f", fin=False)
        c.send_frame(CONT, b"\x98", fin=False)
        c.send_frame(CONT, b"\x80", fin=True)
        f = c.recv_frame()
        assert f.op == TEXT and f.payload == "\U0001f600".encode()


def test_frames_split_bytewise(srv):
    """Every byte in its own segment: the parser resumes anywhere."""
    with WSConn(srv.h2c_port, "/_h/ws/plain") as c:
        data = wsraw.frame(TEXT, b"slow and steady" * 20)
        for i in range(len(data)):
            c.send(data[i:i + 1])
        f = c.recv_frame()
        assert f.op == TEXT and f.payload == b"slow and steady" * 20


def test_deflate_bomb_cut_at_limit(srv):
    """A small compressed message that inflates past max_message_bytes
    (65536 on this route) gets 1009."""
    import zlib
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    z = co.compress(b"\0" * 2_000_000) + co.flush(zlib.Z_SYNC_FLUSH)
    assert z.endswith(b"\x00\x00\xff\xff") and len(z) < 65536
    hdr = lambda h: h + [("Sec-WebSocket-Extensions", "permessage-deflate")]
    with WSConn(srv.h2c_port, "/_h/ws/echo", headers=hdr) as c:
        assert c.header("sec-websocket-extensions")
        c.send_frame(BINARY, z[:-4], rsv=4)
        f = c.recv_close()
        assert f.code == 1009


def test_deflate_raw_roundtrip(srv):
    import zlib
    hdr = lambda h: h + [("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover")]
    with WSConn(srv.h2c_port, "/_h/ws/echo", headers=hdr) as c:
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
        for i in range(3):
            msg = ("message %d " % i).encode() * 50
            z = co.compress(msg) + co.flush(zlib.Z_SYNC_FLUSH)
            c.send_frame(TEXT, z[:-4], rsv=4)
            f = c.recv_frame()
            assert f.op == TEXT and f.rsv == 4
            # server_no_context_takeover: each message inflates on its own
            d = zlib.decompressobj(-15)
            assert d.decompress(f.payload + b"\x00\x00\xff\xff") == msg
        # RSV1 on a continuation frame is a protocol error
        c.send_frame(TEXT, b"", fin=False, rsv=4)
        c.send_frame(CONT, b"", rsv=4)
        assert c.recv_close().code == 1002


# ------------------------------------------------------------ keepalive ----
def test_server_pings_and_idle_close(srv):
    """ping_interval_s 1, idle_timeout_s 3: a silent client is pinged; one
    that never answers is closed with 1001."""
    with WSConn(srv.h2c_port, "/_h/ws/ka") as c:
        t0 = time.monotonic()
        f = c.recv_frame(timeout=5)
        assert f.op == PING
        f = c.recv_close(timeout=8)
        assert f.code == 1001
        assert 2.0 <= time.monotonic() - t0 <= 8


def test_pong_answers_keep_it_open(srv):
    with WSConn(srv.h2c_port, "/_h/ws/ka") as c:
        end = time.monotonic() + 4.5
        while time.monotonic() < end:
            try:
                f = c.recv_frame(timeout=0.5)
            except TimeoutError:
                continue
            assert f.op == PING, f
            c.send_frame(PONG, f.payload)
        c.send_frame(TEXT, b"still here")
        f = c.recv_frame()
        while f.op == PING:
            f = c.recv_frame()
        assert f.op == TEXT and f.payload == b"still here"


# ----------------------------------------------------------------- drain ----
def test_sigterm_sends_1001(sluice_factory):
    s = sluice_factory(routes=WS_ROUTES)
    c = WSConn(s.h2c_port, "/_h/ws/plain")
    c2 = WSConn(s.tls_port, "/_h/ws/plain", tls=True)
    try:
        c.send_frame(TEXT, b"before")
        assert c.recv_frame().payload == b"before"
        s.signal(signal.SIGTERM)
        for conn in (c, c2):
            f = conn.recv_close(timeout=5)
            assert f.code == 1001
            conn.send_frame(CLOSE, close_payload(1001))
        assert s.wait_exit(10) == 0
    finally:
        c.close()
        c2.close()
