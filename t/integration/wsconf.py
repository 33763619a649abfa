"""WebSocket conformance runner (Autobahn|Testsuite style) for
test_46_ws_conformance.py: one transport interface over HTTP/1.1 Upgrade
(cleartext / TLS, raw socket) and HTTP/2 extended CONNECT (h2c / h2 TLS,
python3-h2 drives the stream, the same raw frames go inside DATA), a
per-connection permessage-deflate client, and a case runner: send the
case's hand-built frames (optionally chopped into tiny writes), expect
the listed frames back in order, then the expected close (or, for a clean
case, our close 1000 echoed) and the end of the stream. All waits are
bounded."""

import socket
import ssl
import time
import zlib

import wsraw
from rawsock import client_ssl
from wsraw import CLOSE, FrameReader, close_payload

TRANSPORTS = ["h1", "h1-tls", "h2c", "h2-tls"]
TIMEOUT = 5.0


class Chop:
    """Bytes sent in writes of `size` bytes (split delivery)."""

    def __init__(self, data, size=1):
        self.data, self.size = data, size


class Pause:
    """Wait for the server before sending more (fail-fast checks): the
    listed frames must arrive first."""

    def __init__(self, expect):
        self.expect = expect


class Case:
    """send: list of bytes / Chop / Pause, or callable(pmd) -> that list.
    expect: list of (op, payload) frames the server must send back, in
    order (data frames are decoded when RSV1 is set). close: None (a clean
    case: our close 1000 must be echoed) or a set of acceptable codes the
    server must close with."""

    def __init__(self, cid, send, expect=(), close=None, path="/ws/echo", ext=None):
        self.id, self.send, self.expect = cid, send, list(expect)
        self.close, self.path, self.ext = close, path, ext

    def __repr__(self):
        return self.id


class Pmd:
    """Client side of permessage-deflate for one connection."""

    def __init__(self, client_bits=15, client_nct=False, server_bits=15, server_nct=False):
        self.client_nct, self.server_nct = client_nct, server_nct
        self.client_bits, self.server_bits = client_bits, server_bits
        self.co = zlib.compressobj(6, zlib.DEFLATED, -client_bits)
        self.do = zlib.decompressobj(-server_bits)

    def compress(self, data):
        z = self.co.compress(data) + self.co.flush(zlib.Z_SYNC_FLUSH)
        assert z.endswith(b"\x00\x00\xff\xff")
        if self.client_nct:
            self.co = zlib.compressobj(6, zlib.DEFLATED, -self.client_bits)
        return z[:-4]

    def decompress(self, z):
        if self.server_nct:
            self.do = zlib.decompressobj(-self.server_bits)
        out = self.do.decompress(z + b"\x00\x00\xff\xff")
        assert not self.do.unconsumed_tail
        return out


class H1:
    def __init__(self, srv, path, tls, ext=None):
        hdrs = None
        if ext is not None:
            hdrs = lambda h: h + [("Sec-WebSocket-Extensions", ext)]  # noqa: E731
        port = srv.tls_port if tls else srv.h2c_port
        self.c = wsraw.WSConn(port, path, tls=tls, timeout=TIMEOUT, headers=hdrs)
        self.status = self.c.status
        self.ext = self.c.header("sec-websocket-extensions")

    def send(self, data):
        self.c.send(data)

    def recv_frame(self, timeout=TIMEOUT):
        return self.c.recv_frame(timeout)

    def wait_end(self, timeout=TIMEOUT):
        return self.c.wait_eof(timeout)

    def close(self):
        self.c.close()


class H2:
    """One extended CONNECT stream on its own HTTP/2 connection."""

    def __init__(self, srv, path, tls, ext=None):
        import h2.config
        import h2.connection
        import h2.events
        self.ev = h2.events
        sock = socket.create_connection(("127.0.0.1", srv.tls_port if tls else srv.h2c_port),
                                        timeout=TIMEOUT)
        if tls:
            ctx = client_ssl(alpn=["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.h = h2.connection.H2Connection(cfg)
        self.h.initiate_connection()
        self._flush()
        self.settings = {}
        self.reader = FrameReader()
        self.headers = None
        self.ended = False
        self.reset = None
        self.eof = False
        # RFC 8441 3: extended CONNECT only after SETTINGS_ENABLE_CONNECT_PROTOCOL
        if not self.pump(lambda: 8 in self.settings):
            raise AssertionError("no SETTINGS_ENABLE_CONNECT_PROTOCOL")
        self.sid = self.h.get_next_available_stream_id()
        hdrs = [(":method", "CONNECT"), (":protocol", "websocket"),
                (":scheme", "https" if tls else "http"), (":path", path),
                (":authority", "localhost"), ("sec-websocket-version", "13")]
        if ext is not None:
            hdrs.append(("sec-websocket-extensions", ext))
        self.h.send_headers(self.sid, hdrs, end_stream=False)
        self._flush()
        self.pump(lambda: self.headers is not None or self.reset is not None)
        h = self.headers or {}
        self.status = int(h[":status"]) if ":status" in h else None
        self.ext = h.get("sec-websocket-extensions")

    def _flush(self):
        d = self.h.data_to_send()
        if d:
            self.sock.sendall(d)

    def pump(self, until, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                return until()
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError):
                data = b""
            if not data:
                self.eof = True
                continue
            for ev in self.h.receive_data(data):
                self._event(ev)
            self._flush()
        return True

    def _event(self, ev):
        E = self.ev
        if isinstance(ev, E.RemoteSettingsChanged):
            for k, v in ev.changed_settings.items():
                self.settings[int(k)] = v.new_value
        elif isinstance(ev, E.ResponseReceived):
            self.headers = dict(ev.headers)
        elif isinstance(ev, E.DataReceived):
            self.reader.feed(ev.data)
            if ev.flow_controlled_length:
                self.h.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, E.StreamEnded):
            self.ended = True
        elif isinstance(ev, E.StreamReset):
            self.reset = ev.error_code

    def send(self, data, step=16384):
        for i in range(0, len(data), step):
            n = min(step, len(data) - i)
            if not self.pump(lambda: self.h.local_flow_control_window(self.sid) >= n):
                raise TimeoutError("no flow-control window")
            self.h.send_data(self.sid, data[i:i + n])
            self._flush()

    def recv_frame(self, timeout=TIMEOUT):
        box = []

        def got():
            f = self.reader.next()
            if f is not None:
                box.append(f)
            return bool(box) or self.ended or self.reset is not None

        self.pump(got, timeout)
        if box:
            return box[0]
        if self.ended or self.reset is not None or self.eof:
            raise wsraw.Closed()
        raise TimeoutError("no frame")

    def wait_end(self, timeout=TIMEOUT):
        return self.pump(lambda: self.ended or self.reset is not None, timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def connect(srv, transport, path, ext=None):
    tls = transport.endswith("tls")
    if transport.startswith("h1"):
        return H1(srv, path, tls, ext)
    return H2(srv, path, tls, ext)


def _send_items(t, items, pmd, done_expect):
    for it in items:
        if isinstance(it, Chop):
            for i in range(0, len(it.data), it.size):
                t.send(it.data[i:i + it.size])
                time.sleep(0.0005)
        elif isinstance(it, Pause):
            for exp in it.expect:
                _check_frame(t, exp, pmd)
            done_expect.extend(it.expect)
        else:
            t.send(it)


def _check_frame(t, exp, pmd):
    f = t.recv_frame()
    op, payload = exp
    got = f.payload
    if op == CLOSE:
        assert f.op == CLOSE, "expected close %r, got %r" % (exp, f)
        assert f.code in payload, "close code %s not in %s" % (f.code, payload)
        return f
    if f.rsv & 4:
        assert pmd is not None, "RSV1 without permessage-deflate: %r" % f
        got = pmd.decompress(got)
    assert (f.op, f.fin) == (op, 1), "expected op %d, got %r" % (op, f)
    assert got == payload, "payload differs: %d vs %d bytes" % (len(got), len(payload))
    return f


def run_case(srv, transport, case, pmd=None):
    t = connect(srv, transport, case.path, case.ext)
    try:
        assert t.status in (101, 200), "handshake answered %s" % t.status
        items = case.send(pmd) if callable(case.send) else case.send
        seen = []
        _send_items(t, items, pmd, seen)
        for exp in case.expect:
            _check_frame(t, exp, pmd)
        if any(op == CLOSE for op, _ in seen):
            pass  # a fail-fast case: the close came during a Pause
        elif case.close is None:
            t.send(wsraw.frame(CLOSE, close_payload(1000, b"bye")))
            _check_frame(t, (CLOSE, {1000}), pmd)
        else:
            _check_frame(t, (CLOSE, case.close), pmd)
        assert t.wait_end(), "the stream did not end after the close"
        return t
    finally:
        t.close()
