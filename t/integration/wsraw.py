"""Raw WebSocket helpers for the integration tests: hand-built frames
(masking, reserved bits, opcodes, lengths exactly as given) over an
HTTP/1.1 upgrade or any byte pipe, and a strict server-frame reader.
Every socket operation is bounded by a timeout."""

import base64
import hashlib
import os
import socket
import ssl
import struct
import time

from rawsock import SockConn, client_ssl

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10


def frame(op, payload=b"", fin=True, mask=True, rsv=0, length=None):
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    body = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
    return head + key + body


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class Closed(Exception):
    pass


class Frame:
    def __init__(self, fin, rsv, op, payload):
        self.fin, self.rsv, self.op, self.payload = fin, rsv, op, payload

    @property
    def code(self):
        if self.op != CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    def __repr__(self):
        return "<Frame op=%d fin=%d rsv=%d len=%d code=%s>" % (
            self.op, self.fin, self.rsv, len(self.payload), self.code)


class FrameReader:
    """Parses unmasked server frames from bytes fed in."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data

    def next(self):
        b = self.buf
        if len(b) < 2:
            return None
        fin, rsv, op = b[0] >> 7, (b[0] >> 4) & 7, b[0] & 15
        assert not (b[1] & 0x80), "server frames must not be masked"
        n, off = b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, off = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, off = struct.unpack("!Q", b[2:10])[0], 10
        if len(b) < off + n:
            return None
        f = Frame(fin, rsv, op, bytes(b[off:off + n]))
        del b[:off + n]
        return f


class WSConn(SockConn):
    """A WebSocket client over HTTP/1.1 that sends exactly what it is told."""

    def __init__(self, port, path="/_h/ws/echo", tls=False, timeout=10.0, headers=None,
                 handshake=True, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = client_ssl(alpn=["http/1.1"])
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.timeout = timeout
        self.reader = FrameReader()
        self.eof = False
        self.status = None
        self.head = b""
        if handshake:
            self.status, self.head = self.upgrade(path, headers)

    def upgrade(self, path, headers=None):
        key = base64.b64encode(os.urandom(16)).decode()
        self.key = key
        hdrs = [("Host", "localhost"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
        if headers is not None:
            hdrs = headers(hdrs) if callable(headers) else headers
        req = "GET %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % h for h in hdrs) + "\r\n"
        self.sock.sendall(req.encode())
        buf = b""
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no response head")
            d = self.sock.recv(65536)
            if not d:
                break
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        self.reader.feed(rest)
        status = int(head.split(b" ", 2)[1]) if head else None
        return status, head

    def header(self, name):
        for line in self.head.split(b"\r\n")[1:]:
            n, _, v = line.partition(b":")
            if n.strip().lower() == name.encode():
                return v.strip().decode()
        return None

    def expected_accept(self):
        return base64.b64encode(hashlib.sha1(self.key.encode() + GUID).digest()).decode()

    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, *a, **kw):
        self.send(frame(*a, **kw))

    def recv_frame(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            f = self.reader.next()
            if f is not None:
                return f
            if self.eof:
                raise Closed()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame")
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                d = b""
            if not d:
                self.eof = True
            self.reader.feed(d)

    def recv_close(self, timeout=None):
        """Skip data/ping frames until a close frame; return it."""
        while True:
            f = self.recv_frame(timeout)
            if f.op == CLOSE:
                return f

    def wait_eof(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            try:
                self.recv_frame(timeout=max(0.05, deadline - time.monotonic()))
            except Closed:
                return True
            except TimeoutError:
                return False
        return self.eof
