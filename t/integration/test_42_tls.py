"""TLS: ALPN selection, no-ALPN fallback, TLS 1.2 and 1.3, SNI among two
certificates, session resumption, handshake timeout, garbage input."""

import json
import os
import socket
import ssl
import tempfile
import time

import pytest

import h1raw
import h2raw
from conftest import SLOW, Certs, client_ssl, curl, module_server, require, run


def tls_connect(port, alpn=None, sni="localhost", min_v=None, max_v=None, session=None,
                timeout=10, ctx=None):
    if ctx is None:
        ctx = client_ssl(alpn=alpn, min_version=min_v, max_version=max_v)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=sni, session=session)


def http11_over(sock, path="/_h/anything"):
    sock.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path)
                 .encode())
    data = b""
    sock.settimeout(10)
    while True:
        d = sock.recv(65536)
        if not d:
            break
        data += d
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def test_alpn_h2_selected(sluice):
    r = curl(sluice, "h2-tls", "/_h/anything")
    assert r.rc == 0, r
    assert r.http_version == "2"
    j = r.json()
    assert j["protocol"] == "HTTP/2"
    assert j["tls"]["alpn"] == "h2"


def test_alpn_h2_preferred_over_http11(sluice):
    s = tls_connect(sluice.tls_port, alpn=["http/1.1", "h2"])
    try:
        assert s.selected_alpn_protocol() == "h2"
    finally:
        s.close()


def test_alpn_http11_only(sluice):
    r = curl(sluice, "h1-tls", "/_h/anything")
    assert r.rc == 0, r
    assert r.http_version == "1.1"
    j = r.json()
    assert j["protocol"] == "HTTP/1.1"
    assert j["tls"]["alpn"] == "http/1.1"
    s = tls_connect(sluice.tls_port, alpn=["http/1.1"])
    try:
        assert s.selected_alpn_protocol() == "http/1.1"
    finally:
        s.close()


def test_no_alpn_gets_http11(sluice):
    s = tls_connect(sluice.tls_port, alpn=None)
    try:
        assert s.selected_alpn_protocol() is None
        head, body = http11_over(s)
    finally:
        s.close()
    assert head.startswith("HTTP/1.1 200"), head
    j = json.loads(body[body.index(b"{"):body.rindex(b"}") + 1]) if b"{" in body else None
    assert j is not None, body[:300]
    assert j["protocol"] == "HTTP/1.1"
    assert j["tls"]["alpn"] in (None, "")


def test_no_alpn_openssl_s_client(sluice):
    require("openssl")
    r = run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % sluice.tls_port,
             "-servername", "localhost", "-quiet"], timeout=20,
            input=b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    out = r.stdout.decode("latin-1")
    assert out.startswith("HTTP/1.1 200"), (out[:300], r.stderr[-500:])


def test_unknown_alpn_only(sluice):
    """A client offering only protocols sluice does not speak either gets no
    ALPN answer and HTTP/1.1, or a no_application_protocol alert; never h2."""
    try:
        s = tls_connect(sluice.tls_port, alpn=["spdy/3", "foo"])
    except ssl.SSLError as e:
        assert "no application protocol" in str(e).lower() or "alert" in str(e).lower(), e
        return
    try:
        assert s.selected_alpn_protocol() in (None,)
    finally:
        s.close()


@pytest.mark.parametrize("ver,name", [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                                      (ssl.TLSVersion.TLSv1_3, "TLSv1.3")])
def test_tls_versions_python(sluice, ver, name):
    s = tls_connect(sluice.tls_port, alpn=["http/1.1"], min_v=ver, max_v=ver)
    try:
        assert s.version() == name
        head, body = http11_over(s)
    finally:
        s.close()
    assert head.startswith("HTTP/1.1 200"), head
    j = json.loads(body[body.index(b"{"):body.rindex(b"}") + 1])
    assert j["tls"]["version"] == name


@pytest.mark.parametrize("args,name", [(["--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2"),
                                       (["--tlsv1.3"], "TLSv1.3")])
def test_tls_versions_curl(sluice, args, name):
    r = curl(sluice, "h2-tls", "/_h/anything", *args)
    assert r.rc == 0, r
    assert r.http_version == "2"
    assert r.json()["tls"]["version"] == name


def test_tls11_refused(sluice):
    ctx = client_ssl()
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("local OpenSSL cannot offer TLS 1.1")
    raw = socket.create_connection(("127.0.0.1", sluice.tls_port), timeout=10)
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.close()
    raw.close()
    sluice.assert_up()


# ---------------------------------------------------------------------------
# SNI: two certificates on one listener
# ---------------------------------------------------------------------------
def sni_listen(tls_port, h2c_port, certs):
    return [
        {"addr": "127.0.0.1:%d" % tls_port,
         "tls": {"certs": [
             {"cert": certs.cert, "key": certs.key},
             {"cert": certs.alt_cert, "key": certs.alt_key},
         ]}},
        {"addr": "127.0.0.1:%d" % h2c_port, "h2c": True},
    ]


@pytest.fixture(scope="module")
def sni_server(tmp_path_factory, certs):
    with module_server(tmp_path_factory, certs, "sni", listen=sni_listen) as s:
        yield s


def peer_der(port, sni):
    s = tls_connect(port, alpn=["h2"], sni=sni)
    try:
        return s.getpeercert(binary_form=True)
    finally:
        s.close()


def test_sni_picks_certificate(sni_server, certs):
    assert peer_der(sni_server.tls_port, "localhost") == Certs.der(certs.cert)
    assert peer_der(sni_server.tls_port, "alt.test") == Certs.der(certs.alt_cert)
    # unknown name: the first (default) certificate
    assert peer_der(sni_server.tls_port, "other.example") == Certs.der(certs.cert)


def test_sni_verifies_with_ca(sni_server, certs):
    """A verifying client asking for alt.test accepts the chain it gets."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certs.alt_cert)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    raw = socket.create_connection(("127.0.0.1", sni_server.tls_port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="alt.test")
    try:
        subj = dict(x[0] for x in s.getpeercert()["subject"])
        assert subj["commonName"] == "alt.test"
    finally:
        s.close()


def test_sni_openssl_s_client(sni_server):
    require("openssl")
    r = run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % sni_server.tls_port,
             "-servername", "alt.test", "-showcerts"], timeout=20, input=b"")
    out = r.stdout.decode("latin-1")
    assert "CN = alt.test" in out or "CN=alt.test" in out, out[:1500]


def test_sni_reported_by_harness(sni_server):
    r = curl(sni_server, "h2-tls", "/_h/anything")
    assert r.rc == 0, r
    assert r.json()["tls"]["sni"] == "localhost"


# ---------------------------------------------------------------------------
# session resumption
# ---------------------------------------------------------------------------
def test_session_resumption_tls12_openssl(sluice):
    require("openssl")
    d = tempfile.mkdtemp(prefix="sess-")
    sess = os.path.join(d, "sess.pem")
    base = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % sluice.tls_port,
            "-servername", "localhost", "-tls1_2"]
    r1 = run(base + ["-sess_out", sess], timeout=20, input=b"")
    assert os.path.exists(sess) and os.path.getsize(sess) > 0, r1.stdout[-800:]
    r2 = run(base + ["-sess_in", sess], timeout=20, input=b"")
    out = r2.stdout.decode("latin-1")
    assert "Reused" in out, out[-1500:]


@pytest.mark.parametrize("ver", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_resumption_python(sluice, ver):
    # a session resumes only through the SSLContext that made it
    ctx = client_ssl(alpn=["http/1.1"], min_version=ver, max_version=ver)
    s = tls_connect(sluice.tls_port, ctx=ctx)
    # TLS 1.3 tickets arrive after the handshake: finish one exchange first
    head, _ = http11_over(s, "/healthz")
    assert head.startswith("HTTP/1.1 200")
    session = s.session
    s.close()
    assert session is not None
    s2 = tls_connect(sluice.tls_port, ctx=ctx, session=session)
    try:
        assert s2.session_reused, "session not resumed (%s)" % ver
        head, _ = http11_over(s2, "/healthz")
        assert head.startswith("HTTP/1.1 200")
    finally:
        s2.close()


# ---------------------------------------------------------------------------
# robustness
# ---------------------------------------------------------------------------
def test_handshake_timeout(sluice_factory):
    s = sluice_factory(timeouts={"tls_handshake_s": 1})
    c = socket.create_connection(("127.0.0.1", s.tls_port), timeout=10)
    c.settimeout(5 * SLOW)
    t0 = time.monotonic()
    try:
        d = c.recv(100)  # we never send a ClientHello
    except ConnectionResetError:
        d = b""
    took = time.monotonic() - t0
    c.close()
    assert d == b"", d
    assert 0.5 < took < 4 * SLOW, took
    s.assert_up()


def test_garbage_on_tls_port(sluice):
    with socket.create_connection(("127.0.0.1", sluice.tls_port), timeout=10) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(2000))
        c.settimeout(5 * SLOW)
        got = b""
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                got += d
        except ConnectionResetError:
            pass
        except socket.timeout:
            pytest.fail("connection not closed after garbage")
        assert not got.startswith(b"HTTP/1.1 200")
    sluice.assert_up()


def test_h2_over_tls_python(sluice):
    with h2raw.H2Client(sluice.tls_port, tls=True) as c:
        st = c.get("/_h/anything")
        assert st.status == 200
        assert json.loads(bytes(st.data))["tls"]["alpn"] == "h2"


def test_h1_keepalive_over_tls(sluice):
    with h1raw.H1Conn(sluice.tls_port, tls=True) as c:
        for i in range(3):
            c.send(h1raw.request("GET", "/_h/anything?i=%d" % i))
            r = c.read_response()
            assert r.status == 200
            assert r.json()["query"]["i"] == str(i)
