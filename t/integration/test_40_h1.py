"""HTTP/1.1 (RFC 9112): keep-alive, pipelining, chunked bodies, Expect:
100-continue, HEAD, strict parsing against request smuggling, limits and
the header-read timeout. Raw sockets where curl would fix our mistakes."""

import hashlib
import os
import time

import pytest

import h1raw
from conftest import SLOW, curl, module_server, require, run
from h1raw import H1Conn, chunked, request
from h2raw import harness_bytes


def conn(server, **kw):
    return H1Conn(server.h2c_port, **kw)


# ---------------------------------------------------------------------------
# connection handling
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("tls", [False, True])
def test_keepalive_curl_reuses(sluice, tls):
    require("curl")
    args = ["curl", "-sv", "--http1.1", "--max-time", "20", "-o", "/dev/null", "-o", "/dev/null"]
    if tls:
        args += ["-k"] + sluice.resolve()
    args += [sluice.url("/_h/anything?a=1", tls=tls), sluice.url("/_h/bytes/10", tls=tls)]
    r = run(args, timeout=30)
    err = r.stderr.decode("latin-1")
    assert r.returncode == 0, err
    assert "Re-using" in err or "Reusing" in err, err
    assert err.count("< HTTP/1.1 200") == 2, err


def test_keepalive_many_requests_one_connection(sluice):
    with conn(sluice) as c:
        for i in range(20):
            c.send(request("GET", "/_h/anything?i=%d" % i))
            r = c.read_response()
            assert r.status == 200
            assert r.json()["query"]["i"] == str(i)
            assert (r.header("connection") or "").lower() != "close"


def test_pipelining_in_order(sluice):
    with conn(sluice) as c:
        # the slow one first: answers must still come back in request order
        c.send(request("GET", "/_h/delay/200") + request("GET", "/_h/anything?i=2") +
               request("GET", "/_h/bytes/5000?seed=3") + request("GET", "/_h/status/404"))
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
        r4 = c.read_response()
    assert r1.status == 200 and r1.json()["delay_ms"] == 200
    assert r2.status == 200 and r2.json()["query"]["i"] == "2"
    assert r3.status == 200 and r3.body == harness_bytes(5000, 3)
    assert r4.status == 404


def test_pipelining_with_bodies(sluice):
    b1, b2 = os.urandom(3000), os.urandom(70000)
    with conn(sluice) as c:
        c.send(request("POST", "/_h/sink", body=b1) +
               request("POST", "/_h/sink", [("Transfer-Encoding", "chunked")], chunked(b2, 4096)) +
               request("GET", "/_h/anything?last=1"))
        r1, r2, r3 = c.read_response(), c.read_response(), c.read_response()
    assert r1.json() == {"bytes": 3000, "sha256": hashlib.sha256(b1).hexdigest()}
    assert r2.json() == {"bytes": 70000, "sha256": hashlib.sha256(b2).hexdigest()}
    assert r3.json()["query"] == {"last": "1"}


def test_connection_close_honoured(sluice):
    with conn(sluice) as c:
        c.send(request("GET", "/healthz", [("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200
        assert c.wait_closed(5 * SLOW)


def test_http10_closes(sluice):
    with conn(sluice) as c:
        c.send(b"GET /_h/anything HTTP/1.0\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.version in ("HTTP/1.0", "HTTP/1.1")
        assert r.json()["protocol"] in ("HTTP/1.0", "HTTP/1.1")
        assert c.wait_closed(5 * SLOW)


def test_http10_keepalive(sluice):
    with conn(sluice) as c:
        for _ in range(2):
            c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert r.status == 200
            assert r.header("content-length") is not None


def test_keepalive_timeout(sluice_factory):
    s = sluice_factory(timeouts={"h1_keepalive_s": 1})
    with conn(s) as c:
        c.send(request("GET", "/healthz"))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.wait_closed(6 * SLOW), "idle keep-alive connection not closed"
        assert time.monotonic() - t0 > 0.5


# ---------------------------------------------------------------------------
# bodies
# ---------------------------------------------------------------------------
def test_chunked_request_raw(sluice):
    body = os.urandom(100000)
    with conn(sluice) as c:
        c.send(request("POST", "/_h/sink", [("Transfer-Encoding", "chunked")],
                       chunked(body, 7000, trailers=[("x-t", "1")], ext=True)))
        r = c.read_response()
    assert r.status == 200
    assert r.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_chunked_request_curl(sluice):
    body = os.urandom(300000)
    r = curl(sluice, "h1", "/_h/echo", "-H", "Transfer-Encoding: chunked", upload=body)
    assert r.rc == 0, r
    assert r.status == 200
    assert r.body == body


def test_chunked_response(sluice):
    with conn(sluice) as c:
        c.send(request("GET", "/_h/stream/5?size=100&interval_ms=20"))
        r = c.read_response()
    assert r.status == 200
    assert r.chunked, r.headers
    assert r.header("content-length") is None
    assert r.chunks == [100] * 5
    assert len(r.body) == 500


def test_echo_chunked_both_ways(sluice):
    body = os.urandom(200000)
    with conn(sluice) as c:
        c.send(request("POST", "/_h/echo", [("Transfer-Encoding", "chunked")],
                       chunked(body, 16384)))
        r = c.read_response()
    assert r.status == 200
    assert r.chunked
    assert r.body == body


def test_expect_100_continue(sluice):
    body = b"0123456789"
    with conn(sluice) as c:
        c.send(request("POST", "/_h/anything", [("Expect", "100-continue"),
                                                 ("Content-Length", "10")]))
        info = c.read_informational(timeout=5 * SLOW)
        assert info.status == 100, info
        c.send(body)
        r = c.read_response()
    assert r.status == 200
    j = r.json()
    assert j["body_length"] == 10
    assert j["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_expect_100_continue_curl(sluice):
    body = os.urandom(5000)
    r = curl(sluice, "h1", "/_h/sink", "-H", "Expect: 100-continue", "--expect100-timeout",
             "10", upload=body)
    assert r.rc == 0, r
    assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()


def test_expect_100_not_sent_when_rejected(sluice_factory):
    """413 straight away for a body over the limit; the client never has to
    send it."""
    s = sluice_factory(limits={"max_body_bytes": 1000})
    with conn(s) as c:
        c.send(request("POST", "/_h/sink", [("Expect", "100-continue"),
                                             ("Content-Length", "5000")]))
        r = c.read_response(timeout=5 * SLOW)
    assert r.status == 413
    assert not r.informational


def test_head(sluice):
    with conn(sluice) as c:
        c.send(request("HEAD", "/_h/bytes/100") + request("GET", "/_h/bytes/7"))
        r1 = c.read_response(head=True)
        r2 = c.read_response()
    assert r1.status == 200
    assert r1.header("content-length") == "100"
    assert r2.status == 200
    assert r2.body == harness_bytes(7)


def test_head_curl(sluice):
    r = curl(sluice, "h1", "/", "-I")
    assert r.rc == 0, r
    assert r.status == 200
    assert r.header("content-length") == str(len("sluice test root\n"))


def test_large_body_curl(sluice):
    r = curl(sluice, "h1", "/_h/bytes/1048576?seed=9")
    assert r.rc == 0, r
    assert r.body == harness_bytes(1048576, 9)


# ---------------------------------------------------------------------------
# smuggling: 400 and the connection closed, nothing after it answered
# ---------------------------------------------------------------------------
SMUGGLE_TAIL = b"GET /_h/status/202 HTTP/1.1\r\nHost: x\r\n\r\n"
SMUGGLING = {
    "cl-and-te": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-and-cl": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: 6\r\n\r\n0\r\n\r\n",
    "two-cl": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
              b"Content-Length: 5\r\n\r\nabcd",
    "cl-list": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 5\r\n\r\nabcd",
    "cl-plus": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd",
    "cl-hex": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 0x4\r\n\r\nabcd",
    "cl-negative": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "cl-overflow": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Length: 99999999999999999999999\r\n\r\n",
    "te-not-chunked-last": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\n"
                           b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-unknown": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "obs-fold": b"GET /_h/anything HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "obs-fold-te": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n"
                   b"\r\n0\r\n\r\n",
    "bare-cr-header": b"GET /_h/anything HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    "bare-cr-line": b"GET /_h/anything HTTP/1.1\rHost: x\r\n\r\n",
    "nul-in-value": b"GET /_h/anything HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "bare-lf-in-value": b"GET /_h/anything HTTP/1.1\r\nHost: x\r\nX-A: a\nb\r\n\r\n",
    "space-in-name": b"GET /_h/anything HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n",
    "space-before-colon": b"GET /_h/anything HTTP/1.1\r\nHost: x\r\n"
                          b"Transfer-Encoding : chunked\r\n\r\n",
    "bad-token-name": b"GET /_h/anything HTTP/1.1\r\nHost: x\r\nX(A): b\r\n\r\n",
    "bad-method": b"G(T /_h/anything HTTP/1.1\r\nHost: x\r\n\r\n",
    "empty-name": b"GET /_h/anything HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n",
    "no-host": b"GET /_h/anything HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET /_h/anything HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "bad-chunk-size": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\nabc\r\n0\r\n\r\n",
    "chunk-size-overflow": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n"
                           b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "chunk-no-crlf": b"POST /_h/sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabcXX0\r\n\r\n",
    "space-in-target": b"GET /_h/any thing HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-version": b"GET /_h/anything HTTP/1.x\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("vector", sorted(SMUGGLING))
def test_smuggling_rejected(sluice, vector):
    with conn(sluice) as c:
        c.send(SMUGGLING[vector] + SMUGGLE_TAIL)
        r = c.read_response(timeout=5 * SLOW)
        # RFC 9112 6.1: an unknown transfer coding may get 501 instead
        ok = (400, 501) if vector == "te-unknown" else (400,)
        assert r.status in ok, "%s: got %s" % (vector, r.status)
        rest = c.read_all(timeout=3 * SLOW)
        assert c.eof, "%s: connection not closed after 400" % vector
        assert b"HTTP/1.1 202" not in rest, "%s: smuggled request answered" % vector
    assert sluice.healthz() == 200


def test_smuggling_logged_as_client_error(sluice):
    """Bad input is logged at INFO as 'client sent ...' (never WARN/ERROR)."""
    with conn(sluice) as c:
        c.send(SMUGGLING["two-cl"])
        assert c.read_response().status == 400
    deadline = time.monotonic() + 3 * SLOW
    while "client sent" not in sluice.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "client sent" in sluice.stderr()


def test_reset_harness_aborts_h1(sluice):
    """reset on HTTP/1.1 = connection abort after some bytes."""
    with conn(sluice) as c:
        c.send(request("GET", "/_h/reset?after=100&code=CANCEL"))
        data = c.read_all(timeout=5 * SLOW)
        assert c.eof
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert not body.endswith(b"0\r\n\r\n"), "response was completed, not aborted"


# ---------------------------------------------------------------------------
# limits and timeouts
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def limited(tmp_path_factory, certs):
    with module_server(
            tmp_path_factory, certs, "limited",
            limits={"h1_uri_bytes": 1024, "h1_header_bytes": 4096, "h1_max_headers": 20,
                    "max_body_bytes": 10000},
            timeouts={"h1_header_s": 1}) as s:
        yield s


def expect_status_close(server, data, status):
    with conn(server) as c:
        c.send(data)
        r = c.read_response(timeout=5 * SLOW)
        assert r.status == status, (r.status, r.body[:200])
        assert c.wait_closed(5 * SLOW), "connection not closed after %d" % status
    assert server.healthz() == 200
    return r


def test_uri_ok_under_limit(limited):
    with conn(limited) as c:
        c.send(request("GET", "/_h/anything?x=" + "a" * 900))
        assert c.read_response().status == 200


def test_414_uri_too_long(limited):
    expect_status_close(limited, request("GET", "/_h/anything?x=" + "a" * 2000), 414)


def test_431_header_too_big(limited):
    expect_status_close(limited, request("GET", "/healthz", [("X-Big", "b" * 8000)]), 431)


def test_431_too_many_headers(limited):
    expect_status_close(limited, request("GET", "/healthz",
                                         [("X-H%d" % i, "v") for i in range(50)]), 431)


def test_413_content_length(limited):
    expect_status_close(limited, request("POST", "/_h/sink", body=b"x" * 20000), 413)


def test_413_chunked(limited):
    with conn(limited) as c:
        c.send(request("POST", "/_h/sink", [("Transfer-Encoding", "chunked")],
                       chunked(b"y" * 20000, 1000)))
        try:
            r = c.read_response(timeout=5 * SLOW)
        except h1raw.Closed:
            pytest.fail("connection closed without a 413")
        # the head may already have gone out before the limit was hit;
        # then the only honest answer is an abort
        assert r.status == 413, r.status
    assert limited.healthz() == 200


def test_body_under_limit(limited):
    with conn(limited) as c:
        c.send(request("POST", "/_h/sink", body=b"z" * 9000))
        r = c.read_response()
    assert r.json()["bytes"] == 9000


@pytest.mark.parametrize("ver", [b"HTTP/2.0", b"HTTP/3.1", b"HTTP/9.9"])
def test_505_version(sluice, ver):
    with conn(sluice) as c:
        c.send(b"GET /healthz " + ver + b"\r\nHost: x\r\n\r\n")
        r = c.read_response(timeout=5 * SLOW)
        assert r.status == 505, r.status
        assert c.wait_closed(5 * SLOW)


def test_408_header_timeout(limited):
    with conn(limited) as c:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        r = c.read_response(timeout=6 * SLOW)
        took = time.monotonic() - t0
        assert r.status == 408
        assert 0.5 < took < 4 * SLOW, took
        assert c.wait_closed(5 * SLOW)


def test_408_slowloris_trickle(limited):
    """A header that keeps trickling in still hits the header deadline."""
    with conn(limited) as c:
        t0 = time.monotonic()
        c.send(b"GET /healthz HTTP/1.1\r\n")
        got = b""
        for i in range(40):
            if not c.send(b"X-%d: v\r\n" % i):
                break
            time.sleep(0.1)
            if time.monotonic() - t0 > 5 * SLOW:
                break
        got = c.read_all(timeout=5 * SLOW)
        took = time.monotonic() - t0
        assert got.startswith(b"HTTP/1.1 408"), got[:100]
        assert took < 6 * SLOW
    assert limited.healthz() == 200


def test_idle_connection_no_request_closed(limited):
    """A connection that sends nothing at all is closed too (the header
    timer runs from accept)."""
    with conn(limited) as c:
        assert c.wait_closed(6 * SLOW)
