"""Small HTTP/2 helpers for the integration tests.

Two levels:
- RawH2: hand-built frames over a raw socket (struct.pack), for the cases
  python3-h2 refuses to produce (invalid frames, floods, attacks).
- H2Client: a thin synchronous driver around python3-h2 (h2 4.1) that
  collects per-stream results (headers, data, trailers, resets, 1xx).

Also the harness PRNG (docs/harness.md) so tests can compute expected
bodies of /_h/bytes/N independently of the daemon.

Every socket operation is bounded by a timeout.
"""

import hashlib
import select
import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from rawsock import SockConn, client_ssl

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
FRAME_NAMES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM",
               4: "SETTINGS", 5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY",
               8: "WINDOW_UPDATE", 9: "CONTINUATION"}

# flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# settings ids
S_HEADER_TABLE_SIZE = 1
S_ENABLE_PUSH = 2
S_MAX_CONCURRENT_STREAMS = 3
S_INITIAL_WINDOW_SIZE = 4
S_MAX_FRAME_SIZE = 5
S_MAX_HEADER_LIST_SIZE = 6
S_ENABLE_CONNECT_PROTOCOL = 8

# error codes (RFC 9113 section 7)
ERROR_CODES = {
    "NO_ERROR": 0x0, "PROTOCOL_ERROR": 0x1, "INTERNAL_ERROR": 0x2,
    "FLOW_CONTROL_ERROR": 0x3, "SETTINGS_TIMEOUT": 0x4, "STREAM_CLOSED": 0x5,
    "FRAME_SIZE_ERROR": 0x6, "REFUSED_STREAM": 0x7, "CANCEL": 0x8,
    "COMPRESSION_ERROR": 0x9, "CONNECT_ERROR": 0xa, "ENHANCE_YOUR_CALM": 0xb,
    "INADEQUATE_SECURITY": 0xc, "HTTP_1_1_REQUIRED": 0xd,
}
ERROR_NAMES = {v: k for k, v in ERROR_CODES.items()}
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xb


def err_name(code):
    return ERROR_NAMES.get(code, "0x%x" % code)


# --------------------------------------------------------------------------
# harness byte generator (docs/harness.md, "The byte generator"):
# splitmix64 in counter mode, word k = mix(S + (k + 1) * 0x9E3779B97F4A7C15),
# bytes little-endian, body = first N bytes. Written independently of
# src/harness/gen.c so a daemon bug cannot hide in a shared helper.
# --------------------------------------------------------------------------
MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def harness_bytes(n, seed=0):
    words = (n + 7) // 8
    out = []
    pack = struct.Struct("<Q").pack
    z0 = seed & MASK64
    for k in range(words):
        z = (z0 + (k + 1) * GOLDEN) & MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        out.append(pack(z ^ (z >> 31)))
    return b"".join(out)[:n]


def sha256_hex(b):
    return hashlib.sha256(b).hexdigest()


# --------------------------------------------------------------------------
# sockets
# --------------------------------------------------------------------------
def connect(port, tls=False, alpn=("h2",), sni="localhost", timeout=10.0,
            host="127.0.0.1", rcvbuf=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        ctx = client_ssl(alpn=alpn)
        sock = ctx.wrap_socket(sock, server_hostname=sni)
        if alpn and "h2" in alpn:
            got = sock.selected_alpn_protocol()
            if got != "h2":
                sock.close()
                raise AssertionError("ALPN did not select h2 (got %r)" % (got,))
    return sock


# --------------------------------------------------------------------------
# HPACK, hand-rolled (literal header field without indexing, RFC 7541 6.2.2)
# so invalid names (upper case, pseudo-header order) can be sent as-is.
# --------------------------------------------------------------------------
def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _b(s):
    return s if isinstance(s, bytes) else s.encode()


def hpack_literal(name, value, first=0x00):
    """Literal without indexing (0x00), never indexed (0x10) or with
    incremental indexing (first=0x40, prefix 6 handled by caller)."""
    name, value = _b(name), _b(value)
    return bytes([first]) + hpack_int(len(name), 7) + name + \
        hpack_int(len(value), 7) + value


def hpack_literal_indexed(name, value):
    """Literal with incremental indexing, new name (0x40): enters the
    dynamic table at index 62."""
    name, value = _b(name), _b(value)
    return b"\x40" + hpack_int(len(name), 7) + name + \
        hpack_int(len(value), 7) + value


def hpack_indexed(index):
    return hpack_int(index, 7, 0x80)


def hpack_block(headers):
    return b"".join(hpack_literal(n, v) for n, v in headers)


def req_headers(path="/healthz", method="GET", authority="localhost",
                scheme="http", extra=()):
    return [(":method", method), (":scheme", scheme), (":path", path),
            (":authority", authority)] + list(extra)


def frame(ftype, flags=0, sid=0, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", (n >> 16) & 0xFF, n & 0xFFFF, ftype, flags,
                       sid & 0xFFFFFFFF) + payload


def settings_frame(pairs=(), ack=False):
    payload = b"".join(struct.pack(">HI", k, v) for k, v in pairs)
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def headers_frame(sid, headers, end_stream=True, end_headers=True):
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    block = headers if isinstance(headers, bytes) else hpack_block(headers)
    return frame(HEADERS, flags, sid, block)


def data_frame(sid, data=b"", end_stream=False):
    return frame(DATA, END_STREAM if end_stream else 0, sid, data)


def rst_frame(sid, code):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def window_update_frame(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))


def ping_frame(data=b"\0" * 8, ack=False):
    return frame(PING, ACK if ack else 0, 0, data)


def goaway_frame(last_sid=0, code=0, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_sid, code) + debug)


class Frame:
    __slots__ = ("type", "flags", "sid", "payload")

    def __init__(self, ftype, flags, sid, payload):
        self.type, self.flags, self.sid, self.payload = ftype, flags, sid, payload

    def __repr__(self):
        extra = ""
        if self.type == GOAWAY and len(self.payload) >= 8:
            last, code = struct.unpack(">II", self.payload[:8])
            extra = " last=%d %s %r" % (last & 0x7FFFFFFF, err_name(code),
                                        self.payload[8:80])
        elif self.type == RST_STREAM and len(self.payload) == 4:
            extra = " " + err_name(struct.unpack(">I", self.payload)[0])
        return "<%s flags=0x%x sid=%d len=%d%s>" % (
            FRAME_NAMES.get(self.type, "type%d" % self.type), self.flags,
            self.sid, len(self.payload), extra)

    @property
    def error_code(self):
        if self.type == GOAWAY:
            return struct.unpack(">I", self.payload[4:8])[0]
        if self.type == RST_STREAM:
            return struct.unpack(">I", self.payload[:4])[0]
        return None

    @property
    def last_sid(self):
        return struct.unpack(">I", self.payload[:4])[0] & 0x7FFFFFFF

    def settings(self):
        return {k: v for k, v in (struct.unpack(">HI", self.payload[i:i + 6])
                                  for i in range(0, len(self.payload) - 5, 6))}


class Closed(Exception):
    pass


class RawH2(SockConn):
    """Raw HTTP/2 client: sends bytes as given, parses frames it reads.

    Server SETTINGS are acknowledged automatically (auto_ack) so that the
    server's view of the connection is normal unless a test says otherwise.
    """

    def __init__(self, port, tls=False, preface=True, settings=(), timeout=10.0,
                 auto_ack=True, rcvbuf=None):
        self.sock = connect(port, tls=tls, timeout=timeout, rcvbuf=rcvbuf)
        self.tls = tls
        self.timeout = timeout
        self.buf = bytearray()
        self.auto_ack = auto_ack
        self.frames = []          # every frame read, in order
        self.server_settings = None
        self.eof = False
        if preface:
            self.send(PREFACE + settings_frame(settings))

    def _recv(self, timeout):
        if self.tls and self.sock.pending():
            pass
        else:
            r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
            if not r:
                return None
        try:
            self.sock.settimeout(max(timeout, 0.001))
            d = self.sock.recv(65536)
        except socket.timeout:
            return None
        except ssl.SSLWantReadError:
            return None
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            d = b""
        finally:
            try:
                self.sock.settimeout(self.timeout)
            except OSError:
                pass
        if not d:
            self.eof = True
            raise Closed()
        return d

    def _parse_one(self):
        if len(self.buf) < 9:
            return None
        hi, lo, ftype, flags, sid = struct.unpack(">BHBBI", self.buf[:9])
        n = (hi << 16) | lo
        if len(self.buf) < 9 + n:
            return None
        payload = bytes(self.buf[9:9 + n])
        del self.buf[:9 + n]
        f = Frame(ftype, flags, sid & 0x7FFFFFFF, payload)
        self.frames.append(f)
        if ftype == SETTINGS and not flags & ACK:
            if self.server_settings is None:
                self.server_settings = f.settings()
            if self.auto_ack:
                self.send(settings_frame(ack=True))
        return f

    def read_frame(self, timeout=None):
        """Next frame, or None on timeout. Raises Closed at EOF."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            f = self._parse_one()
            if f is not None:
                return f
            left = deadline - time.monotonic()
            # at least one (non-blocking) read even when the time is up
            d = self._recv(max(left, 0))
            if d is None:
                if left <= 0:
                    return None
                continue
            self.buf += d

    def drain(self, timeout=0.0):
        """Read whatever frames are available within timeout (no raise at
        EOF; sets self.eof)."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                f = self.read_frame(max(deadline - time.monotonic(), 0))
            except Closed:
                return out
            if f is None:
                return out
            out.append(f)

    def wait_for(self, pred, timeout=None):
        """First frame matching pred, or None at timeout / EOF."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                f = self.read_frame(left)
            except Closed:
                return None
            if f is None:
                return None
            if pred(f):
                return f

    def wait_end(self, sid, timeout=None, goaway=True):
        """The frame that ended stream sid (END_STREAM or RST_STREAM), also
        when it was already read; or (goaway=True) a GOAWAY; None at
        timeout / EOF."""
        def ends(f):
            return (f.sid == sid and (f.type == RST_STREAM or
                                      (f.type in (HEADERS, DATA) and f.flags & END_STREAM))
                    or (goaway and f.type == GOAWAY))
        for f in self.frames:
            if ends(f):
                return f
        return self.wait_for(ends, timeout)

    def wait_goaway(self, timeout=None):
        return self.wait_for(lambda f: f.type == GOAWAY, timeout)

    def wait_closed(self, timeout=None):
        """True when the server closes the connection within timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self.read_frame(left)
            except Closed:
                return True
        return True

    def handshake(self, timeout=None):
        """Wait for the server's SETTINGS (and our ACK of it)."""
        f = self.wait_for(lambda f: f.type == SETTINGS and not f.flags & ACK, timeout)
        assert f is not None, "no SETTINGS from the server; frames=%r" % self.frames
        return f

    def goaways(self):
        return [f for f in self.frames if f.type == GOAWAY]

    def resets(self, sid=None):
        return [f for f in self.frames
                if f.type == RST_STREAM and (sid is None or f.sid == sid)]

    def stream_frames(self, sid):
        return [f for f in self.frames if f.sid == sid]

    def ping_ok(self, timeout=5.0, data=b"sluice!!"):
        """The connection still answers a PING."""
        if not self.send(ping_frame(data)):
            return False
        f = self.wait_for(lambda f: f.type == PING and f.flags & ACK and
                          f.payload == data, timeout)
        return f is not None


def decode_headers(frames):
    """Decode every server header block in order (HPACK state is shared
    across streams). Returns [(sid, [(name, value), ...])] as str."""
    import hpack
    dec = hpack.Decoder()
    dec.max_allowed_table_size = 1 << 20
    dec.max_header_list_size = 1 << 24
    out = []
    block, bsid = b"", None
    for f in frames:
        if f.type not in (HEADERS, CONTINUATION, PUSH_PROMISE):
            continue
        payload = f.payload
        if f.type in (HEADERS, PUSH_PROMISE):
            if f.flags & PADDED:
                pad = payload[0]
                payload = payload[1:len(payload) - pad]
            if f.type == HEADERS and f.flags & PRIORITY_FLAG:
                payload = payload[5:]
            if f.type == PUSH_PROMISE:
                payload = payload[4:]
            bsid = f.sid
        block += payload
        if f.flags & END_HEADERS:
            hdrs = dec.decode(block, raw=True)
            out.append((bsid, [(n.decode(), v.decode("latin-1")) for n, v in hdrs]))
            block = b""
    return out


def stream_status(frames, sid):
    """:status of the first header block on sid (None when none)."""
    for s, hdrs in decode_headers(frames):
        if s == sid:
            for n, v in hdrs:
                if n == ":status":
                    return int(v)
    return None


# --------------------------------------------------------------------------
# python3-h2 driver
# --------------------------------------------------------------------------
class Stream:
    def __init__(self, sid):
        self.sid = sid
        self.status = None
        self.headers = []
        self.informational = []  # [(status, headers)]
        self.data = bytearray()
        self.data_frames = []    # lengths of DATA frames with payload
        self.trailers = []
        self.ended = False
        self.reset = None        # error code when reset by the server
        self.first_data_at = None

    def header(self, name):
        for n, v in self.headers:
            if n == name:
                return v
        return None

    @property
    def done(self):
        return self.ended or self.reset is not None

    def __repr__(self):
        return "<Stream %d status=%s len=%d ended=%s reset=%s>" % (
            self.sid, self.status, len(self.data), self.ended,
            None if self.reset is None else err_name(self.reset))


class H2Client(SockConn):
    """Synchronous python3-h2 client. auto_window=True gives flow-control
    credit back as soon as data arrives; tests that want to control the
    window set it False and call credit()."""

    def __init__(self, port, tls=False, settings=None, timeout=10.0,
                 auto_window=True, wait_settings=False):
        self.sock = connect(port, tls=tls, timeout=timeout)
        self.tls = tls
        self.timeout = timeout
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.streams = {}
        self.auto_window = auto_window
        self.goaway = None       # ConnectionTerminated event
        self.remote_settings = {}
        self.settings_acked = False
        self.conn_window_updates = []
        self.events = []
        self.closed = False
        self.flush()
        if wait_settings:
            self.pump(lambda: self.settings_acked and self.remote_settings)

    def flush(self):
        d = self.conn.data_to_send()
        if d:
            self.sock.sendall(d)

    def request(self, path, method="GET", headers=(), body=None, end_stream=None,
                scheme=None, authority="localhost"):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", scheme or ("https" if self.tls else "http")),
                (":path", path), (":authority", authority)] + list(headers)
        if end_stream is None:
            end_stream = True
        self.conn.send_headers(sid, hdrs, end_stream=end_stream and body is None)
        self.streams[sid] = Stream(sid)
        self.flush()
        if body is not None:
            self.send_body(sid, body, end_stream=end_stream)
        return sid

    def send_body(self, sid, body, end_stream=True):
        """Send body respecting the peer's flow control windows."""
        view = memoryview(body)
        deadline = time.monotonic() + self.timeout * 3
        while True:
            if len(view) == 0:
                if end_stream:
                    self.conn.end_stream(sid)
                    self.flush()
                return
            win = self.conn.local_flow_control_window(sid)
            n = min(win, self.conn.max_outbound_frame_size, len(view))
            if n > 0:
                self.conn.send_data(sid, bytes(view[:n]))
                view = view[n:]
                self.flush()
                continue
            if time.monotonic() > deadline:
                raise TimeoutError("flow-control window never reopened")
            self.read_some(0.5)

    def credit(self, sid, n):
        if n <= 0:
            return
        try:
            self.conn.increment_flow_control_window(n, stream_id=sid)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        self.conn.increment_flow_control_window(n)
        self.flush()

    def read_some(self, timeout):
        """Read one chunk (or nothing within timeout); process events."""
        r, _, _ = select.select([self.sock], [], [], timeout) if not (
            self.tls and self.sock.pending()) else ([self.sock], [], [])
        if not r:
            return []
        try:
            d = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, OSError):
            d = b""
        if not d:
            self.closed = True
            return []
        evs = self.conn.receive_data(d)
        self._handle(evs)
        self.flush()
        return evs

    def _handle(self, evs):
        for ev in evs:
            self.events.append(ev)
            sid = getattr(ev, "stream_id", None)
            st = self.streams.get(sid) if sid else None
            if isinstance(ev, h2.events.ResponseReceived):
                st.status = int(dict(ev.headers)[":status"])
                st.headers = list(ev.headers)
            elif isinstance(ev, h2.events.InformationalResponseReceived):
                st.informational.append((int(dict(ev.headers)[":status"]), list(ev.headers)))
            elif isinstance(ev, h2.events.DataReceived):
                if st.first_data_at is None:
                    st.first_data_at = time.monotonic()
                st.data += ev.data
                if ev.data:
                    st.data_frames.append(len(ev.data))
                if self.auto_window:
                    self.credit(sid, ev.flow_controlled_length)
            elif isinstance(ev, h2.events.TrailersReceived):
                st.trailers = list(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                st.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                if st is not None:
                    st.reset = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                for k, v in ev.changed_settings.items():
                    self.remote_settings[int(k)] = v.new_value
            elif isinstance(ev, h2.events.SettingsAcknowledged):
                self.settings_acked = True
            elif isinstance(ev, h2.events.WindowUpdated) and ev.stream_id == 0:
                self.conn_window_updates.append(ev.delta)

    def pump(self, until, timeout=None):
        """Read until until() is true; raise TimeoutError otherwise."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out; streams=%r goaway=%r" %
                                   (list(self.streams.values()), self.goaway))
            if self.closed:
                raise Closed("connection closed; streams=%r goaway=%r" %
                             (list(self.streams.values()), self.goaway))
            self.read_some(min(left, 0.5))

    def wait_stream(self, sid, timeout=None):
        st = self.streams[sid]
        self.pump(lambda: st.done, timeout)
        return st

    def get(self, path, timeout=None, **kw):
        sid = self.request(path, **kw)
        return self.wait_stream(sid, timeout)
