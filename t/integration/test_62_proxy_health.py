"""Active health checks of the reverse proxy (issue 4): an upstream that
starts failing its check is taken out of rotation and comes back when it
passes again; every server failing gives 503 with Retry-After; a server
that is not listening at all is found by the checker before any request
reaches it. Upstreams: uvicorn running apps/asgi_app.py (GET /fail?on=1
makes it answer 503 to everything until /fail?on=0)."""

import time

import h1raw
from conftest import SLOW, SLUICE_BIN, free_port, run
from test_60_proxy import proxy_server, raw_get, upstreams  # noqa: F401

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


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


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
