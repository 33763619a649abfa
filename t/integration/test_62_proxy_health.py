"""Active health checks of the reverse proxy (issue 4): an upstream that
starts failing its check is taken out of rotation and comes back when it
passes again; every server failing gives 503 with Retry-After; a server
that is not listening at all is found by the checker before any request
reaches it. Upstreams: uvicorn running apps/asgi_app.py (GET /fail?on=1
makes it answer 503 to everything until /fail?on=0)."""

import time

import h1raw
from conftest import SLOW, SLUICE_BIN, free_port, run, wait_for
from test_60_proxy import proxy_server, raw_get, upstreams  # noqa: F401
from testservers import H2Server

HEALTH = {"path": "/status/200", "interval_s": 0.2, "timeout_s": 1, "expect": 200}
# passive health off: what is seen here comes from the active checker
UP = {"health": HEALTH, "fail_threshold": 0, "retries": 0}


def ports_seen(s, n):
    seen = []
    for _ in range(n):
        r = raw_get(s.h2c_port, "/whoami")
        seen.append(r.json()["port"] if r.status == 200 else r.status)
    return seen


def set_failing(app, on):
    with h1raw.H1Conn(app.port) as c:
        c.send(h1raw.request("GET", "/fail?on=%d" % on, [("Connection", "close")]))
        assert c.read_response().status == 200


def test_failing_server_leaves_and_returns(sluice_factory, upstreams):  # noqa: F811
    a, b = upstreams(), upstreams()
    s = proxy_server(sluice_factory, [a, b], up_extra=UP, workers=1)
    assert sorted(set(ports_seen(s, 4))) == sorted([a.port, b.port])
    set_failing(a, 1)
    assert wait_for(lambda: "health check failed" in s.stderr(), 5), s.stderr()
    assert "127.0.0.1:%d: health check failed (status 503, expected 200)" % a.port in s.stderr()
    # only b serves now: without the checker half of these would be 503s
    assert ports_seen(s, 10) == [b.port] * 10
    set_failing(a, 0)
    assert wait_for(lambda: "health check passed" in s.stderr(), 5), s.stderr()
    assert sorted(set(ports_seen(s, 4))) == sorted([a.port, b.port])


def test_all_failing_is_503_then_recovers(sluice_factory, upstreams):  # noqa: F811
    a = upstreams()
    s = proxy_server(sluice_factory, [a], up_extra=UP, workers=1)
    assert ports_seen(s, 1) == [a.port]
    set_failing(a, 1)
    assert wait_for(lambda: "health check failed" in s.stderr(), 5)
    r = raw_get(s.h2c_port, "/whoami")
    assert r.status == 503 and r.header("retry-after") is not None, r
    assert r.json()["status"] == 503  # sluice's answer, not the app's {"failing": true}
    set_failing(a, 0)
    assert wait_for(lambda: raw_get(s.h2c_port, "/whoami").status == 200, 5)


def test_dead_server_found_by_checker(sluice_factory, upstreams):  # noqa: F811
    a = upstreams()
    dead = free_port()
    s = proxy_server(sluice_factory, [a, "127.0.0.1:%d" % dead], up_extra=UP, workers=1)
    ports_seen(s, 1)  # the worker starts checking this upstream
    assert wait_for(lambda: "127.0.0.1:%d: health check failed (connect failed" % dead
                    in s.stderr(), 5), s.stderr()
    assert ports_seen(s, 8) == [a.port] * 8
    # the server comes up on that port: the next check brings it in
    upstreams(port=dead)
    assert wait_for(lambda: "127.0.0.1:%d: health check passed" % dead in s.stderr(), 5)
    assert dead in ports_seen(s, 6)


def test_bad_health_config_refused(sluice_factory):
    for bad in ({"path": "no-slash"}, {"path": "/x y"}, {"path": "/x", "expect": 42},
                {"path": "/x", "interval_s": 0}, {"path": "/x", "bogus": 1}, {}):
        s = sluice_factory(start=False, upstreams={"app": {"servers": ["127.0.0.1:1"],
                                                           "health": bad}},
                           routes=[{"path": "/", "handler": "proxy", "upstream": "app"}])
        r = run([SLUICE_BIN, "-t", "-c", s.cfg_path], timeout=15)
        assert r.returncode != 0 and b"health" in r.stderr, (bad, r.stderr)
    good = {"path": "/healthz", "interval_s": 5, "timeout_s": 2, "expect": 204}
    s = sluice_factory(start=False, upstreams={"app": {"servers": ["127.0.0.1:1"],
                                                       "health": good}},
                       routes=[{"path": "/", "handler": "proxy", "upstream": "app"}])
    r = run([SLUICE_BIN, "-t", "-c", s.cfg_path], timeout=15)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------
# HTTP/2 groups: the check is one HTTP/2 stream on a new connection

class H2StatusServer(H2Server):
    """HTTP/2 only (python3-h2, prior knowledge): answers every request
    with self.code and body "server PORT", counting the GETs of /hc. An
    HTTP/1.1 check would get nothing from it."""

    def __init__(self, code=200):
        self.code = code
        self.reset = False  # answer with RST_STREAM instead
        self.checks = 0
        super().__init__()

    def on_event(self, h, e, state, n):
        import h2.events
        if isinstance(e, h2.events.RequestReceived):
            if dict(e.headers).get(b":path") == b"/hc":
                self.checks += 1
            if self.reset:
                h.reset_stream(e.stream_id)
                return
            body = b"server %d" % self.port
            h.send_headers(e.stream_id, [(":status", str(self.code)),
                                         ("content-length", str(len(body)))])
            h.send_data(e.stream_id, body, end_stream=True)


H2_UP = {"protocol": "h2c", "fail_threshold": 0, "retries": 0,
         "health": {"path": "/hc", "interval_s": 0.2, "timeout_s": 1, "expect": 200}}


def served_by(s, n):
    return [raw_get(s.h2c_port, "/x").body.decode() for _ in range(n)]


def test_h2c_group_checked_over_http2(sluice_factory):
    import pytest
    pytest.importorskip("h2.connection")
    a, b = H2StatusServer(), H2StatusServer()
    try:
        s = proxy_server(sluice_factory, ["127.0.0.1:%d" % a.port, "127.0.0.1:%d" % b.port],
                         up_extra=H2_UP, workers=1)
        assert set(served_by(s, 4)) == {"server %d" % a.port, "server %d" % b.port}
        assert wait_for(lambda: a.checks >= 2 and b.checks >= 2, 5), (a.checks, b.checks)
        a.code = 503
        assert wait_for(lambda: "127.0.0.1:%d: health check failed (status 503, expected 200)"
                        % a.port in s.stderr(), 5), s.stderr()
        assert served_by(s, 8) == ["server %d" % b.port] * 8
        a.code = 200
        assert wait_for(lambda: "127.0.0.1:%d: health check passed" % a.port in s.stderr(), 5)
        assert "server %d" % a.port in served_by(s, 6)
    finally:
        a.stop()
        b.stop()


def test_h2c_check_reset_fails_at_once(sluice_factory):
    """A server that resets the check's stream fails it then, not at the
    check's timeout."""
    import pytest
    pytest.importorskip("h2.connection")
    a = H2StatusServer()
    a.reset = True
    try:
        up = dict(H2_UP, health={"path": "/hc", "interval_s": 0.2, "timeout_s": 30,
                                 "expect": 200})
        s = proxy_server(sluice_factory, ["127.0.0.1:%d" % a.port], up_extra=up, workers=1)
        served_by(s, 1)
        assert wait_for(lambda: "health check failed (ended the stream without a status"
                        in s.stderr(), 5), s.stderr()
    finally:
        a.stop()


def test_h2c_check_finds_dead_server(sluice_factory):
    import pytest
    pytest.importorskip("h2.connection")
    a = H2StatusServer()
    dead = free_port()
    try:
        s = proxy_server(sluice_factory, ["127.0.0.1:%d" % a.port, "127.0.0.1:%d" % dead],
                         up_extra=H2_UP, workers=1)
        served_by(s, 1)  # the worker starts checking this upstream
        assert wait_for(lambda: "127.0.0.1:%d: health check failed (connect failed" % dead
                        in s.stderr(), 5), s.stderr()
        assert served_by(s, 6) == ["server %d" % a.port] * 6
    finally:
        a.stop()


def test_tls_groups_checked_by_alpn(sluice_factory, tmp_path):
    """"h2": hypercorn over TLS answers the check on HTTP/2; "auto": a
    uvicorn that only speaks http/1.1 gets the same GET as HTTP/1.1 on the
    connection ALPN gave. Neither is ever marked down; a check path that
    answers 404 is."""
    from test_60_proxy import Upstream
    from test_63_proxy_tls import Pki, TlsUpstream
    pki = Pki(str(tmp_path))
    h2app = Upstream("hypercorn", pki=pki).start()
    h1app = TlsUpstream(pki).start()
    try:
        for proto, app in (("h2", h2app), ("auto", h1app), ("auto", h2app)):
            for path, ok in (("/status/200", True), ("/status/404", False)):
                up = dict(H2_UP, protocol=proto, tls={"ca_file": pki.ca},
                          health={"path": path, "interval_s": 0.2, "timeout_s": 2,
                                  "expect": 200})
                s = proxy_server(sluice_factory, ["127.0.0.1:%d" % app.port], up_extra=up,
                                 workers=1)
                assert raw_get(s.h2c_port, "/whoami").status == 200
                if ok:
                    time.sleep(1.0 * SLOW)  # five rounds
                    assert "health check" not in s.stderr(), (proto, s.stderr())
                    assert raw_get(s.h2c_port, "/whoami").status == 200
                else:
                    assert wait_for(lambda: "health check failed (status 404, expected 200)"
                                    in s.stderr(), 5), (proto, s.stderr())
                    assert raw_get(s.h2c_port, "/whoami").status == 503
                s.stop()
    finally:
        h2app.stop()
        h1app.stop()
