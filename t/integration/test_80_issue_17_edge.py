"""Edge hardening (issue 17): one normalised path for routing and
proxying, forwarding fields from the connection, absolute-form authority
checks, directory redirects from the normalised path, HTTP/2 :path bytes,
no re-sent non-idempotent requests, h2c upgrade off by default.

Clients: curl with --path-as-is (h1, h2c, h2 over TLS), python3-h2 and raw
sockets for what curl will not send; upstream: uvicorn running
apps/asgi_app.py, and a bare socket server that drops requests."""

import json
import socket
import threading
import time

import pytest

import h1raw
import h2raw
from conftest import SLOW, curl
from test_60_proxy import Upstream, upstreams  # noqa: F401  (fixture)

MODES = ["h1", "h2c", "h2-tls"]


def edge_server(sluice_factory, up, **over):
    routes = [
        {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
        {"path": "/api/admin", "handler": "return", "status": 403, "body": "denied\n"},
        {"path": "/api/", "handler": "proxy", "upstream": "app", "strip_prefix": "/api",
         "replace_prefix": "/seen"},
        {"path": "/public/", "handler": "proxy", "upstream": "app", "strip_prefix": "/public",
         "replace_prefix": "/seen/public"},
        {"path": "/raw/", "handler": "proxy", "upstream": "app", "forward_raw_path": True,
         "strip_prefix": "/raw", "replace_prefix": "/seen/raw"},
    ]
    return sluice_factory(upstreams={"app": {"servers": ["127.0.0.1:%d" % up.port]}},
                          routes=routes, **over)


@pytest.fixture
def edge(sluice_factory, upstreams):  # noqa: F811
    up = upstreams()
    return edge_server(sluice_factory, up), up


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", ["/api/admin", "/api//admin", "/api/./admin", "/api/%61dmin",
                                  "/api/x/../admin", "/api/%2e/admin", "//api/admin",
                                  "/api/admin/", "/public/../api/admin"])
def test_deny_route_not_bypassed(edge, mode, path):
    s, up = edge
    r = curl(s, mode, path, "--path-as-is")
    assert r.status == 403, (path, r, r.body[:200])
    assert r.body == b"denied\n"


@pytest.mark.parametrize("mode", MODES)
def test_upstream_sees_normalised_path(edge, mode):
    s, _ = edge
    r = curl(s, mode, "/api/a/./b//c/../d%7e?q=%2F", "--path-as-is")
    assert r.status == 200, r
    seen = r.json()
    assert seen["raw_path"] == "/seen/a/b/d~", seen
    assert seen["query"] == "q=%2F"  # the query is not the path: untouched


@pytest.mark.parametrize("mode", MODES)
def test_strip_prefix_cannot_escape(edge, mode):
    s, up = edge
    before = up.stats()["requests"]
    r = curl(s, mode, "/public/../admin", "--path-as-is")
    assert r.status == 404, r  # "/admin": no route, nothing forwarded
    assert up.stats()["requests"] == before + 1  # only the /stats call itself


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", ["/api/x%2Fy", "/api/x%2fy", "/../api/admin",
                                  "/api/../../admin", "/api/%2e%2e/%2e%2e/x", "/api/a%zz",
                                  "/api/a%00"])
def test_bad_paths_400(edge, mode, path):
    s, up = edge
    r = curl(s, mode, path, "--path-as-is")
    assert r.status == 400, (path, r)
    assert b"path" in r.body
    assert "bad path" in s.stderr()


def test_encoded_slash_allowed_by_option(sluice_factory, upstreams):  # noqa: F811
    s = edge_server(sluice_factory, upstreams(), allow_encoded_slash=True)
    r = curl(s, "h1", "/api/x%2fy", "--path-as-is")
    assert r.status == 200, r
    assert r.json()["raw_path"] == "/seen/x%2Fy"


@pytest.mark.parametrize("mode", MODES)
def test_forward_raw_path_option(edge, mode):
    s, _ = edge
    r = curl(s, mode, "/raw/a//b%7e", "--path-as-is")
    assert r.status == 200, r
    assert r.json()["raw_path"] == "/seen/raw/a//b%7e"


def test_forwarded_proto_from_connection(edge):
    """A cleartext h2 client claiming :scheme https does not make the
    upstream believe the hop was TLS."""
    s, _ = edge
    with h2raw.H2Client(s.h2c_port) as c:
        st = c.get("/api/x", scheme="https")
        assert st.status == 200, st
        seen = json.loads(bytes(st.data))
    h = seen["headers"]
    assert h["x-forwarded-proto"] == "http", h
    assert ";proto=http" in h["forwarded"], h
    # and over TLS it is https
    r = curl(s, "h2-tls", "/api/x")
    h = r.json()["headers"]
    assert h["x-forwarded-proto"] == "https" and ";proto=https" in h["forwarded"], h


@pytest.mark.parametrize("target,want", [
    ("http://localhost/healthz", 200),
    ("HTTP://localhost:1/healthz", 200),
    ("http://user@evil.example/healthz", 400),
    ("http:///healthz", 400),
    ("http://evil.example\\@x/healthz", 400),
    ("https://a%2fb/healthz", 200),  # '%' is an authority character
])
def test_absolute_form_authority_checked(edge, target, want):
    s, _ = edge
    with h1raw.H1Conn(s.h2c_port) as c:
        c.send(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                % target).encode())
        r = c.read_response(timeout=5 * SLOW)
    assert r.status == want, (target, r.status)


@pytest.mark.parametrize("byte", [b"\x7f", b"\x80", b"\xff", b" "])
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_h2_path_bytes_refused(edge, byte, tls):
    """:path bytes the HTTP/1.1 parser refuses are refused on HTTP/2 too
    (nghttp2 resets some of them itself; either way nothing is forwarded)."""
    s, up = edge
    before = up.stats()["requests"]
    port = s.tls_port if tls else s.h2c_port
    with h2raw.RawH2(port, tls=tls) as r:
        r.handshake()
        hdrs = h2raw.req_headers("/api/a", scheme="https" if tls else "http")
        hdrs = [(n, (v + byte.decode("latin-1")) if n == ":path" else v) for n, v in hdrs]
        r.send(h2raw.headers_frame(1, hdrs))
        f = r.wait_for(lambda f: f.sid == 1 and (f.type == h2raw.RST_STREAM or
                                                 f.flags & h2raw.END_STREAM), 5 * SLOW)
        assert f is not None, r.frames
        if f.type == h2raw.RST_STREAM:
            assert f.error_code == h2raw.PROTOCOL_ERROR, f
        else:
            assert h2raw.stream_status(r.frames, 1) == 400
    assert up.stats()["requests"] == before + 1  # only the /stats call itself


def test_directory_redirect_from_normalised_path(sluice_factory, tmp_path):
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "index.html").write_bytes(b"<p>sub</p>\n")
    s = sluice_factory(routes=[
        {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
        {"path": "/", "handler": "static", "root": str(root)}])
    for path in ["//attacker.example/../sub", "/sub", "/./sub", "//sub"]:
        r = curl(s, "h1", path, "--path-as-is")
        assert r.status == 301, (path, r)
        assert r.header("location") == "/sub/", (path, r.headers)


# ---- h2c upgrade ---------------------------------------------------------

def test_h2c_upgrade_off_by_default(sluice_factory):
    def listen(tls_port, h2c_port, certs):
        return [{"addr": "127.0.0.1:%d" % h2c_port}]
    s = sluice_factory(listen=listen)
    r = curl(s, "h2c-upgrade", "/healthz")
    assert r.status == 200 and r.http_version == "1.1", r  # served, not upgraded
    r = curl(s, "h2c", "/healthz")
    assert r.status == 200 and r.http_version == "2", r  # prior knowledge stays on
    with h1raw.H1Conn(s.h2c_port) as c:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
        r = c.read_response(timeout=5 * SLOW)
    assert r.status == 200, r.status


def test_h2c_upgrade_opt_in(sluice_factory):
    def listen(tls_port, h2c_port, certs):
        return [{"addr": "127.0.0.1:%d" % h2c_port, "h2c_upgrade": True}]
    s = sluice_factory(listen=listen)
    r = curl(s, "h2c-upgrade", "/healthz")
    assert r.status == 200 and r.http_version == "2", r


# ---- no re-sent non-idempotent requests ----------------------------------

class DroppingUpstream:
    """Counts request heads; answers the first `answer` requests on each
    connection with 200 keep-alive, then reads the next head and closes
    without a word (the race a stale keep-alive connection loses)."""

    def __init__(self, answer=0):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.stop = False
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.settimeout(10)
        buf, served = b"", 0
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                with self.lock:
                    self.heads.append(head.split(b"\r\n")[0].decode())
                if served >= self.answer:
                    return
                served += 1
                c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                buf = b""  # these tests send no bodies on answered requests
        finally:
            c.close()

    def count(self, method):
        with self.lock:
            return sum(1 for h in self.heads if h.startswith(method + " "))

    def close(self):
        self.stop = True
        self.sock.close()


@pytest.fixture
def dropping():
    made = []

    def make(answer=0):
        d = DroppingUpstream(answer)
        made.append(d)
        return d
    yield make
    for d in made:
        d.close()


def proxy_to(sluice_factory, ports, **route):
    r = {"path": "/", "handler": "proxy", "upstream": "app"}
    r.update(route)
    return sluice_factory(
        workers=1,
        upstreams={"app": {"servers": ["127.0.0.1:%d" % p for p in ports], "retries": 2,
                           "fail_threshold": 0}},
        routes=[{"path": "/healthz", "match": "exact", "handler": "health", "check": "live"}, r])


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_not_resent(sluice_factory, dropping, method):
    a, b = dropping(), dropping()
    s = proxy_to(sluice_factory, [a.port, b.port])
    r = curl(s, "h1", "/x", "-X", method, "--data-binary", "payload")
    assert r.status == 502, r
    assert a.count(method) + b.count(method) == 1, (a.heads, b.heads)


def test_idempotent_without_body_is_retried(sluice_factory, dropping):
    a, b = dropping(), dropping()
    s = proxy_to(sluice_factory, [a.port, b.port])
    r = curl(s, "h1", "/x")
    assert r.status == 502, r
    # each server once: a retry never goes back to a server already tried
    assert a.count("GET") == 1 and b.count("GET") == 1, (a.heads, b.heads)


def test_put_with_body_not_resent(sluice_factory, dropping):
    a, b = dropping(), dropping()
    s = proxy_to(sluice_factory, [a.port, b.port])
    r = curl(s, "h1", "/x", "-X", "PUT", "--data-binary", "payload")
    assert r.status == 502, r
    assert a.count("PUT") + b.count("PUT") == 1, (a.heads, b.heads)


def test_post_not_resent_on_reused_keepalive(sluice_factory, dropping):
    """The upstream answers one request per connection, then drops the
    next: a POST that lands on the pooled connection is not sent again."""
    a = dropping(answer=1)
    s = proxy_to(sluice_factory, [a.port])
    assert curl(s, "h1", "/warm").status == 200
    time.sleep(0.2)
    r = curl(s, "h1", "/x", "-X", "POST", "--data-binary", "payload")
    assert r.status == 502, r
    assert a.count("POST") == 1, a.heads


def test_non_idempotent_retry_opt_in(sluice_factory, dropping):
    """retry_non_idempotent re-sends a POST whose body has not started to
    flow (a body is never buffered for replay)."""
    a, b = dropping(), dropping()
    s = proxy_to(sluice_factory, [a.port, b.port], retry_non_idempotent=True)
    r = curl(s, "h1", "/x", "-X", "POST")
    assert r.status == 502, r
    assert a.count("POST") == 1 and b.count("POST") == 1, (a.heads, b.heads)
    s2 = proxy_to(sluice_factory, [a.port, b.port])
    r = curl(s2, "h1", "/x", "-X", "POST")
    assert r.status == 502, r
    assert a.count("POST") + b.count("POST") == 3, (a.heads, b.heads)
