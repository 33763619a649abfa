"""WebSockets over HTTP/2 (RFC 8441) with python3-h2: SETTINGS_ENABLE_
CONNECT_PROTOCOL, extended CONNECT, WebSocket frames inside DATA, several
WebSockets and an ordinary request multiplexed on one connection, over
h2c and h2 with TLS; malformed extended CONNECT gets a stream error or a
4xx; protocol errors inside the stream get their close codes."""

import socket
import time

import pytest

from conftest import client_ssl, module_server

import wsraw
from wsraw import BINARY, CLOSE, PING, PONG, TEXT, FrameReader, close_payload

h2conn = pytest.importorskip("h2.connection")
import h2.config  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402

ROUTES = [
    {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
    {"path": "/_h/ws/echo", "handler": "ws", "app": "echo", "max_message_bytes": 65536},
    {"path": "/_h/", "handler": "harness"},
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    with module_server(tmp_path_factory, certs, "wsh2", routes=ROUTES) as s:
        yield s


class Client:
    def __init__(self, port, tls):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:
            ctx = client_ssl(alpn=["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.scheme = "https" if tls else "http"
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=False)
        self.c = h2conn.H2Connection(cfg)
        self.c.initiate_connection()
        self.flush()
        self.streams = {}   # sid -> dict(headers, data FrameReader, ended, reset)
        self.remote_settings = {}

    def flush(self):
        d = self.c.data_to_send()
        if d:
            self.sock.sendall(d)

    def pump(self, timeout=5.0, until=None):
        deadline = time.monotonic() + timeout
        while True:
            if until and until():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            if not data:
                return bool(until and until())
            for ev in self.c.receive_data(data):
                self.on_event(ev)
            self.flush()

    def st(self, sid):
        return self.streams.setdefault(sid, {"headers": None, "reader": FrameReader(),
                                             "ended": False, "reset": None, "body": b""})

    def on_event(self, ev):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            for k, v in ev.changed_settings.items():
                self.remote_settings[int(k)] = v.new_value
        elif isinstance(ev, h2.events.ResponseReceived):
            self.st(ev.stream_id)["headers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            s = self.st(ev.stream_id)
            s["reader"].feed(ev.data)
            s["body"] += ev.data
            self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.st(ev.stream_id)["ended"] = True
        elif isinstance(ev, h2.events.StreamReset):
            self.st(ev.stream_id)["reset"] = ev.error_code

    def connect_ws(self, path="/_h/ws/echo", extra=(), protocol="websocket", method="CONNECT"):
        sid = self.c.get_next_available_stream_id()
        hdrs = [(":method", method), (":protocol", protocol), (":scheme", self.scheme),
                (":path", path), (":authority", "localhost"), ("sec-websocket-version", "13")]
        hdrs += list(extra)
        self.c.send_headers(sid, hdrs, end_stream=False)
        self.flush()
        self.st(sid)
        return sid

    def send(self, sid, data, end=False):
        step = 16384
        for i in range(0, len(data), step):
            last = i + step >= len(data)
            self.pump(5, lambda: self.c.local_flow_control_window(sid) >= min(step, len(data) - i))
            self.c.send_data(sid, data[i:i + step], end_stream=end and last)
            self.flush()
        if not data:
            self.c.send_data(sid, b"", end_stream=end)
            self.flush()

    def frame(self, sid, timeout=5.0):
        s = self.st(sid)
        box = []

        def got():
            f = s["reader"].next()
            if f is not None:
                box.append(f)
            return bool(box) or s["reset"] is not None
        self.pump(timeout, got)
        if not box:
            raise TimeoutError("no ws frame on stream %d (reset=%s)" % (sid, s["reset"]))
        return box[0]

    def close(self):
        self.sock.close()


@pytest.fixture(params=["h2c", "h2-tls"])
def client(srv, request):
    tls = request.param == "h2-tls"
    c = Client(srv.tls_port if tls else srv.h2c_port, tls)
    c.pump(2.0, lambda: 8 in c.remote_settings)
    yield c
    c.close()


def test_settings_enable_connect_protocol(client):
    assert client.remote_settings.get(8) == 1


def test_extended_connect_echo(client):
    sid = client.connect_ws()
    assert client.pump(5, lambda: client.st(sid)["headers"] is not None)
    h = client.st(sid)["headers"]
    assert h[":status"] == "200"
    assert "content-length" not in h
    client.send(sid, wsraw.frame(TEXT, "h\u00e9llo".encode()))
    f = client.frame(sid)
    assert f.op == TEXT and f.payload == "h\u00e9llo".encode()
    big = bytes(range(256)) * 200
    client.send(sid, wsraw.frame(BINARY, big))
    f = client.frame(sid)
    assert f.op == BINARY and f.payload == big
    client.send(sid, wsraw.frame(PING, b"p1"))
    f = client.frame(sid)
    assert f.op == PONG and f.payload == b"p1"
    client.send(sid, wsraw.frame(CLOSE, close_payload(1000)))
    f = client.frame(sid)
    assert f.op == CLOSE and f.code == 1000
    assert client.pump(5, lambda: client.st(sid)["ended"])


def test_several_websockets_and_a_request_on_one_connection(client):
    sids = [client.connect_ws() for _ in range(3)]
    assert client.pump(5, lambda: all(client.st(s)["headers"] for s in sids))
    rid = client.c.get_next_available_stream_id()
    client.c.send_headers(rid, [(":method", "GET"), (":scheme", client.scheme),
                                (":path", "/healthz"), (":authority", "localhost")],
                          end_stream=True)
    client.flush()
    for i, s in enumerate(sids):
        client.send(s, wsraw.frame(TEXT, ("stream %d" % i).encode()))
    for i, s in enumerate(reversed(sids)):
        f = client.frame(s)
        assert f.payload == ("stream %d" % (len(sids) - 1 - i)).encode()
    assert client.pump(5, lambda: client.st(rid)["ended"])
    assert client.st(rid)["headers"][":status"] == "200"
    assert b"live" in client.st(rid)["body"]
    # the websockets are still open after the request finished
    for s in sids:
        client.send(s, wsraw.frame(TEXT, b"again"))
        assert client.frame(s).payload == b"again"


@pytest.mark.parametrize("frames,code", [
    ([wsraw.frame(TEXT, b"x", mask=False)], 1002),
    ([wsraw.frame(TEXT, b"\xff")], 1007),
    ([wsraw.frame(PING, b"x", fin=False)], 1002),
    ([wsraw.frame(BINARY, b"b" * 70000)], 1009),
], ids=["unmasked", "bad-utf8", "fragmented-ping", "too-big"])
def test_protocol_errors_in_stream(client, frames, code):
    sid = client.connect_ws()
    for fr in frames:
        client.send(sid, fr)
    f = client.frame(sid)
    while f.op != CLOSE:
        f = client.frame(sid)
    assert f.code == code
    # after the close handshake the stream ends cleanly, it is not reset
    assert client.pump(5, lambda: client.st(sid)["ended"])
    assert client.st(sid)["reset"] is None


def test_bad_version_and_unknown_protocol(client):
    sid = client.connect_ws(extra=())
    client.c.send_data(sid, b"", end_stream=True)  # noqa: keep stream tidy
    sid2 = client.connect_ws(protocol="not-websocket")
    client.pump(5, lambda: client.st(sid2)["headers"] is not None or
                client.st(sid2)["reset"] is not None)
    s2 = client.st(sid2)
    assert s2["reset"] is None and s2["headers"][":status"] == "400", s2


def test_wrong_version_426(srv):
    c = Client(srv.h2c_port, False)
    try:
        sid = c.c.get_next_available_stream_id()
        c.c.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                               (":scheme", "http"), (":path", "/_h/ws/echo"),
                               (":authority", "localhost"), ("sec-websocket-version", "8")])
        c.flush()
        assert c.pump(5, lambda: c.st(sid)["headers"] is not None)
        assert c.st(sid)["headers"][":status"] == "426"
        assert c.st(sid)["headers"].get("sec-websocket-version") == "13"
    finally:
        c.close()


def test_malformed_extended_connect_is_a_stream_error(srv):
    """:protocol without :path (RFC 8441 4: :scheme and :path are required)
    is malformed: RST_STREAM PROTOCOL_ERROR, the connection lives on."""
    c = Client(srv.h2c_port, False)
    try:
        c.pump(2.0, lambda: 8 in c.remote_settings)
        sid = c.c.get_next_available_stream_id()
        c.c.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                               (":scheme", "http"), (":authority", "localhost"),
                               ("sec-websocket-version", "13")])
        c.flush()
        c.pump(5, lambda: c.st(sid)["reset"] is not None or c.st(sid)["headers"] is not None)
        assert c.st(sid)["reset"] == 1 and c.st(sid)["headers"] is None, c.st(sid)  # PROTOCOL_ERROR
        ok = c.connect_ws()
        c.send(ok, wsraw.frame(TEXT, b"alive"))
        assert c.frame(ok).payload == b"alive"
    finally:
        c.close()
