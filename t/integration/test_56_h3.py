"""HTTP/3 over QUIC (docs/h3.md), driven by ngtcp2's example client
(gtlsclient, Debian's ngtcp2-client) and by raw UDP for what no client
shows: Version Negotiation and stateless resets.

Debian 12's h2load and curl are built without HTTP/3, so gtlsclient is the
independent client here: its own HTTP/3 request code over nghttp3's client
side, its own packet loss simulation (-t/-r) and file downloads."""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import SLOW, curl, module_server, require

CLIENT = "gtlsclient"


def quic_listen(tls_port, h2c_port, certs, **extra):
    lst = {"addr": "127.0.0.1:%d" % tls_port, "quic": True,
           "tls": {"cert": certs.cert, "key": certs.key}}
    lst.update(extra)
    return [lst, {"addr": "127.0.0.1:%d" % h2c_port, "h2c": True}]


class H3Result:
    def __init__(self, proc, out):
        self.rc = proc.returncode
        self.out = out
        # "http: stream 0x4 [name: value]" lines, in order, per stream
        self.fields = {}
        self.trailers = {}
        section = {}
        for m in re.finditer(r"http: stream (0x[0-9a-f]+) (.*)", out):
            sid, rest = int(m.group(1), 16), m.group(2)
            if rest.startswith("trailers started"):
                section[sid] = self.trailers
                continue
            if rest.startswith("response headers started"):
                section[sid] = self.fields
                continue
            f = re.match(r"\[([^:\]]*|:[a-z]+): (.*)\]$", rest)
            if f and sid in section:
                section[sid].setdefault(sid, []).append((f.group(1), f.group(2)))
        self.closed = {int(m.group(1)): int(m.group(2))
                       for m in re.finditer(r"HTTP stream (\d+) closed with error code (\d+)", out)}

    def statuses(self):
        return [v for fl in self.fields.values() for n, v in fl if n == ":status"]

    def field(self, name, sid=0):
        for n, v in self.fields.get(sid, []):
            if n == name:
                return v
        return None


def h3(server, path, *args, n=None, download=None, timeout=30, quic_dump=False, port=None):
    require(CLIENT)
    argv = [CLIENT, "--exit-on-all-streams-close", "--timeout=%ds" % int(timeout * SLOW)]
    if not quic_dump:
        argv.append("--no-quic-dump")
    if n:
        argv += ["-n", str(n)]
    if download:
        argv.append("--download=" + download)
    port = port or server.tls_port
    argv += list(args) + ["localhost", str(port), "https://localhost:%d%s" % (port, path)]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout * SLOW + 10)
    return H3Result(p, p.stdout.decode("latin-1"))


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    def config(tmp):
        os.makedirs(os.path.join(tmp, "www"))
        with open(os.path.join(tmp, "www", "small.txt"), "w") as f:
            f.write("hello over h3\n")
        return {"routes": [
            {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
            {"path": "/metrics", "match": "exact", "handler": "metrics"},
            {"path": "/_h/", "handler": "harness"},
            {"path": "/", "handler": "static", "root": os.path.join(tmp, "www")},
        ]}
    with module_server(tmp_path_factory, certs, "h3", config=config, listen=quic_listen) as s:
        yield s


def test_get_a_static_file(srv):
    r = h3(srv, "/small.txt", download=tempfile.mkdtemp())
    assert r.rc == 0, r.out[-2000:]
    assert r.statuses() == ["200"]
    assert r.field("content-length") == "14"
    assert r.field("etag") and r.field("last-modified") and r.field("date")
    # HTTP/3 answers do not advertise themselves
    assert r.field("alt-svc") is None
    def mine(lines):
        return [a for a in lines if a.get("path") == "/small.txt" and a.get("protocol") == "HTTP/3"]
    line = mine(srv.wait_access(mine))[0]
    assert line["status"] == 200 and line["alpn"] == "h3" and line["tls"] == "TLSv1.3"


def test_head_has_no_body(srv):
    d = tempfile.mkdtemp()
    r = h3(srv, "/small.txt", "-m", "HEAD", download=d)
    assert r.statuses() == ["200"]
    assert r.field("content-length") == "14"
    assert not os.path.exists(os.path.join(d, "small.txt")) or \
        os.path.getsize(os.path.join(d, "small.txt")) == 0


def test_bytes_are_the_same_as_over_h2(srv):
    for size in (1, 65536, 1048576):
        d = tempfile.mkdtemp()
        r = h3(srv, "/_h/bytes/%d" % size, download=d)
        assert r.statuses() == ["200"], r.out[-2000:]
        got = open(os.path.join(d, str(size)), "rb").read()
        ref = curl(srv, "h2-tls", "/_h/bytes/%d" % size)
        assert ref.status == 200 and len(ref.body) == size
        assert got == ref.body


def test_20000_requests_on_one_connection(srv):
    """100 streams at a time (quic.max_streams), all answered."""
    r = h3(srv, "/small.txt", n=20000, timeout=120)
    assert r.rc == 0, r.out[-2000:]
    st = r.statuses()
    assert len(st) == 20000 and set(st) == {"200"}


def test_upload_is_echoed_whole(srv):
    """3 MB: more than the echo holds at once, so the client waits for
    credit (the stream window the handler's buffer is sized by)."""
    d = tempfile.mkdtemp()
    body = os.urandom(3000000)
    up = os.path.join(d, "up.bin")
    with open(up, "wb") as f:
        f.write(body)
    r = h3(srv, "/_h/echo", "-m", "POST", "-d", up, download=d)
    assert r.statuses() == ["200"], r.out[-2000:]
    assert open(os.path.join(d, "echo"), "rb").read() == body


def test_trailers(srv):
    r = h3(srv, "/_h/trailers?x-a=1&x-b=two")
    assert r.statuses() == ["200"]
    assert dict(r.trailers[0]) == {"x-a": "1", "x-b": "two"}


def test_reset_is_an_http3_code(srv):
    """The harness's CANCEL is H3_REQUEST_CANCELLED (0x10c) on a stream."""
    r = h3(srv, "/_h/reset?after=0&code=CANCEL")
    assert r.closed.get(0) == 0x10c, r.out[-2000:]


def test_early_hints_then_the_answer(srv):
    r = h3(srv, "/_h/early-hints")
    assert r.statuses() == ["103", "200"], r.out[-2000:]
    assert ("link", "</style.css>; rel=preload; as=style") in r.fields[0][:3]


def test_status_codes_and_404(srv):
    assert h3(srv, "/_h/status/418").statuses() == ["418"]
    assert h3(srv, "/nope.txt").statuses() == ["404"]


def test_alt_svc_on_the_tcp_side(srv):
    for mode in ("h2-tls", "h1-tls"):
        r = curl(srv, mode, "/small.txt")
        assert r.status == 200
        assert r.header("alt-svc") == 'h3=":%d"; ma=86400' % srv.tls_port
    # the cleartext listener has no QUIC: no offer
    assert curl(srv, "h2c", "/small.txt").header("alt-svc") is None


def test_metrics_count_h3(srv):
    h3(srv, "/small.txt")
    r = curl(srv, "h2c", "/metrics")
    assert re.search(r'sluice_requests_total\{protocol="h3",[^}]*\} [1-9]', r.body.decode()), \
        r.body.decode()[:3000]


def test_lossy_path_still_delivers_10_mib(srv):
    """5% of packets lost each way (the client drops them): loss recovery
    resends, the body arrives intact."""
    d = tempfile.mkdtemp()
    r = h3(srv, "/_h/bytes/10485760", "-t", "0.05", "-r", "0.05", download=d, timeout=120)
    assert r.statuses() == ["200"], r.out[-3000:]
    got = open(os.path.join(d, "10485760"), "rb").read()
    ref = curl(srv, "h2-tls", "/_h/bytes/10485760")
    assert hashlib.sha256(got).digest() == hashlib.sha256(ref.body).digest()


class LossyRelay:
    """A UDP relay between one client and the server that drops a share
    of the datagrams each way: a lossy path (tc netem is not available on
    every kernel this runs on; this needs nothing from it)."""

    def __init__(self, server_port, loss, seed=7, cut_after=None):
        import random
        import threading
        self.rng = random.Random(seed)
        self.loss = loss
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect(("127.0.0.1", server_port))
        self.client = None
        self.cut_after = cut_after  # server datagrams let through, then none
        self.dropped = self.passed = self.down = 0
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        import select
        while not self.stop:
            r, _, _ = select.select([self.front, self.back], [], [], 0.1)
            for sock in r:
                data, addr = sock.recvfrom(65536)
                if sock is self.front:
                    self.client = addr
                else:
                    self.down += 1
                cut = self.cut_after is not None and self.down > self.cut_after
                if cut or self.rng.random() < self.loss:
                    self.dropped += 1
                    continue
                self.passed += 1
                if sock is self.front:
                    self.back.send(data)
                elif self.client:
                    self.front.sendto(data, self.client)

    def close(self):
        self.stop = True
        self.t.join(5)
        self.front.close()
        self.back.close()


def test_lossy_relay_delivers_10_mib(srv):
    """The same through a relay that drops 5% of datagrams each way."""
    relay = LossyRelay(srv.tls_port, 0.05)
    try:
        d = tempfile.mkdtemp()
        r = h3(srv, "/_h/bytes/10485760", download=d, timeout=120, port=relay.port)
        assert r.statuses() == ["200"], r.out[-3000:]
        got = open(os.path.join(d, "10485760"), "rb").read()
    finally:
        relay.close()
    assert relay.dropped > 100, (relay.dropped, relay.passed)
    ref = curl(srv, "h2-tls", "/_h/bytes/10485760")
    assert hashlib.sha256(got).digest() == hashlib.sha256(ref.body).digest()


def test_a_client_that_stops_reading_holds_bounded_memory(srv):
    """20 streams of 50 MB each to a client whose incoming packets stop
    after the first 300: the server may hold quic.response_buffer (256 KiB)
    per stream plus what is in flight, never the bodies."""
    relay = LossyRelay(srv.tls_port, 0.0, cut_after=300)
    before = srv.rss_kb()
    p = subprocess.Popen([CLIENT, "--no-quic-dump", "--no-http-dump", "-n", "20",
                          "--timeout=30s", "localhost", str(relay.port),
                          "https://localhost:%d/_h/bytes/52428800" % relay.port],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10 * SLOW
        while relay.down <= 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert relay.down > 300, "the download never started"
        peak = 0
        for _ in range(20):  # two seconds of a stalled reader
            time.sleep(0.1)
            peak = max(peak, srv.rss_kb() - before)
    finally:
        p.kill()
        p.wait()
        relay.close()
    assert peak < 48 * 1024, "RSS grew %d KiB" % peak


def udp_exchange(port, payload, timeout=2.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout * SLOW)
    try:
        s.sendto(payload, ("127.0.0.1", port))
        return s.recv(65536)
    except socket.timeout:
        return None
    finally:
        s.close()


def test_unknown_version_gets_version_negotiation(srv):
    dcid, scid = os.urandom(8), os.urandom(8)
    pkt = bytes([0xc0]) + bytes.fromhex("1a2a3a4a") + bytes([8]) + dcid + bytes([8]) + scid
    pkt += b"\0" * (1200 - len(pkt))
    got = udp_exchange(srv.tls_port, pkt)
    assert got is not None
    assert got[0] & 0x80 and got[1:5] == b"\0\0\0\0"  # long header, version 0
    # its DCID is our SCID and its SCID our DCID (RFC 9000 17.2.1)
    assert got[5] == 8 and got[6:14] == scid and got[14] == 8 and got[15:23] == dcid
    versions = [got[i:i + 4] for i in range(23, len(got), 4)]
    assert bytes.fromhex("00000001") in versions
    assert quic_packets(srv, "version_negotiation") >= 1


def test_unknown_connection_gets_a_stateless_reset(srv):
    pkt = bytes([0x40]) + os.urandom(18) + os.urandom(60)
    got = udp_exchange(srv.tls_port, pkt)
    assert got is not None
    assert len(got) < len(pkt) and len(got) >= 21
    assert got[0] & 0xc0 == 0x40  # looks like a short-header packet
    assert quic_packets(srv, "stateless_reset") >= 1


def test_short_junk_gets_nothing(srv):
    """Too small to be answered with a smaller reset: silence."""
    assert udp_exchange(srv.tls_port, bytes([0x40]) + os.urandom(20), timeout=0.5) is None


# ---- per-config behaviour ------------------------------------------------

def test_retry_always(sluice_factory):
    s = sluice_factory(listen=quic_listen, quic={"retry": "always"}, routes=[
        {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
        {"path": "/metrics", "match": "exact", "handler": "metrics"}])
    r = h3(s, "/healthz", quic_dump=True)
    assert r.statuses() == ["200"], r.out[-3000:]
    assert "type=Retry" in r.out
    assert quic_packets(s, "retry") == 1


def test_retry_never_and_auto_go_straight_in(sluice_factory):
    s = sluice_factory(listen=quic_listen, quic={"retry": "never"})
    r = h3(s, "/healthz", quic_dump=True)
    assert r.statuses() == ["200"] and "type=Retry" not in r.out
    s = sluice_factory(listen=quic_listen)  # auto: only under load
    r = h3(s, "/healthz", quic_dump=True)
    assert r.statuses() == ["200"] and "type=Retry" not in r.out


def test_auto_retry_under_load(sluice_factory):
    """quic.retry_handshakes 1: once one handshake is open on a worker
    (a client that sent an Initial and went quiet), the next gets a Retry."""
    s = sluice_factory(listen=quic_listen, workers=1, quic={"retry_handshakes": 1})
    # a half-open handshake from a raw Initial is not possible without
    # QUIC crypto; one from gtlsclient is: -r 1.0 drops all it receives
    p = subprocess.Popen([CLIENT, "--no-quic-dump", "--no-http-dump", "-r", "1.0",
                          "--timeout=5s", "localhost", str(s.tls_port),
                          "https://localhost:%d/healthz" % s.tls_port],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5 * SLOW)
        r = h3(s, "/healthz", quic_dump=True)
        assert r.statuses() == ["200"], r.out[-3000:]
        assert "type=Retry" in r.out
    finally:
        p.kill()
        p.wait()


def test_alt_svc_max_age_and_off(sluice_factory):
    s = sluice_factory(listen=lambda t, h, c: quic_listen(t, h, c, alt_svc_max_age=60))
    assert curl(s, "h2-tls", "/healthz").header("alt-svc") == 'h3=":%d"; ma=60' % s.tls_port
    s = sluice_factory(listen=lambda t, h, c: quic_listen(t, h, c, alt_svc_max_age=0))
    assert curl(s, "h2-tls", "/healthz").header("alt-svc") is None
    assert h3(s, "/healthz").statuses() == ["200"]


def test_no_quic_no_udp(sluice_factory):
    s = sluice_factory()
    assert curl(s, "h2-tls", "/healthz").header("alt-svc") is None
    r = h3(s, "/healthz", timeout=2)
    assert r.statuses() == []


def test_config_refuses_quic_without_tls_or_with_client_certs(tmp_path, certs):
    from conftest import SLUICE_BIN
    bad = [
        {"listen": [{"addr": "127.0.0.1:0", "quic": True}]},
        {"listen": [{"addr": "127.0.0.1:0", "quic": True,
                     "tls": {"cert": certs.cert, "key": certs.key, "client_ca": certs.cert,
                             "verify_client": "require"}}]},
        {"listen": [{"addr": "127.0.0.1:0", "tls": {"cert": certs.cert, "key": certs.key}}],
         "quic": {"retry": "sometimes"}},
    ]
    for cfg in bad:
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(cfg))
        r = subprocess.run([SLUICE_BIN, "-t", "-c", str(p)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20)
        assert r.returncode != 0
        assert b"quic" in r.stderr, r.stderr


def test_drain_lets_a_stream_finish(sluice_factory):
    """SIGTERM: GOAWAY, and the stream in flight finishes in drain time."""
    s = sluice_factory(listen=quic_listen)
    d = tempfile.mkdtemp()
    argv = [CLIENT, "--no-quic-dump", "--exit-on-all-streams-close", "--download=" + d,
            "localhost", str(s.tls_port),
            "https://localhost:%d/_h/stream/8?size=1000&interval_ms=150" % s.tls_port]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(0.5 * SLOW)  # a few of the 8 chunks are out
    s.signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=20 * SLOW)
    assert p.returncode == 0
    files = os.listdir(d)
    assert len(files) == 1, out.decode("latin-1")[-2000:]
    assert os.path.getsize(os.path.join(d, files[0])) == 8000, out.decode("latin-1")[-2000:]
    assert s.wait_exit(15) == 0


# ---- every handler over HTTP/3: proxy and jobs ------------------------------

def ticks(n, size=16):
    """What the builtin ticker produces for n events of size bytes."""
    out = b""
    for i in range(1, n + 1):
        ev = bytearray(b"." * size)
        head = b"tick %d" % i
        ev[:min(len(head), size)] = head[:size]
        ev[size - 1:size] = b"\n"
        out += bytes(ev)
    return out


@pytest.fixture(scope="module")
def backend(tmp_path_factory, certs):
    """A second sluice with the harness: the proxy's upstream."""
    with module_server(tmp_path_factory, certs, "h3-backend") as s:
        yield s


@pytest.fixture(scope="module")
def front(tmp_path_factory, certs, backend):
    cfg = {
        "upstreams": {"up": {"servers": ["127.0.0.1:%d" % backend.h2c_port],
                             "protocol": "h2c"}},
        "executors": {"tick": {"type": "builtin", "kind": "ticker", "max_events": 10000}},
        "routes": [
            {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
            {"path": "/up/", "handler": "proxy", "upstream": "up", "strip_prefix": "/up",
             "replace_prefix": "/"},
            {"path": "/v1/tick", "handler": "job", "executor": "tick"},
            {"path": "/v1/atick", "handler": "job", "executor": "tick", "reply": "async"},
            {"path": "/jobs", "handler": "jobs_api"},
            {"path": "/_h/", "handler": "harness"},
        ],
    }
    with module_server(tmp_path_factory, certs, "h3-front", listen=quic_listen, **cfg) as s:
        yield s


def test_proxy_get_and_upload(front, backend):
    d = tempfile.mkdtemp()
    r = h3(front, "/up/_h/bytes/200000?seed=3", download=d)
    assert r.statuses() == ["200"], r.out[-2000:]
    ref = curl(backend, "h2c", "/_h/bytes/200000?seed=3")
    assert open(os.path.join(d, os.listdir(d)[0]), "rb").read() == ref.body
    body = os.urandom(150000)
    up = os.path.join(d, "up.bin")
    with open(up, "wb") as f:
        f.write(body)
    d2 = tempfile.mkdtemp()
    r = h3(front, "/up/_h/echo", "-m", "PUT", "-d", up, download=d2)
    assert r.statuses() == ["200"], r.out[-2000:]
    assert open(os.path.join(d2, "echo"), "rb").read() == body


def test_job_streams_its_output(front):
    d = tempfile.mkdtemp()
    r = h3(front, "/v1/tick?n=20&size=32&interval_ms=5", download=d)
    assert r.statuses() == ["200"], r.out[-2000:]
    jid = r.field("job-id")
    assert jid and r.field("location") == "/jobs/" + jid
    assert open(os.path.join(d, os.listdir(d)[0]), "rb").read() == ticks(20, 32)


def test_job_respond_async_then_events_and_result(front):
    r = h3(front, "/v1/atick?n=5&interval_ms=20")
    assert r.statuses() == ["202"], r.out[-2000:]
    loc = r.field("location")
    assert loc and loc.startswith("/jobs/")
    d = tempfile.mkdtemp()
    r = h3(front, loc + "/events", download=d)  # SSE until "end"
    assert r.statuses() == ["200"] and r.field("content-type") == "text/event-stream"
    sse = open(os.path.join(d, "events"), "rb").read().decode()
    assert "event: end" in sse and sse.count("event: data") == 5
    d = tempfile.mkdtemp()
    r = h3(front, loc + "/result", download=d)
    assert r.statuses() == ["200"] and r.field("job-state") == "succeeded"
    assert open(os.path.join(d, "result"), "rb").read() == ticks(5)


def test_harness_sse(front):
    d = tempfile.mkdtemp()
    r = h3(front, "/_h/sse?n=3&interval_ms=10", download=d)
    assert r.statuses() == ["200"] and r.field("content-type") == "text/event-stream"
    body = open(os.path.join(d, os.listdir(d)[0]), "rb").read().decode()
    assert body.count("data: ") == 3, body


# ---- limits, idle, migration, reload ---------------------------------------

def test_limits_header_list_streams_idle(sluice_factory):
    s = sluice_factory(listen=quic_listen, workers=1,
                       routes=[{"path": "/metrics", "match": "exact", "handler": "metrics"},
                               {"path": "/healthz", "match": "exact", "handler": "health",
                                "check": "live"},
                               {"path": "/", "handler": "harness"}],
                       quic={"header_list_bytes": 1024, "max_streams": 2, "idle_timeout_s": 1})
    # a head over quic.header_list_bytes: 431 and an info line
    r = h3(s, "/anything?q=" + "a" * 1500)
    assert r.statuses() == ["431"], r.out[-2000:]
    assert "client sent a header list over 1024 bytes" in s.stderr()
    # two streams at a time: 50 requests still all answered, in turn
    r = h3(s, "/uuid", n=50)
    assert r.statuses() == ["200"] * 50

    def open_h3():
        body = curl(s, "h2c", "/metrics").body.decode()
        m = re.search(r'sluice_connections_open\{[^}]*protocol="h3"\} (\d+)', body)
        return int(m.group(1)) if m else 0
    # a client silent for 3 s: closed by quic.idle_timeout_s (1 s)
    p = subprocess.Popen([CLIENT, "--no-quic-dump", "--no-http-dump", "--delay-stream=3s",
                          "--timeout=10s", "localhost", str(s.tls_port),
                          "https://localhost:%d/uuid" % s.tls_port],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5 * SLOW
        while open_h3() != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert open_h3() == 1
        deadline = time.monotonic() + 5 * SLOW
        while open_h3() != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert open_h3() == 0
    finally:
        p.kill()
        p.wait()


def quic_packets(s, kind):
    body = curl(s, "h2c", "/metrics").body.decode()
    m = re.search(r'sluice_quic_packets_total\{kind="%s"\} (\d+)' % kind, body)
    return int(m.group(1)) if m else -1


@pytest.mark.parametrize("workers", [1, 2])
def test_client_address_change(sluice_factory, workers):
    """The client moves to a new port in the middle of an upload (active
    migration: it probes the new path with PATH_CHALLENGE). The echo comes
    back whole. With two workers the kernel hands about half of the new
    ports to the other worker, which passes the packets to the
    connection's own (forward.c): over 20 moves some are handed over (the
    metric says so), and none is lost. (gtlsclient's --nat-rebinding
    simulation is not used: now and then it sends nothing from its new
    port until it times out, which no server can answer.)"""
    s = sluice_factory(listen=quic_listen, workers=workers, routes=[
        {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
        {"path": "/metrics", "match": "exact", "handler": "metrics"},
        {"path": "/_h/", "handler": "harness"}])
    d = tempfile.mkdtemp()
    body = os.urandom(3000000)
    up = os.path.join(d, "up.bin")
    with open(up, "wb") as f:
        f.write(body)
    argv = [CLIENT, "--no-quic-dump", "--no-http-dump", "--exit-on-all-streams-close",
            "--timeout=%ds" % int(10 * SLOW), "--change-local-addr=30ms", "-m", "POST", "-d", up,
            "--download=" + d, "localhost", str(s.tls_port),
            "https://localhost:%d/_h/echo" % s.tls_port]
    for _ in range(20 if workers > 1 else 1):
        echo = os.path.join(d, "echo")
        if os.path.exists(echo):
            os.unlink(echo)
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30 * SLOW)
        out = p.stdout.decode("latin-1")
        assert "Local address is now" in out and "PATH_CHALLENGE" in out, out[-2000:]
        assert open(echo, "rb").read() == body
    if workers > 1:
        assert quic_packets(s, "forwarded") > 0


def test_reload_adds_and_removes_quic(sluice_factory):
    s = sluice_factory()
    assert h3(s, "/healthz", timeout=2).statuses() == []

    def reload_with(quic):
        cfg = dict(s.config)
        cfg["listen"] = [dict(s.config["listen"][0], quic=quic)] + s.config["listen"][1:]
        tmp = s.cfg_path + ".new"
        with open(tmp, "w") as f:
            json.dump(cfg, f)
        os.replace(tmp, s.cfg_path)
        n = s.stderr().count("reloaded")
        s.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5 * SLOW
        while s.stderr().count("reloaded") == n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2 * SLOW)  # the workers take the new snapshot from their mailbox
    reload_with(True)
    assert h3(s, "/healthz").statuses() == ["200"]
    assert curl(s, "h2-tls", "/healthz").header("alt-svc") == 'h3=":%d"; ma=86400' % s.tls_port
    reload_with(False)
    assert curl(s, "h2-tls", "/healthz").header("alt-svc") is None
    r = h3(s, "/healthz", timeout=2)
    assert r.statuses() == [], r.out[-2000:]


def test_idle_stream_is_reset(sluice_factory):
    """No bytes either way on a stream for timeouts.stream_idle_s (1 s):
    the stream is reset (H3_REQUEST_CANCELLED, 0x10c) and the connection
    goes on, as on HTTP/2."""
    s = sluice_factory(listen=quic_listen, timeouts={"stream_idle_s": 1})
    t0 = time.monotonic()
    r = h3(s, "/_h/delay/5000")
    took = time.monotonic() - t0
    assert r.closed.get(0) == 0x10c, r.out[-2000:]
    assert took < 4 * SLOW, took
    assert "stream idle for 1 s, resetting" in s.stderr()


def test_conns_per_ip_counts_quic(sluice_factory):
    """limits.conns_per_ip counts QUIC connections with the TCP ones: with
    one allowed and an idle HTTP/3 connection open, the next gets
    CONNECTION_CLOSE(CONNECTION_REFUSED) at once."""
    s = sluice_factory(listen=quic_listen, limits={"conns_per_ip": 1}, workers=1,
                       quic={"idle_timeout_s": 2}, routes=[
        {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
        {"path": "/metrics", "match": "exact", "handler": "metrics"},
        {"path": "/_h/", "handler": "harness"}])
    p = subprocess.Popen([CLIENT, "--no-quic-dump", "--no-http-dump", "--exit-on-all-streams-close",
                          "--timeout=10s", "localhost", str(s.tls_port),
                          "https://localhost:%d/_h/delay/3000" % s.tls_port],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5 * SLOW)  # its handshake is done, its request waits
        r = h3(s, "/healthz", quic_dump=True, timeout=5)
        assert r.statuses() == [], s.stderr()[-2000:]
        assert "CONNECTION_REFUSED" in r.out, r.out[-2000:]
    finally:
        p.kill()
        p.wait()
    time.sleep(0.5 * SLOW)  # the first connection's slot is free again (idle or closed)
    deadline = time.monotonic() + 40 * SLOW
    while quic_packets(s, "refused") < 0 and time.monotonic() < deadline:
        time.sleep(0.2)  # the killed client's connection ends at its idle timeout (2 s)
    assert quic_packets(s, "refused") >= 1


def h3reset(s, count, *extra):
    tools = os.environ.get("SLUICE_TOOLS") or os.path.join(
        os.path.dirname(os.environ.get("SLUICE_BIN", "")), "t", "tools")
    exe = os.path.join(tools, "h3reset")
    if not os.access(exe, os.X_OK):
        pytest.fail("%s missing: make builds it with check-integration" % exe)
    p = subprocess.run([exe, str(s.tls_port), str(count)] + list(extra), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30 * SLOW)
    return p.stdout.decode().strip()


def test_rapid_reset_closes_the_connection(sluice_factory):
    """HTTP/3's rapid reset: streams opened and reset at once spend
    quic.reset_burst; past it the connection is closed with
    H3_EXCESSIVE_LOAD (0x107), a WARN line and the abuse counter. Fewer
    than the burst go through."""
    s = sluice_factory(listen=quic_listen, quic={"reset_burst": 200, "reset_rate": 10}, routes=[
        {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
        {"path": "/metrics", "match": "exact", "handler": "metrics"}])
    assert h3reset(s, 100) == "DONE 100"
    assert h3reset(s, 3000) == "CLOSED app 0x107"
    assert "client reset streams faster than quic.reset_rate" in s.stderr()
    body = curl(s, "h2c", "/metrics").body.decode()
    assert re.search(r'sluice_abuse_limits_total\{limit="rapid_reset"\} [1-9]', body), body[-3000:]
    assert h3(s, "/healthz").statuses() == ["200"]  # others are served as before


def test_resets_without_qpack_credit_close_cleanly(sluice_factory):
    """A client that gives the server's QPACK decoder stream no credit and
    cancels stream after stream: the connection ends with an HTTP/3 error
    code and a log line, the server goes on."""
    s = sluice_factory(listen=quic_listen)
    out = h3reset(s, 3000, "nocredit")
    assert out.startswith("CLOSED app 0x"), out
    assert h3(s, "/healthz").statuses() == ["200"]
