"""Harness endpoints (docs/harness.md) over HTTP/1.1, h2c (both ways in) and
h2 over TLS, with curl, raw sockets and python3-h2."""

import hashlib
import os
import re
import time

import pytest

import h1raw
import h2raw
from conftest import CURL_MODES, SLOW, curl, module_server
from h2raw import H2Client, harness_bytes

MODES = ["h1", "h1-tls", "h2c", "h2c-upgrade", "h2-tls"]
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def is_h2(mode):
    return mode.startswith("h2")


def is_tls(mode):
    return mode.endswith("tls")


# ---------------------------------------------------------------------------
# generator reference (pure: checks this file's PRNG against the documented
# vectors, so a wrong expectation cannot pass by accident)
# ---------------------------------------------------------------------------
def test_generator_vectors():
    assert harness_bytes(8) == bytes.fromhex("afcd1d7b39a820e2")
    assert hashlib.sha256(harness_bytes(1048576)).hexdigest() == \
        "bc9d1d01517351f3e2c02d32495b3bfbcba5ec54e5f1a44b06f51755d0086a01"
    assert hashlib.sha256(harness_bytes(1000, 42)).hexdigest() == \
        "9478da224d93883893008c657d547a0a4f40ed3244d0f1cc527e2ee281d03f44"


# ---------------------------------------------------------------------------
# anything
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_anything_get(sluice, mode):
    r = curl(sluice, mode, "/_h/anything/x?a=1&b=x%20y&c=2&c=3", "-H", "X-Test: foo",
             "-H", "X-Many: a", "-H", "X-Many: b")
    assert r.rc == 0, r
    assert r.status == 200
    assert r.header("content-type").startswith("application/json")
    j = r.json()
    assert j["method"] == "GET"
    assert j["path"] == "/_h/anything/x"
    assert j["query"] == {"a": "1", "b": "x y", "c": ["2", "3"]}
    assert j["headers"]["x-test"] == "foo"
    assert j["headers"]["x-many"] == ["a", "b"]  # repeated fields stay a list, in order
    assert not any(k.startswith(":") for k in j["headers"])
    assert j["protocol"] == ("HTTP/2" if is_h2(mode) else "HTTP/1.1")
    assert isinstance(j["stream_id"], int) and j["stream_id"] >= 1
    if is_h2(mode):
        assert j["stream_id"] % 2 == 1
    assert j["peer"].startswith("127.0.0.1:")
    assert j["body_length"] == 0
    assert j["body_sha256"] == EMPTY_SHA
    if is_tls(mode):
        assert j["tls"]["version"] == "TLSv1.3"  # curl and OpenSSL 3 both offer 1.3
        assert j["tls"]["alpn"] == ("h2" if is_h2(mode) else "http/1.1")
        assert j["tls"]["sni"] == "localhost"
        assert j["scheme"] == "https"
    else:
        assert j["tls"] is None
        assert j["scheme"] == "http"


@pytest.mark.parametrize("mode", MODES)
def test_anything_post_body(sluice, mode):
    body = os.urandom(300000)
    r = curl(sluice, mode, "/_h/anything", "-H", "Content-Type: application/x-test",
             upload=body)
    assert r.rc == 0, r
    j = r.json()
    assert j["method"] == "POST"
    assert j["body_length"] == len(body)
    assert j["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert j["headers"]["content-type"] == "application/x-test"


def test_anything_h1_exchange_numbers(sluice):
    with h1raw.H1Conn(sluice.h2c_port) as c:
        ids = []
        for _ in range(3):
            c.send(h1raw.request("GET", "/_h/anything"))
            ids.append(c.read_response().json()["stream_id"])
    assert ids == sorted(ids) and len(set(ids)) == 3, ids


# ---------------------------------------------------------------------------
# echo, sink
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_echo_1mib(sluice, mode):
    body = os.urandom(1 << 20)
    r = curl(sluice, mode, "/_h/echo", "-H", "Content-Type: application/x-echo", upload=body)
    assert r.rc == 0, r
    assert r.status == 200
    assert hashlib.sha256(r.body).hexdigest() == hashlib.sha256(body).hexdigest()
    assert r.header("content-type") == "application/x-echo"
    # curl sent a content-length, so the echo has it too
    assert r.header("content-length") == str(len(body))


@pytest.mark.parametrize("mode", MODES)
def test_sink_1mib(sluice, mode):
    body = os.urandom(1 << 20)
    r = curl(sluice, mode, "/_h/sink", upload=body)
    assert r.rc == 0, r
    assert r.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_echo_default_content_type(sluice):
    with h1raw.H1Conn(sluice.h2c_port) as c:
        c.send(h1raw.request("POST", "/_h/echo", body=b"abc"))
        r = c.read_response()
    assert r.body == b"abc"
    assert r.header("content-type") == "application/octet-stream"


# ---------------------------------------------------------------------------
# bytes
# ---------------------------------------------------------------------------
SIZES = [0, 1, 16383, 16384, 16385, 1048576]


@pytest.mark.parametrize("mode", ["h1", "h2c", "h2-tls"])
@pytest.mark.parametrize("n", SIZES)
def test_bytes(sluice, mode, n):
    r = curl(sluice, mode, "/_h/bytes/%d" % n)
    assert r.rc == 0, r
    assert r.status == 200
    assert r.header("content-length") == str(n)
    assert r.header("content-type") == "application/octet-stream"
    assert len(r.body) == n
    assert r.body == harness_bytes(n)


@pytest.mark.parametrize("mode", ["h1", "h2c", "h2-tls"])
def test_bytes_seed_and_chunk(sluice, mode):
    for seed, chunk in [(42, 1), (7, 1000), (2 ** 64 - 1, 1 << 20)]:
        n = 5000 if chunk == 1 else 100001
        r = curl(sluice, mode, "/_h/bytes/%d?seed=%d&chunk=%d" % (n, seed, chunk))
        assert r.rc == 0, r
        assert r.body == harness_bytes(n, seed), (seed, chunk)


def test_bytes_h2_python_tls(sluice):
    with H2Client(sluice.tls_port, tls=True) as c:
        st = c.get("/_h/bytes/1048576?seed=3")
    assert st.header("content-length") == "1048576"
    assert bytes(st.data) == harness_bytes(1048576, 3)


# ---------------------------------------------------------------------------
# stream
# ---------------------------------------------------------------------------
def test_stream_chunks_h1(sluice):
    with h1raw.H1Conn(sluice.h2c_port) as c:
        c.send(h1raw.request("GET", "/_h/stream/6?size=10&interval_ms=30&seed=4"))
        r = c.read_response()
    assert r.status == 200
    assert r.chunked and r.header("content-length") is None
    assert r.chunks == [10] * 6
    assert r.body == harness_bytes(60, 4)


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_stream_chunks_h2(sluice, tls):
    with H2Client(sluice.tls_port if tls else sluice.h2c_port, tls=tls) as c:
        st = c.get("/_h/stream/6?size=10&interval_ms=30")
    assert st.status == 200
    assert st.header("content-length") is None
    assert st.data_frames == [10] * 6
    assert bytes(st.data) == harness_bytes(60)


@pytest.mark.parametrize("mode", MODES)
def test_stream_total(sluice, mode):
    r = curl(sluice, mode, "/_h/stream/100")
    assert r.rc == 0, r
    assert r.body == harness_bytes(6400)


def test_stream_interval_paces(sluice):
    t0 = time.monotonic()
    with H2Client(sluice.h2c_port) as c:
        sid = c.request("/_h/stream/5?size=1&interval_ms=200")
        st = c.streams[sid]
        c.pump(lambda: len(st.data) >= 1)
        first = time.monotonic() - t0
        c.wait_stream(sid)
    took = time.monotonic() - t0
    assert first < 0.5 * SLOW, "first piece should go at once (%.2fs)" % first
    assert took >= 0.75, took


# ---------------------------------------------------------------------------
# delay, status
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["h1", "h2c", "h2-tls"])
def test_delay(sluice, mode):
    t0 = time.monotonic()
    r = curl(sluice, mode, "/_h/delay/300")
    took = time.monotonic() - t0
    assert r.rc == 0, r
    assert r.json() == {"delay_ms": 300}
    assert took >= 0.3


def test_delay_concurrent_on_one_connection(sluice):
    """Delays do not block the worker: 10 x 500 ms on one h2 connection
    finish in about 500 ms."""
    t0 = time.monotonic()
    with H2Client(sluice.h2c_port) as c:
        sids = [c.request("/_h/delay/500") for _ in range(10)]
        for s in sids:
            assert c.wait_stream(s).status == 200
    took = time.monotonic() - t0
    assert took < 2.0 * SLOW, took


@pytest.mark.parametrize("mode", ["h1", "h2c", "h2-tls"])
@pytest.mark.parametrize("code", [200, 201, 204, 304, 404, 418, 503, 599])
def test_status(sluice, mode, code):
    r = curl(sluice, mode, "/_h/status/%d" % code)
    assert r.rc == 0, r
    assert r.status == code
    if code in (204, 304):
        assert r.body == b""
        assert r.header("content-length") is None  # RFC 9110 8.6: none on 204, none sent on 304
    else:
        j = r.json()
        assert j["status"] == code


# ---------------------------------------------------------------------------
# trailers, reset, early hints
# ---------------------------------------------------------------------------
def test_trailers_h1(sluice):
    with h1raw.H1Conn(sluice.h2c_port) as c:
        c.send(h1raw.request("GET", "/_h/trailers?x-a=1&X-B=two", [("TE", "trailers")]))
        r = c.read_response()
    assert r.status == 200
    assert r.chunked
    assert r.body == b"trailers follow\n"
    assert r.trailers == [("x-a", "1"), ("x-b", "two")]
    announced = (r.header("trailer") or "").lower().replace(" ", "").split(",")
    assert set(announced) == {"x-a", "x-b"}


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_trailers_h2(sluice, tls):
    with H2Client(sluice.tls_port if tls else sluice.h2c_port, tls=tls) as c:
        st = c.get("/_h/trailers?x-a=1&x-b=two")
    assert st.trailers == [("x-a", "1"), ("x-b", "two")]
    assert bytes(st.data) == b"trailers follow\n"


@pytest.mark.parametrize("q", ["content-length=5", "bad%20name=1", "x-a=%0d%0a",
                               "transfer-encoding=chunked"])
def test_trailers_refused(sluice, q):
    r = curl(sluice, "h2c", "/_h/trailers?" + q)
    assert r.status == 400, r


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_reset_h2(sluice, tls):
    with H2Client(sluice.tls_port if tls else sluice.h2c_port, tls=tls) as c:
        st = c.get("/_h/reset?after=100&code=PROTOCOL_ERROR")
        assert st.reset == h2raw.PROTOCOL_ERROR, st
        assert bytes(st.data) == harness_bytes(100)
        st = c.get("/_h/reset?after=20000&code=refused_stream")
        assert st.reset == h2raw.REFUSED_STREAM, st
        assert bytes(st.data) == harness_bytes(20000)


def test_reset_curl_h2_fails(sluice):
    r = curl(sluice, "h2c", "/_h/reset?after=10&code=INTERNAL_ERROR")
    assert r.rc != 0, r


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_early_hints_h2(sluice, tls):
    with H2Client(sluice.tls_port if tls else sluice.h2c_port, tls=tls) as c:
        st = c.get("/_h/early-hints")
    assert len(st.informational) == 1, st.informational
    status, hdrs = st.informational[0]
    assert status == 103
    assert ("link", "</style.css>; rel=preload; as=style") in hdrs
    assert st.status == 200
    assert bytes(st.data) == b"early hints sent\n"


def test_early_hints_h1(sluice):
    with h1raw.H1Conn(sluice.h2c_port) as c:
        c.send(h1raw.request("GET", "/_h/early-hints"))
        r = c.read_response()
    assert [i.status for i in r.informational] == [103]
    assert r.informational[0].header("link") == "</style.css>; rel=preload; as=style"
    assert r.status == 200
    assert r.body == b"early hints sent\n"


def test_early_hints_curl_h1(sluice):
    r = curl(sluice, "h1", "/_h/early-hints", "-v")
    assert r.rc == 0, r
    assert "< HTTP/1.1 103" in r.stderr
    assert r.status == 200


# ---------------------------------------------------------------------------
# sse
# ---------------------------------------------------------------------------
def sse_ids(body):
    return [int(x) for x in re.findall(rb"^id: (\d+)$", body, re.M)]


@pytest.mark.parametrize("mode", ["h1", "h2c", "h2-tls"])
def test_sse(sluice, mode):
    r = curl(sluice, mode, "/_h/sse?n=5&interval_ms=10")
    assert r.rc == 0, r
    assert r.header("content-type").startswith("text/event-stream")
    assert r.header("cache-control") == "no-cache"
    expect = b"".join(b"id: %d\nevent: tick\ndata: {\"n\":%d}\n\n" % (k, k)
                      for k in range(1, 6))
    assert r.body == expect
    r = curl(sluice, mode, "/_h/sse?n=5", "-H", "Last-Event-ID: 2")
    assert sse_ids(r.body) == [3, 4, 5]


def test_sse_default_count(sluice):
    r = curl(sluice, "h2c", "/_h/sse")
    assert sse_ids(r.body) == list(range(1, 11))


# ---------------------------------------------------------------------------
# errors and bounds
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bounded(tmp_path_factory, certs):
    routes = [
        {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
        {"path": "/t/", "handler": "harness", "max_bytes": 1000, "max_chunks": 10,
         "max_chunk_bytes": 100, "max_delay_ms": 50, "max_interval_ms": 20,
         "max_sse_events": 5, "max_trailers": 2, "max_query_params": 4},
    ]
    with module_server(tmp_path_factory, certs, "bounded", routes=routes) as s:
        yield s


OK_UNDER_BOUNDS = ["bytes/1000", "bytes/10?chunk=100", "stream/10?size=100", "delay/50",
                   "stream/2?interval_ms=20", "sse?n=5", "trailers?a=1&b=2",
                   "anything?a=1&b=2&c=3&d=4", "reset?after=1000"]
OVER_BOUNDS = ["bytes/1001", "bytes/10?chunk=101", "bytes/10?chunk=0", "stream/11",
               "stream/10?size=101", "stream/2?interval_ms=21", "delay/51", "sse?n=6",
               "sse?interval_ms=21", "trailers?a=1&b=2&c=3", "anything?a=1&b=2&c=3&d=4&e=5",
               "reset?after=1001", "reset?code=BOGUS", "bytes/abc", "bytes/-1", "bytes/1e3",
               "bytes/0x10", "bytes/ 1", "bytes/99999999999999999999999999", "delay/x",
               "status/100", "status/103", "status/600", "status/abc", "status/99",
               "anything?a=%zz", "bytes/10?seed=18446744073709551616"]


@pytest.mark.parametrize("path", OK_UNDER_BOUNDS)
def test_bounds_ok(bounded, path):
    r = curl(bounded, "h2c", "/t/" + path)
    if path.startswith("reset"):
        # N bytes, then RST_STREAM(CANCEL): curl reports exactly that
        assert r.rc == 92 and "CANCEL" in r.stderr, r
    else:
        assert r.rc == 0 and r.status == 200, r


@pytest.mark.parametrize("mode", ["h1", "h2c"])
@pytest.mark.parametrize("path", OVER_BOUNDS)
def test_bounds_400(bounded, mode, path):
    r = curl(bounded, mode, "/t/" + path.replace(" ", "%20"))
    assert r.status == 400, r
    j = r.json()
    assert j["status"] == 400 and isinstance(j["error"], str) and j["error"]
    assert r.header("content-type").startswith("application/json")


def test_bad_request_logged_info(bounded):
    curl(bounded, "h2c", "/t/bytes/1001")
    deadline = time.monotonic() + 3 * SLOW
    while "client sent" not in bounded.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = [x for x in bounded.stderr().splitlines() if "client sent" in x]
    assert line, bounded.stderr()[-1000:]
    assert line[0].split()[1] == "info", line[0]  # "<time> info w0 ...": blamed on the client


@pytest.mark.parametrize("path", ["nope", "bytes", "status", "delay", "echo/x", ""])
def test_unknown_endpoint_404(sluice, path):
    r = curl(sluice, "h2c", "/_h/" + path)
    assert r.status == 404, r
    assert r.json()["status"] == 404


def test_default_route_and_health(sluice):
    r = curl(sluice, "h2-tls", "/")
    assert r.status == 200 and r.body == b"sluice test root\n"
    assert r.header("content-type") == "text/plain; charset=utf-8"
    for mode in ["h1", "h2c", "h2-tls"]:
        r = curl(sluice, mode, "/healthz")
        assert r.status == 200
        assert r.json() == {"status": "live"}
        assert r.header("cache-control") == "no-store"
        r = curl(sluice, mode, "/readyz")
        assert r.status == 200
        assert r.json() == {"status": "ready"}


def test_every_way_in(sluice, proto):
    """The conftest `proto` fixture: h1, h2c, h2c upgrade, h2 over TLS;
    each negotiates the protocol it should."""
    r = curl(sluice, proto, "/_h/anything?way=" + proto)
    assert r.rc == 0, r
    assert r.http_version == CURL_MODES[proto][2], (proto, r.http_version)
    assert r.json()["query"] == {"way": proto}
