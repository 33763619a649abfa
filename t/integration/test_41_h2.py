"""HTTP/2 (RFC 9113): the three ways in (h2c prior knowledge, h2c upgrade,
TLS), nghttp and h2load, flow control with a tiny window, trailers,
RST_STREAM, full-duplex echo, SETTINGS from config, idle timeouts."""

import json
import os
import re
import time

import pytest

import h2raw
from conftest import SLOW, curl, require, run
from h2raw import H2Client, harness_bytes

H2_MODES = ["h2c", "h2c-upgrade", "h2-tls"]


@pytest.mark.parametrize("mode", H2_MODES)
def test_curl_h2_ways_in(sluice, mode):
    r = curl(sluice, mode, "/_h/anything?x=1")
    assert r.rc == 0, r
    assert r.status == 200
    assert r.http_version == "2", "%s negotiated HTTP/%s" % (mode, r.http_version)
    j = r.json()
    assert j["protocol"] == "HTTP/2"
    assert j["query"] == {"x": "1"}
    # on the upgrade the first request is stream 1 (RFC 9113 3.2)
    assert j["stream_id"] == 1


def test_h2c_upgrade_response_is_101(sluice):
    require("curl")
    r = run(["curl", "-sv", "--http2", "--max-time", "20", "-o", "/dev/null",
             sluice.url("/healthz")], timeout=30)
    err = r.stderr.decode("latin-1")
    assert r.returncode == 0, err
    assert "< HTTP/1.1 101" in err, err
    assert "< HTTP/2 200" in err, err


def test_h2c_upgrade_python(sluice):
    """Upgrade: h2c by hand with HTTP2-Settings; the answer to the upgraded
    request arrives on stream 1 over HTTP/2."""
    import h2.config
    import h2.connection
    import h2.events
    import socket
    sock = socket.create_connection(("127.0.0.1", sluice.h2c_port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    # h2 returns the HTTP2-Settings value already base64url-encoded
    settings = conn.initiate_upgrade_connection()
    sock.sendall(b"GET /_h/anything?up=1 HTTP/1.1\r\nHost: localhost\r\n"
                 b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                 b"HTTP2-Settings: " + settings + b"\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        assert d, "closed before 101"
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.sendall(conn.data_to_send())
    events = conn.receive_data(rest) if rest else []
    body, ended, status = b"", False, None
    deadline = time.monotonic() + 10
    while not ended and time.monotonic() < deadline:
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                assert ev.stream_id == 1
                status = dict(ev.headers)[b":status"]
            elif isinstance(ev, h2.events.DataReceived):
                body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                ended = True
        sock.sendall(conn.data_to_send())
        if ended:
            break
        d = sock.recv(65536)
        assert d, "closed before the upgraded response ended"
        events = conn.receive_data(d)
    sock.close()
    assert ended and status == b"200"
    assert json.loads(body)["query"] == {"up": "1"}


@pytest.mark.parametrize("args", [[], ["-u"]], ids=["prior", "upgrade"])
def test_nghttp_h2c(sluice, args):
    require("nghttp")
    r = run(["nghttp", "-nv", "-t", "10"] + args + [sluice.url("/_h/anything")], timeout=30)
    out = r.stdout.decode("latin-1")
    assert r.returncode == 0, out[-2000:] + r.stderr.decode()
    assert "recv SETTINGS frame" in out
    assert re.search(r":status: 200", out), out[-2000:]


def test_nghttp_tls(sluice):
    require("nghttp")
    r = run(["nghttp", "-nv", "-t", "10", sluice.url("/_h/bytes/100000", tls=True)], timeout=30)
    out = r.stdout.decode("latin-1")
    assert r.returncode == 0, out[-2000:] + r.stderr.decode()
    assert "recv SETTINGS frame" in out
    assert ":status: 200" in out
    assert "recv GOAWAY" not in out, out[-2000:]


def test_nghttp_multiplexed(sluice):
    require("nghttp")
    urls = [sluice.url("/_h/bytes/%d?seed=%d" % (20000 + i, i), tls=True) for i in range(8)]
    r = run(["nghttp", "-n", "-s", "-t", "20"] + urls, timeout=40)
    out = r.stdout.decode("latin-1") + r.stderr.decode("latin-1")
    assert r.returncode == 0, out[-2000:]


def h2load(args):
    require("h2load")
    r = run(["h2load"] + args, timeout=180)
    out = r.stdout.decode("latin-1")
    assert r.returncode == 0, out[-2000:] + r.stderr.decode()
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    assert m, out[-2000:]
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    assert req, out[-2000:]
    return [int(x) for x in m.groups()], [int(x) for x in req.groups()], out


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_h2load(sluice, tls):
    n = 20000
    codes, req, out = h2load(["-n", str(n), "-c", "4", "-m", "100",
                              sluice.url("/", tls=tls)])
    assert codes[0] == n, out[-1500:]
    assert req[3] == n and req[4] == 0 and req[5] == 0, out[-1500:]
    if tls:
        assert "Application protocol: h2" in out
    assert sluice.proc.poll() is None


def test_h2load_harness_bodies(sluice):
    codes, req, out = h2load(["-n", "2000", "-c", "2", "-m", "50",
                              sluice.url("/_h/bytes/20000", tls=True)])
    assert codes[0] == 2000, out[-1500:]


def test_tiny_window_1mib_intact(sluice):
    """INITIAL_WINDOW_SIZE 1024 and credit given back slowly, a frame at a
    time: the whole 1 MiB body still arrives, every DATA frame fits the
    window, and the bytes match the PRNG."""
    n, seed = 1048576, 12345
    with H2Client(sluice.h2c_port, settings={4: 1024}, auto_window=False,
                  wait_settings=True) as c:
        sid = c.request("/_h/bytes/%d?seed=%d" % (n, seed))
        st = c.streams[sid]
        got = 0
        frames = 0
        deadline = time.monotonic() + 60 * SLOW
        while not st.done:
            assert time.monotonic() < deadline, st
            c.read_some(0.5)
            new = len(st.data) - got
            if new:
                got = len(st.data)
                frames += 1
                if frames % 64 == 0:
                    time.sleep(0.002)  # a slow reader
                c.credit(sid, new)
            assert c.goaway is None, c.goaway
        assert st.status == 200
        assert st.reset is None
        assert max(st.data_frames) <= 1024, max(st.data_frames)
        assert len(st.data) == n
        assert bytes(st.data) == harness_bytes(n, seed)


def test_zero_window_then_open(sluice):
    """Window 0 at first: no DATA until a WINDOW_UPDATE reopens it."""
    with H2Client(sluice.h2c_port, settings={4: 0}, auto_window=False,
                  wait_settings=True) as c:
        sid = c.request("/_h/bytes/50000?seed=2")
        st = c.streams[sid]
        c.pump(lambda: st.status is not None)
        t_end = time.monotonic() + 0.5
        while time.monotonic() < t_end:
            c.read_some(0.1)
        assert len(st.data) == 0, "data sent into a zero window"
        c.credit(sid, 50000)
        c.auto_window = True
        c.wait_stream(sid)
        assert bytes(st.data) == harness_bytes(50000, 2)


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_trailers(sluice, tls):
    with H2Client(sluice.tls_port if tls else sluice.h2c_port, tls=tls) as c:
        st = c.get("/_h/trailers?x-a=1&x-b=two")
    assert st.status == 200
    assert bytes(st.data) == b"trailers follow\n"
    tr = dict(st.trailers)
    assert tr.get("x-a") == "1" and tr.get("x-b") == "two", st.trailers


@pytest.mark.parametrize("code", ["CANCEL", "ENHANCE_YOUR_CALM", "INTERNAL_ERROR",
                                  "NO_ERROR", "HTTP_1_1_REQUIRED"])
def test_reset_with_named_code(sluice, code):
    with H2Client(sluice.h2c_port) as c:
        st = c.get("/_h/reset?after=100&code=" + code)
        assert st.reset == h2raw.ERROR_CODES[code], st
        assert st.status == 200
        assert len(st.data) == 100
        assert not st.ended
        # the connection survives a stream reset
        st2 = c.get("/healthz")
        assert st2.status == 200


def test_reset_default_code(sluice):
    with H2Client(sluice.h2c_port) as c:
        st = c.get("/_h/reset?after=0")
        assert st.reset == h2raw.CANCEL, st


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_full_duplex_echo(sluice, tls):
    part1, part2 = os.urandom(1000), os.urandom(3000)
    with H2Client(sluice.tls_port if tls else sluice.h2c_port, tls=tls) as c:
        sid = c.request("/_h/echo", method="POST", body=part1, end_stream=False,
                        headers=[("content-type", "application/x-test")])
        st = c.streams[sid]
        # the echo of part 1 arrives while the request is still open
        c.pump(lambda: len(st.data) >= len(part1), timeout=10 * SLOW)
        assert st.status == 200
        assert st.header("content-type") == "application/x-test"
        assert bytes(st.data) == part1
        assert not st.ended
        c.send_body(sid, part2, end_stream=True)
        c.wait_stream(sid)
    assert st.ended
    assert bytes(st.data) == part1 + part2


def test_echo_large_flow_controlled(sluice):
    """4 MiB through echo: the server must stop reading when we stop
    reading (it never buffers the whole body) yet deliver it all."""
    body = os.urandom(4 << 20)
    with H2Client(sluice.h2c_port, timeout=60 * SLOW) as c:
        sid = c.request("/_h/echo", method="POST", body=body)
        st = c.wait_stream(sid, timeout=60 * SLOW)
    assert st.status == 200
    assert bytes(st.data) == body


def test_settings_from_config(sluice_factory):
    s = sluice_factory(limits={"h2_max_concurrent_streams": 77, "h2_initial_window": 200000,
                               "h2_max_frame_size": 32768, "h2_header_list_bytes": 30000,
                               "h2_conn_window": 4 << 20})
    for tls in (False, True):
        with h2raw.RawH2(s.tls_port if tls else s.h2c_port, tls=tls) as r:
            f = r.handshake()
            st = f.settings()
            assert st.get(h2raw.S_MAX_CONCURRENT_STREAMS) == 77, st
            assert st.get(h2raw.S_INITIAL_WINDOW_SIZE) == 200000, st
            assert st.get(h2raw.S_MAX_FRAME_SIZE) == 32768, st
            assert st.get(h2raw.S_MAX_HEADER_LIST_SIZE) == 30000, st
            # connection window raised to the configured size
            r.drain(0.5)
            wu = [x for x in r.frames if x.type == h2raw.WINDOW_UPDATE and x.sid == 0]
            inc = sum(int.from_bytes(x.payload, "big") & 0x7FFFFFFF for x in wu)
            assert inc == (4 << 20) - 65535, wu


def test_default_max_concurrent_streams_100(sluice):
    with h2raw.RawH2(sluice.h2c_port) as r:
        st = r.handshake().settings()
        assert st.get(h2raw.S_MAX_CONCURRENT_STREAMS) == 100, st


def test_large_frames_when_allowed(sluice):
    """We announce MAX_FRAME_SIZE 65536: the server may use it, and the
    body arrives intact."""
    with H2Client(sluice.h2c_port, settings={5: 65536}, wait_settings=True) as c:
        st = c.get("/_h/bytes/300000?seed=5&chunk=100000")
        assert bytes(st.data) == harness_bytes(300000, 5)
        assert max(st.data_frames) <= 65536


def test_many_streams_one_connection(sluice):
    with H2Client(sluice.h2c_port) as c:
        sids = [c.request("/_h/bytes/%d?seed=%d" % (1000 + i, i)) for i in range(50)]
        for sid in sids:
            c.wait_stream(sid)
        for i, sid in enumerate(sids):
            assert bytes(c.streams[sid].data) == harness_bytes(1000 + i, i)


def test_head_h2(sluice):
    with H2Client(sluice.h2c_port) as c:
        st = c.get("/_h/bytes/100", method="HEAD")
    assert st.status == 200
    assert st.header("content-length") == "100"
    assert len(st.data) == 0


def test_request_body_large(sluice):
    import hashlib
    body = os.urandom(3 << 20)
    with H2Client(sluice.tls_port, tls=True, timeout=60 * SLOW) as c:
        st = c.get("/_h/sink", method="POST", body=body, timeout=60 * SLOW)
    assert st.status == 200
    assert json.loads(bytes(st.data)) == {"bytes": len(body),
                                          "sha256": hashlib.sha256(body).hexdigest()}


def test_h2_idle_timeout_goaway(sluice_factory):
    s = sluice_factory(timeouts={"h2_idle_s": 1})
    with h2raw.RawH2(s.h2c_port) as r:
        r.handshake()
        t0 = time.monotonic()
        g = r.wait_goaway(6 * SLOW)
        assert g is not None, "no GOAWAY on an idle connection"
        assert g.error_code == h2raw.NO_ERROR
        assert time.monotonic() - t0 > 0.5
        assert r.wait_closed(5 * SLOW)


def test_moving_stream_outlives_idle_timeouts(sluice_factory):
    """A stream that keeps moving is never cut, even when it lasts much
    longer than every idle timeout."""
    s = sluice_factory(timeouts={"h2_idle_s": 1, "stream_idle_s": 1, "h1_keepalive_s": 1})
    with H2Client(s.h2c_port, timeout=15 * SLOW) as c:
        st = c.get("/_h/stream/10?size=10&interval_ms=350", timeout=15 * SLOW)
    assert st.ended and st.reset is None, st
    assert len(st.data) == 100


def test_stream_idle_timeout(sluice_factory):
    """A stream with no bytes either way past stream_idle_s is ended (the
    connection stays)."""
    s = sluice_factory(timeouts={"stream_idle_s": 1})
    with H2Client(s.h2c_port, timeout=10 * SLOW) as c:
        t0 = time.monotonic()
        sid = c.request("/_h/delay/5000")
        st = c.streams[sid]
        c.pump(lambda: st.done, timeout=8 * SLOW)
        took = time.monotonic() - t0
        assert took < 4 * SLOW, took
        assert st.reset is not None or (st.status or 0) >= 400, st
        assert c.get("/healthz").status == 200


def test_goaway_on_client_goaway(sluice):
    """A client GOAWAY ends the connection cleanly."""
    with h2raw.RawH2(sluice.h2c_port) as r:
        r.handshake()
        r.send(h2raw.goaway_frame(0, 0))
        assert r.wait_closed(5 * SLOW)
    sluice.assert_up()


def test_echo_backpressure(sluice):
    """A client that sends to echo but does not read the echo stops being
    given credit: the server holds at most about one stream window of the
    body (it never buffers without bound); once the client reads, every
    byte comes back in order."""
    body = os.urandom(8 << 20)
    with H2Client(sluice.h2c_port, auto_window=False, timeout=30 * SLOW) as c:
        sid = c.request("/_h/echo", method="POST", end_stream=False)
        st = c.streams[sid]
        sent = 0
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 1.0 and sent < len(body):
            n = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size,
                    len(body) - sent)
            if n > 0:
                c.conn.send_data(sid, body[sent:sent + n])
                c.flush()
                sent += n
                quiet_since = time.monotonic()
            else:
                c.read_some(0.1)
        window = c.remote_settings.get(4, 65535)
        print("echo took %d bytes unread (window %d)" % (sent, window))
        # request window + our 64 KiB receive window + one echo chunk/queue
        assert sent <= window + (1 << 20), \
            "server took %d bytes of a body nobody reads (window %d)" % (sent, window)
        assert sent < len(body)
        # now read: everything flows
        c.auto_window = True
        c.credit(sid, len(st.data))
        c.send_body(sid, body[sent:], end_stream=True)
        c.wait_stream(sid, timeout=60 * SLOW)
    assert bytes(st.data) == body


def test_h2c_upgrade_large_response_curl(sluice):
    """Regression: after an h2c upgrade sluice sent SETTINGS and ~64 KiB of
    DATA right behind the 101, which curl 7.88 refuses ("connection buffer
    size is too small ... following HTTP Upgrade"). Output now waits for
    the client's preface."""
    for _ in range(3):
        r = curl(sluice, "h2c-upgrade", "/_h/bytes/1048576")
        assert r.rc == 0, r
        assert r.http_version == "2"
        assert r.body == harness_bytes(1048576)


def test_early_response_to_upload_curl(sluice, tmp_path):
    """Regression: a response that completes before the request body was
    followed by RST_STREAM(NO_ERROR), and curl 7.88 failed the transfer
    (exit 92) in most runs. sluice now reads and drops the rest of the body."""
    body = tmp_path / "body"
    body.write_bytes(os.urandom(200000))
    for mode in ("h2-tls", "h2c"):
        for _ in range(10):
            r = curl(sluice, mode, "/healthz", "--data-binary", "@%s" % body)
            assert r.rc == 0, r
            assert r.status == 200, r


@pytest.mark.parametrize("mode", H2_MODES)
@pytest.mark.parametrize("path", ["/_h/bytes/5", "/_h/status/404", "/healthz"])
def test_date_on_h2_responses(sluice, mode, path):
    """RFC 9110 6.6.1: an origin with a clock MUST send Date in 2xx, 3xx
    and 4xx responses; over HTTP/2 as over HTTP/1.1, an IMF-fixdate of now."""
    import email.utils
    r = curl(sluice, mode, path)
    assert r.rc == 0, r.stderr
    assert r.http_version == "2"
    date = r.header("date")
    assert date and re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT",
                                 date), r.headers
    sent = email.utils.parsedate_to_datetime(date).timestamp()
    assert abs(sent - time.time()) < 5, date
    assert [n for n, _ in r.headers].count("date") == 1


@pytest.mark.parametrize("mode", ["h2c", "h2-tls"])
def test_handler_fields_any_case_not_doubled(sluice, mode):
    """A handler's Server and Date in any case: sent once, lower-cased, in
    place of sluice's own."""
    date = "Tue, 01 Dec 2026 10:00:00 GMT"
    r = curl(sluice, mode, "/_h/response-headers?Server=custom&DATE=" + date.replace(" ", "%20") +
             "&X-Mixed-Case=1")
    assert r.rc == 0 and r.status == 200, r.stderr
    names = [n for n, _ in r.headers]
    assert names.count("server") == 1 and r.header("server") == "custom", r.headers
    assert names.count("date") == 1 and r.header("date") == date, r.headers
    assert r.header("x-mixed-case") == "1"
