"""HTTP/2 under attack and RFC 9113 MUST-level conformance, with raw
frames. The server must answer each with the right protocol error and stay
up (a fresh /healthz after each); attacks must not grow its memory."""

import socket
import ssl
import struct
import time

import pytest

import h2raw
from conftest import SANITIZE, SLOW, module_server
from h2raw import (ACK, CANCEL, CONTINUATION, DATA, END_HEADERS, END_STREAM, ENHANCE_YOUR_CALM,
                   FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, GOAWAY, HEADERS, NO_ERROR, PADDED,
                   PING, PRIORITY, PROTOCOL_ERROR, PUSH_PROMISE, REFUSED_STREAM, RST_STREAM,
                   SETTINGS, STREAM_CLOSED, WINDOW_UPDATE, H2Client, RawH2, data_frame, err_name,
                   frame, headers_frame, hpack_block, hpack_indexed, hpack_literal,
                   hpack_literal_indexed, ping_frame, req_headers, rst_frame, settings_frame,
                   window_update_frame)

LISTENERS = ["h2c", "tls"]


def port_of(server, which):
    return server.tls_port if which == "tls" else server.h2c_port


def raw(server, which, **kw):
    r = RawH2(port_of(server, which), tls=(which == "tls"), **kw)
    return r


def req(path="/healthz", method="GET", which="h2c", extra=()):
    return req_headers(path, method, scheme="https" if which == "tls" else "http", extra=extra)


class Rss:
    """RSS growth of the daemon across an attack (skipped under ASan,
    whose quarantine makes RSS meaningless)."""

    def __init__(self, server, limit_mb):
        self.server, self.limit = server, limit_mb * 1024
        self.start = server.rss_kb()

    def check(self):
        if SANITIZE or self.start is None:
            return
        now = self.server.rss_kb()
        assert now is not None
        assert now - self.start < self.limit, "RSS grew %d KiB (from %d to %d KiB)" % (
            now - self.start, self.start, now)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    with module_server(tmp_path_factory, certs, "h2lim") as s:
        yield s


# ---------------------------------------------------------------------------
# attacks
# ---------------------------------------------------------------------------
def test_rapid_reset(sluice_factory):
    """CVE-2023-44487: HEADERS+RST_STREAM pairs as fast as possible. The
    abuser gets GOAWAY ENHANCE_YOUR_CALM; a connection opened before and
    one opened during the attack are served throughout."""
    s = sluice_factory()
    rss = Rss(s, 32)
    before = H2Client(s.h2c_port)
    assert before.get("/healthz").status == 200
    r = raw(s, "h2c")
    r.handshake()
    sid = 1
    during = None
    goaway = None
    t0 = time.monotonic()
    for batch in range(200):
        data = b"".join(headers_frame(sid + 2 * i, req("/_h/delay/1000")) +
                        rst_frame(sid + 2 * i, CANCEL) for i in range(100))
        sid += 200
        if not r.send(data):
            break
        if batch == 3:
            during = H2Client(s.h2c_port)
            assert during.get("/healthz", timeout=5 * SLOW).status == 200
        r.drain(0.001)
        if r.goaways() or r.eof or time.monotonic() - t0 > 20 * SLOW:
            break
    r.drain(2 * SLOW)
    gs = r.goaways()
    assert gs, "no GOAWAY after %d reset streams (eof=%s)" % ((sid - 1) // 2, r.eof)
    goaway = gs[-1]
    assert goaway.error_code == ENHANCE_YOUR_CALM, goaway
    assert r.wait_closed(5 * SLOW)
    r.close()
    assert during is not None, "attack ended before the second connection was opened"
    assert during.get("/_h/bytes/1000").status == 200
    assert before.get("/healthz").status == 200
    before.close()
    during.close()
    rss.check()
    s.assert_up()


def test_made_you_reset(sluice_factory):
    """CVE-2025-8671: the client makes the *server* reset streams whose
    handler has started (a WINDOW_UPDATE that overflows the stream window
    -> RST_STREAM FLOW_CONTROL_ERROR). Those resets count too: the
    connection ends with GOAWAY ENHANCE_YOUR_CALM."""
    s = sluice_factory()
    r = raw(s, "h2c")
    r.handshake()
    sid = 1
    t0 = time.monotonic()
    for batch in range(100):
        data = b"".join(headers_frame(sid + 2 * i, req("/_h/delay/2000")) +
                        window_update_frame(sid + 2 * i, 2 ** 31 - 1) for i in range(50))
        sid += 100
        if not r.send(data):
            break
        r.drain(0.005)
        if r.goaways() or r.eof or time.monotonic() - t0 > 20 * SLOW:
            break
    r.drain(2 * SLOW)
    server_resets = len(r.resets())
    gs = r.goaways()
    assert server_resets > 0, "server never reset the misbehaving streams: %r" % r.frames[-5:]
    assert gs, "no GOAWAY after %d server-sent resets" % server_resets
    assert gs[-1].error_code == ENHANCE_YOUR_CALM, gs[-1]
    r.close()
    s.assert_up()


def flood(r, unit, count, batch=4096, read=False, deadline_s=20):
    """Send unit count times. Returns 'closed' (server closed / reset),
    'blocked' (server stopped reading) or 'sent'."""
    t0 = time.monotonic()
    chunk = unit * batch
    sent = 0
    while sent < count:
        try:
            r.sock.settimeout(3 * SLOW)
            r.sock.sendall(chunk)
        except (socket.timeout, ssl.SSLWantWriteError):
            return "blocked"
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return "closed"
        sent += batch
        if read:
            r.drain(0)
            if r.eof or r.goaways():
                return "closed"
        if time.monotonic() - t0 > deadline_s * SLOW:
            return "sent"
    return "sent"


@pytest.mark.parametrize("which", LISTENERS)
def test_ping_flood(sluice_factory, which):
    """PINGs without reading the ACKs: the server either cuts the
    connection or stops reading; it never queues acks without bound."""
    s = sluice_factory()
    rss = Rss(s, 16)
    r = raw(s, which, rcvbuf=4096)
    r.handshake()
    outcome = flood(r, ping_frame(b"floodpin"), 1_000_000)
    frames = r.drain(1)
    gs = [f for f in frames if f.type == GOAWAY]
    rss.check()
    assert outcome in ("closed", "blocked") or r.eof or gs, \
        "1M PINGs accepted, connection still open and reading"
    for g in gs:
        assert g.error_code == ENHANCE_YOUR_CALM, g
    r.close()
    s.assert_up()


@pytest.mark.parametrize("which", LISTENERS)
def test_settings_flood(sluice_factory, which):
    s = sluice_factory()
    rss = Rss(s, 16)
    r = raw(s, which, rcvbuf=4096)
    r.handshake()
    outcome = flood(r, settings_frame([(h2raw.S_ENABLE_PUSH, 0)]), 500_000)
    r.drain(1)
    rss.check()
    assert outcome in ("closed", "blocked") or r.eof or r.goaways(), \
        "500k SETTINGS accepted, connection still open and reading"
    for g in r.goaways():
        assert g.error_code == ENHANCE_YOUR_CALM, g
    r.close()
    s.assert_up()


def test_settings_too_many_entries(srv):
    """More entries in one SETTINGS than limits.h2_max_settings (32)."""
    with raw(srv, "h2c") as r:
        r.handshake()
        r.send(settings_frame([(h2raw.S_ENABLE_PUSH, 0)] * 64))
        g = r.wait_goaway(5 * SLOW)
        assert g is not None or r.eof, "64-entry SETTINGS accepted"
        if g is not None:
            assert g.error_code == ENHANCE_YOUR_CALM, g
        assert r.wait_closed(5 * SLOW)
    srv.assert_up()


@pytest.mark.parametrize("which", LISTENERS)
def test_empty_data_flood(sluice_factory, which):
    """Empty DATA frames cost the server work and move nothing: past the
    glitch limit the connection gets GOAWAY ENHANCE_YOUR_CALM."""
    s = sluice_factory()
    r = raw(s, which)
    r.handshake()
    r.send(headers_frame(1, req("/_h/sink", "POST", which), end_stream=False))
    outcome = flood(r, data_frame(1, b""), 50_000, batch=500, read=True)
    r.drain(2 * SLOW)
    gs = r.goaways()
    assert gs, "no GOAWAY after an empty DATA flood (%s)" % outcome
    assert gs[-1].error_code == ENHANCE_YOUR_CALM, gs[-1]
    assert r.wait_closed(5 * SLOW)
    r.close()
    s.assert_up()


@pytest.mark.parametrize("which", LISTENERS)
def test_empty_headers_continuation_flood(sluice_factory, which):
    """Many empty CONTINUATION frames (header block never ends)."""
    s = sluice_factory()
    r = raw(s, which)
    r.handshake()
    r.send(headers_frame(1, req("/healthz", which=which), end_stream=True, end_headers=False))
    outcome = flood(r, frame(CONTINUATION, 0, 1, b""), 100_000, batch=1000, read=True)
    r.drain(2 * SLOW)
    assert r.eof or r.goaways(), "CONTINUATION flood not stopped (%s)" % outcome
    for g in r.goaways():
        assert g.error_code != NO_ERROR, g
    assert r.wait_closed(5 * SLOW)
    r.close()
    s.assert_up()


@pytest.mark.parametrize("which", LISTENERS)
def test_continuation_flood(sluice_factory, which):
    """CONTINUATION frames each carrying a header: the connection is
    closed with an error long before the header list is taken whole."""
    s = sluice_factory()
    rss = Rss(s, 16)
    r = raw(s, which)
    r.handshake()
    r.send(headers_frame(1, req("/healthz", which=which), end_stream=True, end_headers=False))
    unit = frame(CONTINUATION, 0, 1, hpack_literal("x-flood", "v" * 40))
    outcome = flood(r, unit, 200_000, batch=500, read=True)
    r.drain(2 * SLOW)
    assert r.eof or r.goaways(), "CONTINUATION flood not stopped (%s)" % outcome
    for g in r.goaways():
        assert g.error_code != NO_ERROR, g
    assert h2raw.stream_status(r.frames, 1) is None, "flooded request was answered"
    assert r.wait_closed(5 * SLOW)
    r.close()
    rss.check()
    s.assert_up()


def refused(r, sid):
    """The server refused the stream: RST_STREAM, a 4xx, or GOAWAY."""
    status = h2raw.stream_status(r.frames, sid)
    if r.resets(sid):
        return "rst %s" % err_name(r.resets(sid)[0].error_code)
    if status is not None and 400 <= status < 500:
        return "status %d" % status
    gs = r.goaways()
    if gs and gs[-1].error_code != NO_ERROR:
        return "goaway %s" % err_name(gs[-1].error_code)
    return None


@pytest.mark.parametrize("which", LISTENERS)
def test_oversized_header_list(sluice_factory, which):
    s = sluice_factory(limits={"h2_header_list_bytes": 4096})
    with raw(s, which) as r:
        st = r.handshake().settings()
        assert st.get(h2raw.S_MAX_HEADER_LIST_SIZE) == 4096
        extra = [("x-big-%d" % i, "b" * 1000) for i in range(8)]
        r.send(headers_frame(1, req("/_h/anything", which=which, extra=extra)))
        r.wait_for(lambda f: f.sid == 1 and (f.type == RST_STREAM or f.flags & END_STREAM)
                   or f.type == GOAWAY, 5 * SLOW)
        why = refused(r, 1)
        assert why, "header list over the limit answered: %r" % r.frames
        assert h2raw.stream_status(r.frames, 1) != 200
        if not r.goaways():
            assert r.ping_ok(), "connection dead after a stream-level refusal"
    s.assert_up()


@pytest.mark.parametrize("which", LISTENERS)
def test_hpack_bomb(sluice_factory, which):
    """One 4000-byte header in the dynamic table, then streams that
    reference it 1000 times (4 MB of headers from 1 KB on the wire)."""
    s = sluice_factory()
    rss = Rss(s, 16)
    with raw(s, which) as r:
        r.handshake()
        block = hpack_block(req("/healthz", which=which)) + \
            hpack_literal_indexed("x-bomb", "B" * 4000)
        r.send(headers_frame(1, block))
        r.wait_for(lambda f: f.sid == 1 and f.flags & END_STREAM, 5 * SLOW)
        assert h2raw.stream_status(r.frames, 1) == 200
        sid = 3
        for _ in range(50):
            bomb = hpack_block(req("/healthz", which=which)) + hpack_indexed(62) * 1000
            if not r.send(headers_frame(sid, bomb)):
                break
            r.wait_for(lambda f: f.sid == sid and (f.type == RST_STREAM or
                                                   f.flags & END_STREAM)
                       or f.type == GOAWAY, 5 * SLOW)
            assert refused(r, sid), "HPACK bomb stream %d answered: %s" % (
                sid, h2raw.stream_status(r.frames, sid))
            if r.goaways() or r.eof:
                break
            sid += 2
    rss.check()
    s.assert_up()


def test_max_concurrent_streams_enforced(sluice_factory):
    s = sluice_factory(limits={"h2_max_concurrent_streams": 5})
    with raw(s, "h2c") as r:
        st = r.handshake().settings()
        assert st.get(h2raw.S_MAX_CONCURRENT_STREAMS) == 5
        # make sure the server has our SETTINGS ACK: a PING round trip
        assert r.ping_ok()
        sids = [1 + 2 * i for i in range(10)]
        r.send(b"".join(headers_frame(x, req("/_h/delay/1000")) for x in sids))
        deadline = time.monotonic() + 10 * SLOW
        done = set()
        while len(done) < 10 and time.monotonic() < deadline:
            f = r.read_frame(0.5)
            if f is None:
                continue
            if f.type == RST_STREAM or (f.type in (HEADERS, DATA) and f.flags & END_STREAM):
                done.add(f.sid)
            assert f.type != GOAWAY, f
        assert len(done) == 10, (done, r.frames)
        ok = [x for x in sids if h2raw.stream_status(r.frames, x) == 200]
        refused_ = [x for x in sids if any(f.error_code == REFUSED_STREAM
                                           for f in r.resets(x))]
        assert len(ok) == 5, [(x, h2raw.stream_status(r.frames, x), r.resets(x))
                              for x in sids]
        assert sorted(refused_) == sids[5:], r.resets()
    s.assert_up()


# ---------------------------------------------------------------------------
# RFC 9113 MUST-level conformance (both listeners)
# ---------------------------------------------------------------------------
def open_post(r, which, sid=1, path="/_h/sink"):
    r.send(headers_frame(sid, req(path, "POST", which), end_stream=False))


def c_data_stream0(r, w):
    r.send(frame(DATA, 0, 0, b"abc"))


def c_headers_even(r, w):
    r.send(headers_frame(2, req(which=w)))


def c_headers_stream0(r, w):
    r.send(headers_frame(0, req(which=w)))


def c_settings_bad_len(r, w):
    r.send(frame(SETTINGS, 0, 0, b"\0" * 5))


def c_settings_ack_payload(r, w):
    r.send(frame(SETTINGS, ACK, 0, b"\0\x02\0\0\0\0"))


def c_settings_on_stream(r, w):
    r.send(frame(SETTINGS, 0, 1, b""))


def c_initial_window_too_big(r, w):
    r.send(settings_frame([(h2raw.S_INITIAL_WINDOW_SIZE, 2 ** 31)]))


def c_max_frame_size_small(r, w):
    r.send(settings_frame([(h2raw.S_MAX_FRAME_SIZE, 16383)]))


def c_max_frame_size_big(r, w):
    r.send(settings_frame([(h2raw.S_MAX_FRAME_SIZE, 2 ** 24)]))


def c_enable_push_2(r, w):
    r.send(settings_frame([(h2raw.S_ENABLE_PUSH, 2)]))


def c_window_update_0_conn(r, w):
    r.send(window_update_frame(0, 0))


def c_window_update_0_stream(r, w):
    open_post(r, w)
    r.send(window_update_frame(1, 0))


def c_window_update_bad_len(r, w):
    r.send(frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\1\0"))


def c_window_overflow_conn(r, w):
    r.send(window_update_frame(0, 2 ** 31 - 1) + window_update_frame(0, 2 ** 31 - 1))


def c_window_overflow_stream(r, w):
    open_post(r, w)
    r.send(window_update_frame(1, 2 ** 31 - 1) + window_update_frame(1, 2 ** 31 - 1))


def c_frame_too_large(r, w):
    open_post(r, w)
    r.send(frame(DATA, 0, 1, b"x" * 16385))


def c_headers_too_large(r, w):
    r.send(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                 hpack_block(req(which=w, extra=[("x-a", "a" * 17000)]))))


def c_ping_bad_len(r, w):
    r.send(frame(PING, 0, 0, b"\0" * 7))


def c_ping_on_stream(r, w):
    r.send(frame(PING, 0, 1, b"\0" * 8))


def c_rst_idle(r, w):
    r.send(rst_frame(5, CANCEL))


def c_rst_stream0(r, w):
    r.send(rst_frame(0, CANCEL))


def c_rst_bad_len(r, w):
    open_post(r, w)
    r.send(frame(RST_STREAM, 0, 1, b"\0\0\0"))


def c_data_idle(r, w):
    r.send(data_frame(1, b"abc"))


def c_stream_id_decreasing(r, w):
    r.send(headers_frame(5, req("/_h/delay/500", which=w)) + headers_frame(3, req(which=w)))


def c_continuation_alone(r, w):
    r.send(frame(CONTINUATION, END_HEADERS, 1, hpack_block(req(which=w))))


def c_headers_interrupted(r, w):
    r.send(headers_frame(1, req(which=w), end_headers=False) + ping_frame())


def c_continuation_other_stream(r, w):
    r.send(headers_frame(1, req(which=w), end_headers=False) +
           frame(CONTINUATION, END_HEADERS, 3, hpack_literal("x-a", "1")))


def c_push_promise(r, w):
    r.send(frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) +
                 hpack_block(req(which=w))))


def c_bad_padding(r, w):
    block = hpack_block(req(which=w))
    r.send(frame(HEADERS, END_HEADERS | END_STREAM | PADDED, 1,
                 bytes([len(block) + 10]) + block))


def c_priority_bad_len(r, w):
    r.send(frame(PRIORITY, 0, 1, b"\0\0\0\0"))


def c_priority_self(r, w):
    open_post(r, w)
    r.send(frame(PRIORITY, 0, 1, struct.pack(">IB", 1, 15)))


def c_hpack_garbage(r, w):
    r.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\xff\xff\xff"))


def c_data_after_end_stream(r, w):
    r.send(headers_frame(1, req("/_h/delay/1000", which=w)))
    r.send(data_frame(1, b"late"))


def _finished_get(r, w, sid=1):
    """A GET on sid that the server has answered in full (closed both ways)."""
    r.send(headers_frame(sid, req(which=w)))
    assert r.wait_end(sid, 5 * SLOW), "no response on stream %d" % sid


def c_data_on_closed(r, w):
    _finished_get(r, w)
    r.send(data_frame(1, b"late"))


def c_headers_on_closed(r, w):
    _finished_get(r, w)
    r.send(headers_frame(1, req(which=w)))


def c_data_after_client_rst(r, w):
    r.send(headers_frame(1, req("/_h/delay/3000", which=w)))
    r.send(rst_frame(1, CANCEL))
    r.send(data_frame(1, b"late"))


def c_headers_after_client_rst(r, w):
    r.send(headers_frame(1, req("/_h/delay/3000", which=w)))
    r.send(rst_frame(1, CANCEL))
    r.send(headers_frame(1, req(which=w)))


def c_data_on_skipped_id(r, w):
    # stream 3 opens; idle stream 1 below it is now implicitly closed
    r.send(headers_frame(3, req(which=w)))
    r.send(data_frame(1, b"x"))


def c_data_after_our_rst(r, w):
    # we reset stream 1 (harness reset); the client's late DATA and
    # trailers on it must be ignored (RFC 9113 5.1 "closed")
    r.send(headers_frame(1, req("/_h/reset?code=CANCEL", "POST", w), end_stream=False))
    f = r.wait_for(lambda f: f.type == RST_STREAM and f.sid == 1, 5 * SLOW)
    assert f is not None, "harness reset sent no RST_STREAM"
    r.send(data_frame(1, b"in flight"))
    r.send(headers_frame(1, [("x-trailer", "1")]))


def c_priority_stream0(r, w):
    r.send(frame(PRIORITY, 0, 0, struct.pack(">IB", 1, 15)))


def c_goaway_on_stream(r, w):
    r.send(frame(GOAWAY, 0, 1, struct.pack(">II", 0, 0)))


def _hdr_case(headers, end_stream=True):
    def f(r, w):
        h = [(n, v.replace("SCHEME", "https" if w == "tls" else "http")) for n, v in headers]
        r.send(headers_frame(1, h, end_stream=end_stream))
    return f


BASE = [(":method", "GET"), (":scheme", "SCHEME"), (":path", "/healthz"),
        (":authority", "localhost")]

c_uppercase_name = _hdr_case(BASE + [("X-Upper", "1")])
c_pseudo_after_regular = _hdr_case(BASE[:2] + [("x-a", "1")] + BASE[2:])
c_missing_path = _hdr_case([h for h in BASE if h[0] != ":path"])
c_missing_method = _hdr_case([h for h in BASE if h[0] != ":method"])
c_empty_path = _hdr_case([(n, "" if n == ":path" else v) for n, v in BASE])
c_duplicate_path = _hdr_case(BASE + [(":path", "/x")])
c_unknown_pseudo = _hdr_case(BASE + [(":foo", "bar")])
c_response_pseudo = _hdr_case(BASE + [(":status", "200")])
c_connection_header = _hdr_case(BASE + [("connection", "keep-alive")])
c_te_gzip = _hdr_case(BASE + [("te", "gzip")])
c_space_in_name = _hdr_case(BASE + [("x a", "1")])
c_nul_in_value = _hdr_case(BASE + [("x-a", "a\0b")])
c_cr_in_value = _hdr_case(BASE + [("x-a", "a\rb")])


def c_content_length_mismatch(r, w):
    r.send(headers_frame(1, req("/_h/sink", "POST", w, extra=[("content-length", "10")]),
                         end_stream=False))
    r.send(data_frame(1, b"12345", end_stream=True))


def c_content_length_exceeded(r, w):
    r.send(headers_frame(1, req("/_h/sink", "POST", w, extra=[("content-length", "3")]),
                         end_stream=False))
    r.send(data_frame(1, b"12345", end_stream=True))


def c_unknown_frame(r, w):
    r.send(frame(0xFA, 0xFF, 0, b"hello") + frame(0xFB, 0, 1, b"x" * 100))


def c_unknown_setting(r, w):
    r.send(settings_frame([(0xF0F0, 7)]))


def c_priority_on_idle(r, w):
    r.send(frame(PRIORITY, 0, 9, struct.pack(">IB", 0, 15)))


def c_te_trailers(r, w):
    _hdr_case(BASE + [("te", "trailers")])(r, w)


# name -> (case, expectation)
#  ("goaway", CODE): connection error CODE (GOAWAY then close)
#  ("stream", CODE): stream error CODE on stream 1 (or connection error CODE)
#  ("ok",): the connection goes on (PING answered), stream 1 if any -> 200
CONFORMANCE = {
    "data-on-stream-0": (c_data_stream0, ("goaway", PROTOCOL_ERROR)),
    "headers-even-stream": (c_headers_even, ("goaway", PROTOCOL_ERROR)),
    "headers-stream-0": (c_headers_stream0, ("goaway", PROTOCOL_ERROR)),
    "settings-bad-length": (c_settings_bad_len, ("goaway", FRAME_SIZE_ERROR)),
    "settings-ack-with-payload": (c_settings_ack_payload, ("goaway", FRAME_SIZE_ERROR)),
    "settings-on-stream": (c_settings_on_stream, ("goaway", PROTOCOL_ERROR)),
    "initial-window-too-big": (c_initial_window_too_big, ("goaway", FLOW_CONTROL_ERROR)),
    "max-frame-size-too-small": (c_max_frame_size_small, ("goaway", PROTOCOL_ERROR)),
    "max-frame-size-too-big": (c_max_frame_size_big, ("goaway", PROTOCOL_ERROR)),
    "enable-push-2": (c_enable_push_2, ("goaway", PROTOCOL_ERROR)),
    "window-update-0-conn": (c_window_update_0_conn, ("goaway", PROTOCOL_ERROR)),
    "window-update-0-stream": (c_window_update_0_stream, ("stream", PROTOCOL_ERROR)),
    "window-update-bad-length": (c_window_update_bad_len, ("goaway", FRAME_SIZE_ERROR)),
    "window-overflow-conn": (c_window_overflow_conn, ("goaway", FLOW_CONTROL_ERROR)),
    "window-overflow-stream": (c_window_overflow_stream, ("stream", FLOW_CONTROL_ERROR)),
    "data-larger-than-max-frame": (c_frame_too_large, ("stream", FRAME_SIZE_ERROR)),
    "headers-larger-than-max-frame": (c_headers_too_large, ("goaway", FRAME_SIZE_ERROR)),
    "ping-bad-length": (c_ping_bad_len, ("goaway", FRAME_SIZE_ERROR)),
    "ping-on-stream": (c_ping_on_stream, ("goaway", PROTOCOL_ERROR)),
    "rst-on-idle-stream": (c_rst_idle, ("goaway", PROTOCOL_ERROR)),
    "rst-on-stream-0": (c_rst_stream0, ("goaway", PROTOCOL_ERROR)),
    "rst-bad-length": (c_rst_bad_len, ("goaway", FRAME_SIZE_ERROR)),
    "data-on-idle-stream": (c_data_idle, ("goaway", PROTOCOL_ERROR)),
    "stream-id-decreasing": (c_stream_id_decreasing, ("goaway", PROTOCOL_ERROR)),
    "continuation-without-headers": (c_continuation_alone, ("goaway", PROTOCOL_ERROR)),
    "headers-interrupted": (c_headers_interrupted, ("goaway", PROTOCOL_ERROR)),
    "continuation-other-stream": (c_continuation_other_stream, ("goaway", PROTOCOL_ERROR)),
    "client-push-promise": (c_push_promise, ("goaway", PROTOCOL_ERROR)),
    "padding-too-long": (c_bad_padding, ("goaway", PROTOCOL_ERROR)),
    "priority-bad-length": (c_priority_bad_len, ("stream", FRAME_SIZE_ERROR)),
    # RFC 9113 5.3.1 keeps this a MUST even with RFC 7540 priorities off;
    # a stream error that we widen to the connection (5.4.1)
    "priority-self-dependency": (c_priority_self, ("goaway", PROTOCOL_ERROR)),
    "priority-on-stream-0": (c_priority_stream0, ("goaway", PROTOCOL_ERROR)),
    # RFC 9113 5.1 "closed": nghttp2 keeps no closed streams (memory), we
    # remember enough of them to answer STREAM_CLOSED
    "data-on-closed-stream": (c_data_on_closed, ("goaway", STREAM_CLOSED)),
    "headers-on-closed-stream": (c_headers_on_closed, ("goaway", STREAM_CLOSED)),
    "data-after-client-rst": (c_data_after_client_rst, ("goaway", STREAM_CLOSED)),
    "headers-after-client-rst": (c_headers_after_client_rst, ("goaway", STREAM_CLOSED)),
    "data-on-skipped-stream-id": (c_data_on_skipped_id, ("goaway", STREAM_CLOSED)),
    "frames-after-our-rst-ignored": (c_data_after_our_rst, ("ok",)),
    "hpack-garbage": (c_hpack_garbage, ("goaway", h2raw.COMPRESSION_ERROR)),
    "data-after-end-stream": (c_data_after_end_stream, ("stream", STREAM_CLOSED)),
    "goaway-on-stream": (c_goaway_on_stream, ("goaway", PROTOCOL_ERROR)),
    "uppercase-header-name": (c_uppercase_name, ("stream", PROTOCOL_ERROR)),
    "pseudo-after-regular": (c_pseudo_after_regular, ("stream", PROTOCOL_ERROR)),
    "missing-path": (c_missing_path, ("stream", PROTOCOL_ERROR)),
    "missing-method": (c_missing_method, ("stream", PROTOCOL_ERROR)),
    "empty-path": (c_empty_path, ("stream", PROTOCOL_ERROR)),
    "duplicate-path": (c_duplicate_path, ("stream", PROTOCOL_ERROR)),
    "unknown-pseudo-header": (c_unknown_pseudo, ("stream", PROTOCOL_ERROR)),
    "response-pseudo-in-request": (c_response_pseudo, ("stream", PROTOCOL_ERROR)),
    "connection-header": (c_connection_header, ("stream", PROTOCOL_ERROR)),
    "te-not-trailers": (c_te_gzip, ("stream", PROTOCOL_ERROR)),
    "space-in-header-name": (c_space_in_name, ("stream", PROTOCOL_ERROR)),
    "nul-in-header-value": (c_nul_in_value, ("stream", PROTOCOL_ERROR)),
    "cr-in-header-value": (c_cr_in_value, ("stream", PROTOCOL_ERROR)),
    "content-length-short": (c_content_length_mismatch, ("stream", PROTOCOL_ERROR)),
    "content-length-exceeded": (c_content_length_exceeded, ("stream", PROTOCOL_ERROR)),
    "unknown-frame-type-ignored": (c_unknown_frame, ("ok",)),
    "unknown-setting-ignored": (c_unknown_setting, ("ok",)),
    "priority-on-idle-ok": (c_priority_on_idle, ("ok",)),
    "te-trailers-ok": (c_te_trailers, ("ok", 1)),
}


@pytest.mark.parametrize("which", LISTENERS)
@pytest.mark.parametrize("case", sorted(CONFORMANCE))
def test_conformance(srv, case, which):
    fn, expect = CONFORMANCE[case]
    with raw(srv, which) as r:
        r.handshake()
        assert r.ping_ok(), "no PING ACK before the test frames"
        fn(r, which)
        kind = expect[0]
        if kind == "goaway":
            g = r.wait_goaway(5 * SLOW)
            assert g is not None, "%s: no GOAWAY; frames %r" % (case, r.frames[-10:])
            assert g.error_code == expect[1], "%s: GOAWAY %s, want %s" % (
                case, err_name(g.error_code), err_name(expect[1]))
            assert r.wait_closed(5 * SLOW), "%s: connection open after GOAWAY" % case
        elif kind == "stream":
            f = r.wait_for(lambda f: (f.type == RST_STREAM and f.sid == 1) or f.type == GOAWAY,
                           5 * SLOW)
            assert f is not None, "%s: no RST_STREAM/GOAWAY; frames %r" % (case, r.frames[-10:])
            assert f.error_code == expect[1], "%s: %r, want %s" % (case, f, err_name(expect[1]))
            assert h2raw.stream_status(r.frames, 1) is None or \
                h2raw.stream_status(r.frames, 1) != 200 or case.startswith("data-after") or \
                case.startswith("window-") or case.startswith("priority-"), \
                "%s: malformed request answered 200" % case
            if f.type == RST_STREAM:
                assert r.ping_ok(), "%s: connection unusable after a stream error" % case
        elif kind == "lenient":
            r.ping_ok()
            errs = [f for f in r.frames if f.type == GOAWAY or
                    (f.type == RST_STREAM and f.sid == 1)]
            for f in errs:
                assert f.error_code == expect[1], "%s: %r" % (case, f)
            if not r.goaways():
                assert r.ping_ok(), case
        else:
            assert r.ping_ok(), "%s: PING not answered after ignorable frames" % case
            assert not r.goaways(), r.goaways()
            if len(expect) > 1:
                r.wait_end(1, 5 * SLOW)
                assert h2raw.stream_status(r.frames, 1) == 200
            # and a request still works on this connection
            sid = 11
            r.send(headers_frame(sid, req(which=which)))
            r.wait_end(sid, 5 * SLOW)
            assert h2raw.stream_status(r.frames, sid) == 200
    assert srv.healthz() == 200


@pytest.mark.parametrize("which", LISTENERS)
def test_invalid_preface(srv, which):
    with raw(srv, which, preface=False) as r:
        r.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings_frame())
        assert r.wait_closed(5 * SLOW), "invalid preface: connection still open"
        codes = [g.error_code for g in r.goaways()]
        assert codes == [PROTOCOL_ERROR], "want one GOAWAY(PROTOCOL_ERROR), got %r" % codes
    srv.assert_up()


def test_not_http_closes_silently(srv):
    """h2spec 3.5 on the cleartext listener: bytes that are neither the
    HTTP/2 preface nor an HTTP/1.x request line get no HTTP/1.1 answer."""
    with socket.create_connection(("127.0.0.1", srv.h2c_port), timeout=5 * SLOW) as s:
        s.sendall(b"INVALID CONNECTION PREFACE\r\n\r\n")
        got = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
    assert got == b"", got
    srv.assert_up()


@pytest.mark.parametrize("which", LISTENERS)
@pytest.mark.parametrize("part", ["header", "payload", "header-block"])
def test_incomplete_frame_times_out(sluice_factory, which, part):
    """A frame (or a header block) dripped and never finished is cut after
    timeouts.h2_frame_s: GOAWAY(ENHANCE_YOUR_CALM), then close."""
    s = sluice_factory(timeouts={"h2_frame_s": 1, "h2_idle_s": 60, "stream_idle_s": 60})
    hb = hpack_block(req(which=which))
    with raw(s, which) as r:
        r.handshake()
        t0 = time.monotonic()
        if part == "header":
            r.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, hb)[:5])
        elif part == "payload":
            r.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, hb)[:-2])
        else:
            r.send(frame(HEADERS, END_STREAM, 1, hb[:2]))
            r.send(frame(CONTINUATION, 0, 1, hb[2:4]))
        g = r.wait_goaway(5 * SLOW)
        assert g is not None, "no GOAWAY for a stalled frame; frames %r" % r.frames[-5:]
        assert g.error_code == ENHANCE_YOUR_CALM, err_name(g.error_code)
        assert r.wait_closed(5 * SLOW)
        assert time.monotonic() - t0 < 4 * SLOW
    assert "incomplete" in s.stderr()
    s.assert_up()


def test_dripped_frame_cut_despite_progress(sluice_factory):
    """One byte a second of a HEADERS frame: the deadline counts from the
    frame's first byte, not the last one."""
    s = sluice_factory(timeouts={"h2_frame_s": 1.5})
    f = frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack_block(req(which="h2c")))
    with raw(s, "h2c") as r:
        r.handshake()
        t0, i = time.monotonic(), 0
        while i < len(f) - 1 and not r.goaways() and time.monotonic() - t0 < 6 * SLOW:
            if not r.send(f[i:i + 1]):
                break
            i += 1
            r.drain(0.4)
        g = r.goaways()[0] if r.goaways() else r.wait_goaway(5 * SLOW)
        assert g is not None and g.error_code == ENHANCE_YOUR_CALM, r.frames[-5:]
        assert i < len(f) - 1, "the whole frame went through"
    s.assert_up()


def test_garbage_after_h2_alpn(srv):
    with raw(srv, "tls", preface=False) as r:
        r.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert r.wait_closed(5 * SLOW)
    srv.assert_up()


def test_no_settings_ack_is_not_fatal_quickly(srv):
    """A client that never ACKs our SETTINGS is still served (timeouts
    for SETTINGS ACK, if any, are long)."""
    with raw(srv, "h2c", auto_ack=False) as r:
        r.handshake()
        r.send(headers_frame(1, req()))
        r.wait_for(lambda f: f.sid == 1 and f.flags & END_STREAM, 5 * SLOW)
        assert h2raw.stream_status(r.frames, 1) == 200


def test_memory_returned_after_zero_window_attack(sluice_factory):
    """20 connections x 100 streams each hold a 1 MiB response behind a
    zero window for a few seconds, then go away: RSS goes back to within
    10 MiB of where it started (glibc's free heap is trimmed)."""
    if SANITIZE:
        pytest.skip("RSS means nothing under ASan's quarantine")
    s = sluice_factory(workers=1, limits={"h2_max_concurrent_streams": 100})
    time.sleep(0.5)
    start = s.rss_kb()
    conns = []
    for _ in range(20):
        r = raw(s, "h2c", settings=[(4, 0)])  # SETTINGS_INITIAL_WINDOW_SIZE = 0
        r.handshake()
        r.send(b"".join(headers_frame(2 * k + 1, req("/_h/bytes/1048576"))
                        for k in range(100)))
        conns.append(r)
    time.sleep(2)
    peak = s.rss_kb()
    assert peak - start > 10 * 1024, "the attack did not cost memory (%d -> %d KiB)" % (
        start, peak)
    time.sleep(3)
    for r in conns:
        r.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and s.rss_kb() - start > 10 * 1024:
        time.sleep(0.5)
    end = s.rss_kb()
    assert end - start <= 10 * 1024, "RSS %d -> %d (peak %d) KiB after the attack left" % (
        start, end, peak)
    assert s.healthz() == 200


@pytest.mark.skipif(SANITIZE, reason="RSS means nothing under ASan, whose build has no page blocks")
def test_idle_connections_give_back_frame_buffers(sluice_factory):
    """A connection without streams gives back, after half a second idle
    (session.c, trim_idle), its nghttp2 frame buffer's pages and its stream
    table's page, which holds only zeros again: 200 connections that each
    just got a response are measured at once and again 1.5 s later. Each
    wrote one page of both, so the second reading must be lower by more
    than 200 pages (the frame buffers alone give back 200; without any
    trim it does not drop at all). The requests go out on all connections
    before any answer is read, so none idles before the first reading."""
    s = sluice_factory(timeouts={"h2_idle_s": 60})
    n = 200
    conns = [H2Client(s.tls_port, tls=True, wait_settings=True) for _ in range(n)]
    try:
        sids = [c.request("/healthz") for c in conns]
        for c, sid in zip(conns, sids):
            assert c.wait_stream(sid).status == 200
        busy = s.rss_kb()
        time.sleep(1.5)
        idle = s.rss_kb()
        assert busy - idle >= n * 5, "RSS %d KiB -> %d KiB idle" % (busy, idle)
        # the connections still work, the buffer comes back on use
        for c in conns[:20]:
            assert c.get("/healthz").status == 200
    finally:
        for c in conns:
            c.sock.close()
