"""TLS client certificates (issue 9): listeners with tls.verify_client
("optional" / "require") and tls.client_ca; jobs owned by the certificate
(owner "tls_client"); the verified subject in the access log and forwarded
to upstreams (X-Client-Cert-Subject / -Sha256), never taken from a client.
Clients: curl --cert and openssl s_client; upstream: uvicorn."""

import hashlib
import os
import subprocess

import pytest

from conftest import ROUTES, curl, require
from test_60_proxy import Upstream, upstreams  # noqa: F401  (fixture)


def openssl(*args):
    r = subprocess.run(["openssl"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


class Pki:
    """A CA, two client certificates it signed, and one it did not."""

    def __init__(self, d):
        require("openssl")
        self.d = d
        self.ca, self.ca_key = self.p("ca.crt"), self.p("ca.key")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.ca_key, "-out", self.ca, "-days", "2", "-subj", "/CN=Test CA")
        self.alice = self.client("alice", signed=True)
        self.bob = self.client("bob", signed=True)
        self.mallory = self.client("mallory", signed=False)

    def p(self, name):
        return os.path.join(self.d, name)

    def client(self, cn, signed):
        key, crt, csr = self.p(cn + ".key"), self.p(cn + ".crt"), self.p(cn + ".csr")
        subj = "/O=Example Org/CN=" + cn
        if signed:
            openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", csr, "-subj", subj)
            openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                    "-CAcreateserial", "-out", crt, "-days", "2")
        else:
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", subj)
        der = openssl("x509", "-in", crt, "-outform", "DER")
        return {"cert": crt, "key": key, "sha256": hashlib.sha256(der).hexdigest(), "cn": cn}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(str(tmp_path_factory.mktemp("pki")))


def listen(verify, pki):
    def f(tls_port, h2c_port, certs):
        return [{"addr": "127.0.0.1:%d" % tls_port,
                 "tls": {"cert": certs.cert, "key": certs.key, "client_ca": pki.ca,
                         "verify_client": verify}},
                {"addr": "127.0.0.1:%d" % h2c_port}]
    return f


def server(sluice_factory, pki, verify="optional", up=None):
    routes = [
        {"path": "/v1/tick", "handler": "job", "executor": "tick", "reply": "async",
         "owner": "tls_client"},
        {"path": "/jobs", "handler": "jobs_api", "owner": "tls_client"},
    ]
    extra = {}
    if up:
        routes.append({"path": "/app/", "handler": "proxy", "upstream": "app",
                       "strip_prefix": "/app", "replace_prefix": "/seen"})
        extra["upstreams"] = {"app": {"servers": ["127.0.0.1:%d" % up.port]}}
    return sluice_factory(
        listen=listen(verify, pki),
        executors={"tick": {"type": "builtin", "kind": "ticker", "max_events": 10000}},
        routes=routes + ROUTES, **extra)


def with_cert(c):
    return ["--cert", c["cert"], "--key", c["key"]]


@pytest.mark.parametrize("mode", ["h1-tls", "h2-tls"])
def test_jobs_owned_by_client_certificate(sluice_factory, pki, mode):
    s = server(sluice_factory, pki)
    r = curl(s, mode, "/v1/tick?n=1000&interval_ms=50", *with_cert(pki.alice))
    assert r.status == 202, r
    jid = r.json()["id"]
    assert curl(s, mode, "/jobs/" + jid, *with_cert(pki.alice)).status == 200
    assert curl(s, mode, "/jobs/" + jid, *with_cert(pki.bob)).status == 404
    assert curl(s, mode, "/jobs/" + jid).status == 404  # no certificate
    r = curl(s, mode, "/v1/tick?n=1")  # optional: no certificate, no owner
    assert r.status == 401, r
    mine = [j["id"] for j in curl(s, mode, "/jobs", *with_cert(pki.alice)).json()["jobs"]]
    assert mine == [jid]
    assert curl(s, mode, "/jobs/" + jid, *with_cert(pki.alice), "-X", "DELETE").status == 202
    log = [x for x in s.access_log() if x.get("path") == "/v1/tick?n=1000&interval_ms=50"]
    assert log and log[0]["client_cert"] == "CN=alice,O=Example Org", log


def test_untrusted_certificate_refused(sluice_factory, pki):
    s = server(sluice_factory, pki)
    r = curl(s, "h2-tls", "/healthz", *with_cert(pki.mallory))
    assert r.rc != 0 and r.status in (None, 0), r  # the handshake fails
    assert curl(s, "h2-tls", "/healthz").status == 200  # none at all is fine ("optional")


def test_require_mode(sluice_factory, pki):
    s = server(sluice_factory, pki, verify="require")
    r = curl(s, "h2-tls", "/healthz")
    assert r.rc != 0, r
    assert curl(s, "h2-tls", "/healthz", *with_cert(pki.bob)).status == 200
    # openssl s_client sees the CA among the acceptable client CA names
    out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % s.tls_port,
                          "-servername", "localhost", "-cert", pki.bob["cert"], "-key",
                          pki.bob["key"]], input=b"", stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=20).stdout.decode()
    assert "Acceptable client certificate CA names" in out and "CN = Test CA" in out, out


def test_subject_forwarded_not_forged(sluice_factory, pki, upstreams):  # noqa: F811
    up = upstreams()
    s = server(sluice_factory, pki, up=up)
    r = curl(s, "h2-tls", "/app/x", *with_cert(pki.alice), "-H", "X-Client-Cert-Subject: CN=root")
    h = r.json()["headers"]
    assert h["x-client-cert-subject"] == "CN=alice,O=Example Org", h
    assert h["x-client-cert-sha256"] == pki.alice["sha256"], h
    r = curl(s, "h2-tls", "/app/x", "-H", "X-Client-Cert-Subject: CN=root",
             "-H", "X-Client-Cert-Sha256: 00")
    h = r.json()["headers"]
    assert "x-client-cert-subject" not in h and "x-client-cert-sha256" not in h, h


def test_config_errors(tmp_path, pki):
    from conftest import SLUICE_BIN
    import json
    cfg = {"listen": [{"addr": "127.0.0.1:0", "tls": {"cert": "x", "key": "y",
                                                       "verify_client": "require"}}]}
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg))
    r = subprocess.run([SLUICE_BIN, "-t", "-c", str(p)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    assert r.returncode != 0
    assert b"listen[0].tls.verify_client: needs tls.client_ca" in r.stderr, r.stderr
