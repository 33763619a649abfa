"""Route auth (issue 16): a real auth service (t/integration/apps/auth_app.py
under uvicorn) that allows, denies and revokes tokens and counts its
requests; sluice asks it before a route's handler runs and again every
reauth_s while a stream lives. Clients: python http.client (HTTP/1.1),
curl (HTTP/2), python3-websockets, h2load; a second uvicorn app is the
proxied upstream that shows what reached it."""

import asyncio
import hashlib
import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from conftest import ROUTES, SLOW
from test_60_proxy import Upstream
from test_82_metrics import parse, val

websockets = pytest.importorskip("websockets")


def admin(svc, op, **q):
    url = "http://127.0.0.1:%d/admin/%s?%s" % (svc.port, op, "&".join(
        "%s=%s" % kv for kv in q.items()))
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


def checks(svc, token):
    return admin(svc, "count")["by_token"].get(token, 0)


def config(auth_port, app_port, **over):
    auth = dict({"upstream": "authsvc", "path": "/check", "timeout_ms": 1000,
                 "forward_headers": ["authorization"], "copy_headers": ["x-user", "x-tenant"],
                 "cache_s": 0.5, "reauth_s": 1}, **over)
    return {
        "upstreams": {"authsvc": {"servers": ["127.0.0.1:%d" % auth_port]},
                      "app": {"servers": ["127.0.0.1:%d" % app_port]}},
        "executors": {"tick": {"type": "builtin", "kind": "ticker", "max_events": 100000}},
        "jobs": {"heartbeat_s": 1},
        "routes": [
            {"path": "/metrics", "handler": "metrics"},
            {"path": "/app/", "handler": "proxy", "upstream": "app", "strip_prefix": "/app",
             "replace_prefix": "/", "auth": auth},
            {"path": "/v1/tick", "handler": "job", "executor": "tick", "owner": "header:x-user",
             "auth": auth},
            {"path": "/jobs", "handler": "jobs_api", "owner": "header:x-user", "auth": auth},
            {"path": "/ws", "handler": "ws", "app": "echo", "auth": auth},
            {"path": "/guarded", "handler": "return", "status": 200, "body": "ok\n",
             "auth": auth},
        ] + ROUTES,
    }


@pytest.fixture
def env(sluice_factory):
    svc = Upstream(app="auth_app:app").start()
    app = Upstream().start()
    started = []

    def make(**over):
        s = sluice_factory(**config(svc.port, app.port, **over))
        started.append(s)
        return s
    yield svc, app, make
    svc.stop()
    app.stop()


def h1(s, method, path, headers=None, body=None):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", s.h2c_port, timeout=10 * SLOW)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def bearer(token, **extra):
    return dict({"authorization": "Bearer " + token}, **extra)


def test_allowed_and_denied_over_h1_and_h2(env):
    svc, _, make = env
    s = make()
    admin(svc, "grant", token="tok-a", user="alice")
    assert h1(s, "GET", "/guarded", bearer("tok-a"))[0] == 200
    st, hdrs, body = h1(s, "GET", "/guarded", bearer("nope"))
    assert st == 401 and hdrs["www-authenticate"] == 'Bearer realm="sluice-test"'
    assert json.loads(body) == {"error": "bad token"}
    assert h1(s, "GET", "/guarded")[0] == 401
    assert h1(s, "GET", "/guarded", bearer("forbidden"))[0] == 403
    assert h1(s, "GET", "/open-route-is-not-guarded")[0] == 200  # the suite's catch-all
    # a body waits for the answer, then reaches the handler whole
    st, _, body = h1(s, "POST", "/app/sha256", bearer("tok-a"), b"x" * 200000)
    assert st == 200, body
    assert json.loads(body) == {"len": 200000, "sha256": hashlib.sha256(b"x" * 200000).hexdigest()}
    for token, want in (("tok-a", 200), ("nope", 401)):
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                            "--http2-prior-knowledge", "-H", "authorization: Bearer " + token,
                            "http://127.0.0.1:%d/guarded" % s.h2c_port],
                           stdout=subprocess.PIPE, timeout=20)
        assert r.stdout.decode() == "%d 2" % want, r.stdout
    # a token not seen before is a question, with the target as sent
    admin(svc, "grant", token="tok-u", user="uma")
    assert h1(s, "GET", "/guarded?x=%41", bearer("tok-u"))[0] == 200
    assert svc_saw(svc)["x-original-uri"] == "/guarded?x=%41"
    assert '"auth":"x-user=alice"' in open(s.log).read()


def svc_saw(svc):
    return admin(svc, "count")["last"]


def test_copied_fields_reach_the_upstream_and_own_jobs(env):
    svc, _, make = env
    s = make()
    admin(svc, "grant", token="tok-a", user="alice", tenant="t1")
    admin(svc, "grant", token="tok-b", user="bob")
    # a client's own x-user never passes: the service's does
    st, _, body = h1(s, "GET", "/app/headers", bearer("tok-a", **{"x-user": "mallory"}))
    assert st == 200
    seen = json.loads(body)
    assert ["x-user", "alice"] in seen and ["x-tenant", "t1"] in seen
    assert not any(v == "mallory" for _, v in seen)
    saw = svc_saw(svc)
    assert saw["x-original-method"] == "GET" and saw["x-forwarded-for"] == "127.0.0.1"
    # the job's owner is the user the service named
    st, _, body = h1(s, "POST", "/v1/tick?n=2&interval_ms=0",
                     bearer("tok-a", prefer="respond-async"))
    assert st == 202, body
    jid = json.loads(body)["id"]
    assert h1(s, "GET", "/jobs/" + jid, bearer("tok-a"))[0] == 200
    assert h1(s, "GET", "/jobs/" + jid, bearer("tok-b"))[0] == 404
    assert h1(s, "GET", "/jobs/" + jid, bearer("tok-b", **{"x-user": "alice"}))[0] == 404


def test_service_down_or_slow_is_503(env):
    svc, _, make = env
    s = make(timeout_ms=300)
    t0 = time.monotonic()
    st, hdrs, _ = h1(s, "GET", "/guarded", bearer("slow"))
    assert st == 503 and hdrs.get("retry-after") and time.monotonic() - t0 < 3 * SLOW
    svc.stop()
    assert h1(s, "GET", "/guarded", bearer("tok-a"))[0] == 503
    m = parse(h1(s, "GET", "/metrics")[2].decode())
    assert val(m, "sluice_auth_requests_total", result="error") >= 2
    assert "auth service authsvc/check" in open(s.stderr_path).read() + open(s.log).read()


def sse_lines(s, token, seconds_before_revoke, svc):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", s.h2c_port, timeout=10 * SLOW)
    c.request("GET", "/v1/tick?n=100000&interval_ms=50",
              headers=bearer(token, accept="text/event-stream"))
    r = c.getresponse()
    assert r.status == 200
    t0 = time.monotonic()
    lines = []
    while time.monotonic() - t0 < seconds_before_revoke:
        lines.append(r.readline())
    n_before = len(lines)
    admin(svc, "revoke", token=token)
    t1 = time.monotonic()
    while True:
        line = r.readline()
        if not line:
            break
        lines.append(line)
    c.close()
    return lines, n_before, time.monotonic() - t1


def test_sse_stream_ends_when_access_is_revoked(env):
    svc, _, make = env
    s = make()
    admin(svc, "grant", token="tok-s", user="sam")
    lines, before, took = sse_lines(s, "tok-s", 2.5, svc)
    assert before > 20  # it went on across two re-checks
    assert took < 1 + 0.5 + 1.5 * SLOW  # reauth_s + cache_s + slack
    assert b"event: error\n" in lines[-3:] and b'data: {"error":"access revoked"}\n' in lines[-3:]
    assert "route /v1/tick: access withdrawn" in open(s.stderr_path).read() + open(s.log).read()


def test_websocket_is_closed_1008_when_access_is_revoked(env):
    svc, _, make = env
    s = make()
    admin(svc, "grant", token="tok-w", user="wendy")

    async def go():
        uri = "ws://127.0.0.1:%d/ws" % s.h2c_port
        async with websockets.connect(uri, extra_headers=bearer("tok-w")) as ws:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.5:  # up across two re-checks
                await ws.send("ping")
                assert await asyncio.wait_for(ws.recv(), 5) == "ping"
                await asyncio.sleep(0.2)
            admin(svc, "revoke", token="tok-w")
            t1 = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed) as e:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            took = time.monotonic() - t1
        with pytest.raises(websockets.InvalidStatusCode) as again:  # and it cannot come back
            async with websockets.connect(uri, extra_headers=bearer("tok-w")):
                pass
        return e.value, took, again.value.status_code
    closed, took, status = asyncio.run(go())
    assert closed.rcvd.code == 1008 and took < 1 + 0.5 + 1.5 * SLOW
    assert status == 401


def test_many_streams_with_one_token_cost_one_check(env):
    svc, _, make = env
    if not shutil.which("h2load"):
        pytest.skip("h2load not installed")
    s = make(cache_s=30)
    admin(svc, "grant", token="tok-m", user="max")
    r = subprocess.run(["h2load", "-n", "200", "-c", "2", "-m", "100",
                        "-H", "authorization: Bearer tok-m",
                        "http://127.0.0.1:%d/guarded" % s.h2c_port],
                       stdout=subprocess.PIPE, timeout=60)
    out = r.stdout.decode()
    assert "200 succeeded" in out, out
    assert checks(svc, "tok-m") <= 2  # one per worker at most: the rest wait or hit the cache
    m = parse(h1(s, "GET", "/metrics")[2].decode())
    assert val(m, "sluice_auth_cache_hits_total") >= 198


def test_long_proxied_response_is_reset_when_access_is_revoked(env):
    """Without an SSE or WebSocket way to say so, the stream is reset:
    HTTP/2 RST_STREAM (curl reports the stream error), HTTP/1.1 a close
    before the end of the chunked body."""
    svc, _, make = env
    s = make()
    admin(svc, "grant", token="tok-p", user="pat")
    url = "http://127.0.0.1:%d/app/stream?n=200&size=100&delay=0.05" % s.h2c_port
    procs = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}",
                               "-H", "authorization: Bearer tok-p"] + extra + [url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for extra in (["--http2-prior-knowledge"], ["--http1.1"])]
    time.sleep(2.5)  # two re-checks passed: still streaming
    assert all(p.poll() is None for p in procs)
    admin(svc, "revoke", token="tok-p")
    for p in procs:
        out, _ = p.communicate(timeout=10 * SLOW)
        assert p.returncode in (18, 56, 92), p.returncode  # partial / recv error / h2 stream error
        assert 0 < int(out) < 200 * 100
    m = parse(h1(s, "GET", "/metrics")[2].decode())
    assert val(m, "sluice_auth_revoked_total") >= 2


def test_rate_limit_by_a_field_the_service_sets(env, sluice_factory):
    """A limit keyed by x-user counts the user the service named, whatever
    the client claims, and a limit by address runs before the service is
    asked at all."""
    svc, app, _ = env
    cfg = config(svc.port, app.port)
    auth = next(r["auth"] for r in cfg["routes"] if r["path"] == "/guarded")
    cfg["routes"][1:1] = [
        {"path": "/by-user", "handler": "return", "status": 200, "body": "ok\n", "auth": auth,
         "rate_limit": {"key": "header:x-user", "rps": 0.1, "burst": 2}},
        {"path": "/by-ip", "handler": "return", "status": 200, "body": "ok\n", "auth": auth,
         "rate_limit": {"rps": 0.1, "burst": 1}}]
    s = sluice_factory(**cfg)
    admin(svc, "grant", token="tok-r1", user="rita")
    admin(svc, "grant", token="tok-r2", user="rita")  # another token, the same user
    admin(svc, "grant", token="tok-q", user="quinn")
    got = [h1(s, "GET", "/by-user", bearer(t, **{"x-user": "u%d" % i}))[0]
           for i, t in enumerate(["tok-r1", "tok-r2", "tok-r1"])]
    assert got == [200, 200, 429]
    assert h1(s, "GET", "/by-user", bearer("tok-q"))[0] == 200
    assert h1(s, "GET", "/by-ip", bearer("tok-never-seen-1"))[0] == 401  # asked: unknown token
    before = checks(svc, "tok-never-seen-2")
    assert h1(s, "GET", "/by-ip", bearer("tok-never-seen-2"))[0] == 429
    assert checks(svc, "tok-never-seen-2") == before  # refused before the question


def test_auth_config_errors(tmp_path):
    from test_10_config import check, write
    ups = {"authsvc": {"servers": ["127.0.0.1:9"]}}
    cases = [({"path": "/check"}, "auth.upstream: required"),
             ({"upstream": "nope", "path": "/check"}, 'no upstream named "nope"'),
             ({"upstream": "authsvc", "path": "check"}, "auth.path: must start with"),
             ({"upstream": "authsvc", "path": "/c", "forward_headers": ["cookie", "Cookie"]},
              "Cookie is listed twice"),
             ({"upstream": "authsvc", "path": "/c", "copy_headers": ["host"]},
              "host cannot be set"),
             ({"upstream": "authsvc", "path": "/c", "reauth": 5}, 'did you mean "reauth_s"')]
    for auth, msg in cases:
        cfg = {"upstreams": ups, "routes": [{"path": "/", "handler": "return", "auth": auth}]}
        r = check(write(tmp_path, "c.json", json.dumps(cfg)))
        assert r.returncode == 1 and msg in r.stderr.decode(), (auth, r.stderr.decode())

