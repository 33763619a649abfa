"""Scripted protocol faults (issue 19, docs/harness.md "Faults"), each
observed from an independent client: raw HTTP/2 frames (h2raw), the
python3-h2 client, curl's exit codes and raw HTTP/1.1 sockets."""

import asyncio
import socket
import subprocess
import time

import pytest
import websockets

import h1raw
from conftest import SLOW, curl, module_server, require
from h2raw import (CANCEL, CONTINUATION, DATA, HEADERS, PADDED, PING, ping_frame, REFUSED_STREAM, RST_STREAM,
                   SETTINGS, ACK, END_STREAM, H2Client, RawH2, headers_frame, req_headers)

ROUTES = [{"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
          {"path": "/metrics", "match": "exact", "handler": "metrics"},
          {"path": "/_f/ws", "match": "exact", "handler": "ws", "app": "fault", "faults": True,
           "max_message_bytes": 65536, "send_queue_bytes": 1048576},
          {"path": "/_f/", "handler": "harness", "faults": True, "max_delay_ms": 5000},
          {"path": "/_s/", "handler": "harness", "faults": True, "fault_smuggling": True},
          {"path": "/_h/", "handler": "harness"}]


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    with module_server(tmp_path_factory, certs, "faults", routes=ROUTES) as s:
        yield s


def raw_h2(srv, path):
    c = RawH2(srv.h2c_port)
    c.handshake()
    c.send(headers_frame(1, req_headers(path=path)))
    return c


# --------------------------------------------------------------------------
def test_faults_are_off_by_default(srv):
    r = curl(srv, "h1", "/_h/fault/hold")
    assert r.status == 404 and b"faults are off" in r.body
    r = curl(srv, "h1", "/_f/fault/h1-cl-and-chunked")
    assert r.status == 404 and b"fault_smuggling" in r.body
    assert curl(srv, "h1", "/_f/fault/nonsense").status == 400


def test_goaway_graceful_before(srv):
    """GOAWAY with last_stream_id 1 while stream 3 is open: stream 3 is
    refused (safe to retry), stream 1's answer was complete, and a retry
    on a new connection (stream 1 there) is answered."""
    c = RawH2(srv.h2c_port)
    c.handshake()
    c.send(headers_frame(1, req_headers(path="/_h/get")))
    assert c.wait_end(1, goaway=False).sid == 1
    c.send(headers_frame(3, req_headers(path="/_f/fault/goaway?last_stream_id=1&when=before")))
    g = c.wait_goaway()
    assert g is not None and g.last_sid == 1 and g.error_code == 0
    # stream 3 is above last_stream_id: never answered (at most refused)
    end = c.wait_end(3, goaway=False, timeout=1.0)
    assert end is None or (end.type == RST_STREAM and end.error_code == REFUSED_STREAM), end
    assert not [f for f in c.stream_frames(3) if f.type in (HEADERS, DATA)]
    retry = raw_h2(srv, "/_f/fault/goaway?last_stream_id=1&when=before")
    end = retry.wait_end(1, goaway=False)
    assert end is not None and end.type in (DATA, HEADERS), retry.frames


def test_goaway_after_and_mid(srv):
    c = raw_h2(srv, "/_f/fault/goaway?when=after&code=NO_ERROR")
    end = c.wait_end(1, goaway=False)
    assert end.type in (DATA, HEADERS) and end.flags & END_STREAM
    g = c.wait_goaway() or next(iter(c.goaways()), None)
    assert g is not None and g.last_sid >= 1
    # mid-body and immediate: part of the body, GOAWAY with the code, closed
    c = raw_h2(srv, "/_f/fault/goaway?when=mid&code=ENHANCE_YOUR_CALM&bytes=5000")
    g = c.wait_goaway()
    assert g is not None and g.error_code == 0xb
    assert c.wait_closed()
    got = sum(len(f.payload) for f in c.stream_frames(1) if f.type == DATA)
    assert got <= 5000 and not any(f.flags & END_STREAM for f in c.stream_frames(1)
                                   if f.type == DATA)
    r = curl(srv, "h2c", "/_f/fault/goaway?when=mid&bytes=3000")
    assert r.rc in (16, 18, 56, 92), r  # curl: the stream was not closed cleanly
    assert curl(srv, "h1", "/_f/fault/goaway").status == 400  # HTTP/2 only


def test_settings_mid_connection(srv):
    c = raw_h2(srv, "/_f/fault/settings?max_concurrent_streams=7&initial_window_size=1000"
                    "&max_frame_size=20000")
    f = c.wait_for(lambda f: f.type == SETTINGS and not f.flags & ACK and
                   f.settings().get(3) == 7)
    assert f is not None and f.settings() == {3: 7, 4: 1000, 5: 20000}
    assert c.wait_end(1, goaway=False).type in (DATA, HEADERS)
    assert curl(srv, "h2c", "/_f/fault/settings?max_frame_size=1").status == 400


def test_reset_before_headers_and_hold(srv):
    c = raw_h2(srv, "/_f/fault/reset-before-headers?code=CANCEL")
    end = c.wait_end(1, goaway=False)
    assert end.type == RST_STREAM and end.error_code == CANCEL
    assert not [f for f in c.stream_frames(1) if f.type == HEADERS]
    # hold: the head and 100 bytes, no END_STREAM, then CANCEL after ms
    t0 = time.monotonic()
    c = raw_h2(srv, "/_f/fault/hold?after=100&ms=700")
    end = c.wait_end(1, goaway=False, timeout=10 * SLOW)
    assert end.type == RST_STREAM and end.error_code == CANCEL
    assert time.monotonic() - t0 >= 0.6
    assert sum(len(f.payload) for f in c.stream_frames(1) if f.type == DATA) == 100
    # over HTTP/1.1 the held chunked body ends in a close: curl says so
    r = curl(srv, "h1", "/_f/fault/hold?after=10&ms=300")
    assert r.rc == 18 and len(r.body) == 10, r


def test_window_stall_blocks_an_upload(srv):
    """After 1000 bytes no more request-body credit: a python3-h2 upload of
    4 MiB blocks once the 1 MiB stream window is used (its send window
    stays shut) instead of failing, until the fault's time is up and the
    answer comes."""
    c = H2Client(srv.h2c_port, timeout=1.0)
    sid = c.request("/_f/fault/window-stall?after=1000&ms=4500", method="POST",
                    body=None, end_stream=False)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        c.send_body(sid, b"x" * (4 << 20))  # gives up after 3 x its timeout
    assert time.monotonic() - t0 >= 2.5
    st = c.wait_stream(sid, timeout=10 * SLOW)
    assert st.status == 200 and b"credited_before_stall" in bytes(st.data), st


def test_info_burst_and_big_headers(srv):
    r = curl(srv, "h1", "/_f/fault/info-burst?n=20", "-v")
    assert r.rc == 0 and r.status == 200 and r.body == b"after the burst\n"
    assert r.stderr.count("HTTP/1.1 103") == 20
    r = curl(srv, "h2c", "/_f/fault/info-burst?n=50")
    assert r.rc == 0 and r.status == 200
    # 60 KB of fields: one HEADERS and CONTINUATION frames after it
    c = raw_h2(srv, "/_f/fault/big-headers?bytes=60000")
    assert c.wait_end(1, goaway=False) is not None
    kinds = [f.type for f in c.stream_frames(1) if f.type in (HEADERS, CONTINUATION)]
    assert kinds[0] == HEADERS and kinds.count(CONTINUATION) >= 3, kinds
    assert curl(srv, "h2c", "/_f/fault/big-headers?bytes=30000").status == 200


def test_padded_frames(srv):
    c = raw_h2(srv, "/_f/fault/padded?pad=40")
    end = c.wait_end(1, goaway=False)
    assert end is not None
    frames = [f for f in c.stream_frames(1) if f.type in (HEADERS, DATA)]
    data = [f for f in frames if f.type == DATA and f.payload]
    assert all(f.flags & PADDED for f in frames), frames
    body = b""
    for f in data:  # pad length byte, data, that many zeros
        pad = f.payload[0]
        assert f.payload[len(f.payload) - pad:] == b"\0" * pad and pad == 40
        body += f.payload[1:len(f.payload) - pad]
    assert len(body) == 2000
    # python3-h2 strips the padding and gets the same body
    h = H2Client(srv.h2c_port)
    st = h.get("/_f/fault/padded?pad=200")
    assert st.status == 200 and len(st.data) == 2000
    # other streams on the connection are not padded
    c.send(headers_frame(3, req_headers(path="/_h/bytes/100")))
    c.wait_end(3, goaway=False)
    assert not any(f.flags & PADDED for f in c.stream_frames(3) if f.type in (HEADERS, DATA))


def test_ping_ack_dropped_and_delayed(srv):
    c = raw_h2(srv, "/_f/fault/ping-ack?mode=drop&n=2")
    assert c.wait_end(1, goaway=False) is not None
    for i in range(2):
        c.send(ping_frame(b"drop%04d" % i))
    assert c.wait_for(lambda f: f.type == PING and f.flags & ACK, timeout=0.7) is None
    assert c.ping_ok()  # the third is answered again
    c = raw_h2(srv, "/_f/fault/ping-ack?mode=delay&ms=600&n=1")
    assert c.wait_end(1, goaway=False) is not None
    t0 = time.monotonic()
    c.send(ping_frame(b"late!!!!"))
    f = c.wait_for(lambda f: f.type == PING and f.flags & ACK, timeout=5 * SLOW)
    assert f is not None and f.payload == b"late!!!!" and time.monotonic() - t0 >= 0.5
    assert curl(srv, "h1", "/_f/fault/ping-ack").status == 400


def test_trailers_only(srv):
    c = raw_h2(srv, "/_f/fault/trailers-only?grpc-status=0&grpc-message=fine")
    end = c.wait_end(1, goaway=False)
    frames = [f for f in c.stream_frames(1) if f.type in (HEADERS, DATA)]
    assert [f.type for f in frames if f.type == HEADERS] == [HEADERS, HEADERS], frames
    assert not any(f.type == DATA and f.payload for f in frames)
    assert end.type == HEADERS and end.flags & END_STREAM
    h = H2Client(srv.h2c_port)
    st = h.get("/_f/fault/trailers-only?grpc-status=0")
    assert st.status == 200 and not st.data and ("grpc-status", "0") in st.trailers
    r = curl(srv, "h1", "/_f/fault/trailers-only?x-t=1", "--raw")
    assert r.status == 200 and r.body == b"0\r\nx-t: 1\r\n\r\n", r.body


def raw_h1(srv, path, timeout=10.0):
    """Every byte until the server closes."""
    s = socket.create_connection(("127.0.0.1", srv.h2c_port), timeout=timeout * SLOW)
    s.sendall(h1raw.request("GET", path, host="127.0.0.1:%d" % srv.h2c_port))
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    return out


@pytest.mark.parametrize("fault,rc,exact", [
    ("h1-close-mid-headers", None, b"HTTP/1.1 200 OK\r\nContent-Type: text/pl"),
    ("h1-close-mid-body", 18, None),
    ("h1-close-mid-chunked", 18, None),
    ("h1-bad-chunk-size", 56, None),
    ("h1-trailing-garbage", 0, None),
])
def test_h1_faults(srv, fault, rc, exact):
    data = raw_h1(srv, "/_f/fault/" + fault)
    if exact is not None:
        assert data == exact  # then the connection closed
    else:
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
    if rc is not None:
        r = curl(srv, "h1", "/_f/fault/" + fault)
        assert r.rc == rc, r
    assert curl(srv, "h2c", "/_f/fault/" + fault).status == 400  # HTTP/1.1 only


def test_h1_smuggling_and_slow_headers(srv):
    data = raw_h1(srv, "/_s/fault/h1-cl-and-chunked")
    assert b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n" in data
    r = curl(srv, "h1", "/_s/fault/h1-cl-and-chunked")
    assert r.rc != 0 or r.body == b"hello\n", r  # curl prefers chunked (RFC 9112 6.3)
    t0 = time.monotonic()
    data = raw_h1(srv, "/_f/fault/h1-slow-headers?interval_ms=10")
    assert data.endswith(b"\r\n\r\nhello\n") and time.monotonic() - t0 >= 0.5
    r = curl(srv, "h1", "/_f/fault/h1-slow-headers?interval_ms=5")
    assert r.rc == 0 and r.body == b"hello\n"


def test_faults_are_counted(srv):
    require("curl")
    curl(srv, "h2c", "/_f/fault/reset-before-headers")
    out = subprocess.run(["curl", "-s", srv.url("/metrics")], capture_output=True,
                         timeout=30).stdout.decode()
    m = [line for line in out.splitlines()
         if line.startswith('sluice_harness_faults_total{fault="reset-before-headers"}')]
    assert m and int(m[0].split()[-1]) >= 1, out[-2000:]
    assert "harness fault: reset-before-headers" in srv.stderr()


# --------------------------------------------------------------------------
# WebSocket faults (python3-websockets)
# --------------------------------------------------------------------------
def ws_run(srv, query, body, **kw):
    async def go():
        url = "ws://127.0.0.1:%d/_f/ws?%s" % (srv.h2c_port, query)
        async with websockets.connect(url, close_timeout=1, **kw) as ws:
            return await body(ws)
    return asyncio.run(asyncio.wait_for(go(), 20 * SLOW))


def closed_with(srv, query, **kw):
    async def body(ws):
        with pytest.raises(websockets.ConnectionClosed) as e:
            while True:
                await ws.recv()
        return e.value
    return ws_run(srv, query, body, **kw)


def test_ws_close_code_and_reason(srv):
    e = closed_with(srv, "do=close&code=4001&reason=going%20away%20now")
    assert e.rcvd.code == 4001 and e.rcvd.reason == "going away now"


def test_ws_fragments_and_ping_storm(srv):
    async def frag(ws):
        return await ws.recv()
    assert ws_run(srv, "do=fragments&sizes=1,10,100,1000", frag) == "a" * 1111
    assert ws_run(srv, "do=fragments&sizes=3,4&binary=1", frag) == b"a" * 7

    async def storm(ws):
        await ws.send("still here")  # the 200 pings are answered by the client
        return await ws.recv()
    assert ws_run(srv, "do=ping-storm&n=200", storm) == "still here"

    async def after(ws):  # the fault after two echoes
        await ws.send("one")
        await ws.send("two")
        return [await ws.recv(), await ws.recv(), await ws.recv()]
    assert ws_run(srv, "do=fragments&sizes=2,2&after=2", after) == ["one", "two", "aaaa"]


def test_ws_oversized_abrupt_invalid_utf8(srv):
    e = closed_with(srv, "do=oversized&bytes=200000", max_size=100000)
    assert e.sent is not None and e.sent.code == 1009  # the client refused it
    e = closed_with(srv, "do=abrupt")
    assert e.rcvd is None  # no Close frame: the connection just ended (1006)
    e = closed_with(srv, "do=invalid-utf8")
    assert e.sent is not None and e.sent.code == 1007
    assert "ws fault: invalid-utf8" in srv.stderr()
