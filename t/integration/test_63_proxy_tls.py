"""Reverse proxy to TLS upstreams (issue 4): uvicorn with --ssl-keyfile /
--ssl-certfile serving a leaf certificate made here (openssl CLI: a CA and
a leaf with SAN 127.0.0.1 / localhost). sluice verifies it against the
upstream's ca_file and the SNI name. Clients: curl, python3-websockets."""

import asyncio
import hashlib
import http.client
import json
import os
import ssl
import subprocess
import time

import pytest

from conftest import SLOW, curl, require
from test_60_proxy import PY, APPS, Upstream, pattern, proxy_server, raw_get

websockets = pytest.importorskip("websockets")


def openssl(*args):
    r = subprocess.run(["openssl"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, r.stderr.decode()


class Pki:
    """A CA with a leaf for 127.0.0.1 / localhost, and an unrelated CA."""

    def __init__(self, d):
        p = lambda n: os.path.join(d, n)  # noqa: E731
        self.ca, self.ca_key = p("ca.crt"), p("ca.key")
        self.other_ca, other_key = p("other.crt"), p("other.key")
        self.cert, self.key = p("leaf.crt"), p("leaf.key")
        for crt, key, cn in ((self.ca, self.ca_key, "test ca"), (self.other_ca, other_key, "x")):
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.key, "-out", p("leaf.csr"), "-subj", "/CN=localhost")
        with open(p("ext.cnf"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                    "extendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", p("leaf.csr"), "-CA", self.ca, "-CAkey", self.ca_key,
                "-CAcreateserial", "-out", self.cert, "-days", "2", "-extfile", p("ext.cnf"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    require("openssl")
    return Pki(str(tmp_path_factory.mktemp("uptls")))


class TlsUpstream(Upstream):
    def __init__(self, pki):
        super().__init__("uvicorn")
        self.pki = pki

    def start(self):
        argv = [PY, "-m", "uvicorn", "--app-dir", APPS, "asgi_app:app", "--host", "127.0.0.1",
                "--port", str(self.port), "--no-proxy-headers", "--log-level", "warning",
                "--timeout-keep-alive", "30", "--ssl-keyfile", self.pki.key,
                "--ssl-certfile", self.pki.cert]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15 * SLOW
        while time.monotonic() < deadline:
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.fail("uvicorn (TLS) did not start on port %d" % self.port)

    def stats(self):
        ctx = ssl.create_default_context(cafile=self.pki.ca)
        c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=5, context=ctx)
        try:
            c.request("GET", "/stats", headers={"Connection": "close"})
            return json.loads(c.getresponse().read())
        finally:
            c.close()


@pytest.fixture
def tls_app(pki):
    u = TlsUpstream(pki).start()
    yield u
    u.stop()


def server(sluice_factory, app, tls, **over):
    return proxy_server(sluice_factory, [app], up_extra={"tls": tls}, **over)


def test_get_and_big_post_over_tls(sluice_factory, tls_app, pki):
    s = server(sluice_factory, tls_app, {"ca_file": pki.ca})
    n = 1024 * 1024 + 3
    r = curl(s, "h2c", "/bytes?n=%d" % n)
    assert r.status == 200 and r.body == pattern(n), r
    up = os.urandom(3 * 1024 * 1024)
    for mode in ("h1", "h2-tls"):
        r = curl(s, mode, "/sha256", upload=up)
        assert r.status == 200, r
        assert r.json() == {"sha256": hashlib.sha256(up).hexdigest(), "len": len(up)}
    r = curl(s, "h1", "/echo", "-H", "Transfer-Encoding: chunked", upload=up)
    assert r.status == 200 and hashlib.sha256(r.body).digest() == hashlib.sha256(up).digest()
    r = curl(s, "h2c", "/stream?n=50&size=10000")
    assert r.status == 200 and r.body == pattern(10000) * 50


def test_keepalive_reuse_over_tls(sluice_factory, tls_app, pki):
    s = server(sluice_factory, tls_app, {"ca_file": pki.ca, "sni": "localhost"}, workers=1)
    before = tls_app.stats()["peers"]
    for _ in range(20):
        assert raw_get(s.h2c_port, "/whoami").status == 200
    used = tls_app.stats()["peers"] - before
    assert 1 <= used <= 2, used


@pytest.mark.parametrize("case", ["wrong-ca", "wrong-sni"])
def test_verify_failure_is_502(sluice_factory, tls_app, pki, case):
    tls = {"ca_file": pki.other_ca} if case == "wrong-ca" else \
        {"ca_file": pki.ca, "sni": "wrong.example"}
    s = server(sluice_factory, tls_app, tls)
    r = raw_get(s.h2c_port, "/whoami")
    assert r.status == 502, r
    deadline = time.monotonic() + 5 * SLOW
    while time.monotonic() < deadline and "certificate verify failed" not in s.stdout() + s.stderr():
        time.sleep(0.1)
    log = s.stdout() + s.stderr()
    assert 'upstream "app"' in log and "certificate verify failed" in log, log[-2000:]
    # verify off: the same upstream is reachable
    s2 = server(sluice_factory, tls_app, {"verify": False, "sni": "wrong.example"})
    assert raw_get(s2.h2c_port, "/whoami").status == 200


def test_health_checks_over_tls(sluice_factory, tls_app, pki):
    health = {"path": "/whoami", "interval_s": 0.2, "timeout_s": 2}
    good = proxy_server(sluice_factory, [tls_app], workers=1,
                        up_extra={"tls": {"ca_file": pki.ca}, "health": health})
    bad = proxy_server(sluice_factory, [tls_app], workers=1,
                       up_extra={"tls": {"ca_file": pki.other_ca}, "health": health})
    assert raw_get(good.h2c_port, "/whoami").status == 200
    raw_get(bad.h2c_port, "/whoami")
    time.sleep(1.0 * SLOW)
    for _ in range(5):
        assert raw_get(good.h2c_port, "/whoami").status == 200
    assert raw_get(bad.h2c_port, "/whoami").status == 503
    assert "health check failed" in bad.stdout() + bad.stderr()


async def ws_session(port):
    async with websockets.connect("ws://127.0.0.1:%d/ws/echo" % port, max_size=None,
                                  open_timeout=10 * SLOW, close_timeout=5) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10 * SLOW))
        await ws.send("hello")
        text = await asyncio.wait_for(ws.recv(), 10 * SLOW)
        big = os.urandom(1024 * 1024)
        await ws.send(big)
        back = await asyncio.wait_for(ws.recv(), 30 * SLOW)
        return first, text, back == big


def test_websocket_through_tls_upstream(sluice_factory, tls_app, pki):
    s = server(sluice_factory, tls_app, {"ca_file": pki.ca})
    first, text, big_ok = asyncio.run(ws_session(s.h2c_port))
    assert isinstance(first, dict) and text == "hello" and big_ok


def jobs_server(sluice_factory, app, ca):
    from conftest import ROUTES
    return sluice_factory(
        upstreams={"app": {"servers": ["127.0.0.1:%d" % app.port], "tls": {"ca_file": ca}}},
        executors={"sum": {"type": "upstream", "upstream": "app", "path": "/sha256",
                           "reply_to": {"upstream": "app", "path": "/hooks/done"}}},
        routes=[{"path": "/v1/sum", "handler": "job", "executor": "sum"},
                {"path": "/jobs", "handler": "jobs_api"}] + ROUTES)


def hooks_over_tls(app, pki, jid):
    ctx = ssl.create_default_context(cafile=pki.ca)
    c = http.client.HTTPSConnection("127.0.0.1", app.port, timeout=5, context=ctx)
    try:
        c.request("GET", "/hooks/last?job=" + jid, headers={"Connection": "close"})
        return json.loads(c.getresponse().read())
    finally:
        c.close()


def test_jobs_reach_tls_upstreams(sluice_factory, tls_app, pki):
    """Regression (issue 11): the jobs thread's clients (the upstream
    executor and reply_to) spoke cleartext even to a group with "tls".
    They now run on the proxy's engine: the request body streams to the
    TLS server, the result comes back, reply_to POSTs over TLS too."""
    s = jobs_server(sluice_factory, tls_app, pki.ca)
    body = os.urandom(300000)
    r = curl(s, "h1", "/v1/sum", "-H", "Prefer: wait=20", upload=body)
    assert r.status == 200, r
    assert r.json() == {"sha256": hashlib.sha256(body).hexdigest(), "len": len(body)}
    jid = r.header("job-id")
    deadline = time.monotonic() + 10 * SLOW
    recs = []
    while not recs and time.monotonic() < deadline:
        recs = hooks_over_tls(tls_app, pki, jid)
        time.sleep(0.05)
    assert len(recs) == 1 and recs[0]["path"] == "/hooks/done", recs
    assert json.loads(recs[0]["body"])["state"] == "succeeded"


def test_jobs_verify_tls_upstreams(sluice_factory, tls_app, pki):
    """The jobs clients check the certificate as the proxy does: with the
    wrong CA the job fails with the verification error and nothing
    reaches the app."""
    s = jobs_server(sluice_factory, tls_app, pki.other_ca)
    before = tls_app.stats()["requests"]
    r = curl(s, "h1", "/v1/sum", "-H", "Prefer: respond-async", upload=b"x")
    assert r.status == 202, r
    jid = r.json()["id"]
    deadline = time.monotonic() + 10 * SLOW
    st = {}
    while st.get("state") not in ("failed", "succeeded") and time.monotonic() < deadline:
        st = curl(s, "h1", "/jobs/" + jid).json()
        time.sleep(0.05)
    assert st["state"] == "failed", st
    ev = curl(s, "h1", "/jobs/%s/events" % jid).body.decode()
    assert "event: error" in ev and "certificate verify failed" in ev, ev
    assert tls_app.stats()["requests"] == before + 1  # only the stats call itself


def test_tls_config_errors(tmp_path, pki):
    from conftest import SLUICE_BIN
    cases = (({}, "ca_file: required"),
             ({"ca_file": pki.ca, "min_version": "TLSv1.0"}, "min_version"),
             ({"ca_file": "/nonexistent.pem"}, "cannot load ca_file"),
             ({"ca_file": pki.ca, "cafile": "x"}, "tls.cafile: unknown key"))
    for tls, msg in cases:
        p = tmp_path / "c.json"
        p.write_text(json.dumps({"listen": [{"addr": "127.0.0.1:0"}], "routes": [],
                                 "upstreams": {"a": {"servers": ["127.0.0.1:1"], "tls": tls}}}))
        r = subprocess.run([SLUICE_BIN, "-t", "-c", str(p)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        assert r.returncode == 1 and msg in r.stderr.decode(), (tls, r.stderr)
