"""JWT bearer tokens verified by sluice (issue 16): keys made here with
openssl (RSA 2048, EC P-256, Ed25519), tokens signed with openssl, served
as PEM and as a JWKS. Valid tokens pass with their claims copied onto the
request (the harness's anything endpoint shows them); expired, early,
wrong-audience, wrong-issuer, forged, alg none and the HS256-with-the-
public-key trick are refused with 401. A stream ends when its token
expires. Clients: python http.client."""

import base64
import hashlib
import hmac
import http.client
import json
import subprocess
import time

import pytest

from conftest import SLOW

ISS, AUD = "https://issuer.test", "sluice"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def openssl(*args, data=None):
    r = subprocess.run(["openssl"] + list(args), input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def der_to_raw(der):
    """An ECDSA signature from DER (SEQUENCE of two INTEGERs) to r || s."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
        i += 2 + n
    return out


class Keys:
    def __init__(self, d):
        self.d = d
        self.path = {}
        for name, args in (("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                           ("ec", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                           ("ed", ["-algorithm", "ED25519"])):
            key = str(d / (name + ".pem"))
            openssl("genpkey", *args, "-out", key)
            self.path[name] = key
        self.pub = {n: openssl("pkey", "-in", p, "-pubout") for n, p in self.path.items()}
        self.pem_file = d / "keys.pem"
        self.pem_file.write_bytes(b"".join(self.pub.values()))
        self.jwks_file = d / "jwks.json"
        self.jwks_file.write_text(json.dumps({"keys": [self.jwk(n) for n in self.path]}))

    def jwk(self, name):
        der = openssl("pkey", "-in", self.path[name], "-pubout", "-outform", "DER")
        if name == "ed":
            return {"kty": "OKP", "crv": "Ed25519", "x": b64u(der[-32:]), "kid": "k-ed"}
        if name == "ec":
            return {"kty": "EC", "crv": "P-256", "x": b64u(der[-64:-32]), "y": b64u(der[-32:]),
                    "kid": "k-ec"}
        mod = openssl("pkey", "-in", self.path[name], "-pubout", "-text_pub", "-noout")
        hexmod = openssl("rsa", "-in", self.path[name], "-modulus", "-noout").decode()
        assert b"65537" in mod
        n = bytes.fromhex(hexmod.strip().split("=", 1)[1])
        return {"kty": "RSA", "n": b64u(n), "e": "AQAB", "kid": "k-rsa", "use": "sig"}

    def sign(self, name, claims, header=None):
        alg = {"rsa": "RS256", "ec": "ES256", "ed": "EdDSA"}[name]
        h = dict({"alg": alg, "typ": "JWT", "kid": "k-" + name}, **(header or {}))
        si = (b64u(json.dumps(h).encode()) + "." + b64u(json.dumps(claims).encode())).encode()
        if name == "ed":
            data = self.d / "si.bin"
            data.write_bytes(si)
            sig = openssl("pkeyutl", "-sign", "-inkey", self.path[name], "-rawin", "-in",
                          str(data))
        else:
            sig = openssl("dgst", "-sha256", "-sign", self.path[name], data=si)
            if name == "ec":
                sig = der_to_raw(sig)
        return si.decode() + "." + b64u(sig)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(tmp_path_factory.mktemp("jwt"))


def claims(**over):
    now = int(time.time())
    return dict({"iss": ISS, "aud": AUD, "sub": "alice", "tenant": 7, "exp": now + 600,
                 "nbf": now - 10}, **over)


def server(sluice_factory, keys, **jwt):
    def auth(file):
        return {"jwt": dict({"keys_file": str(file), "issuer": ISS, "audience": AUD,
                             "leeway_s": 1, "claims_to_headers": {"sub": "x-user",
                                                                  "tenant": "x-tenant"}},
                            **jwt)}
    return sluice_factory(
        executors={"tick": {"type": "builtin", "kind": "ticker", "max_events": 100000}},
        jobs={"heartbeat_s": 1},
        routes=[{"path": "/pem/", "handler": "harness", "auth": auth(keys.pem_file)},
                {"path": "/jwks/", "handler": "harness", "auth": auth(keys.jwks_file)},
                {"path": "/stream", "handler": "job", "executor": "tick",
                 "auth": auth(keys.jwks_file)},
                {"path": "/healthz", "handler": "health"}])


def get(s, path, token=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", s.h2c_port, timeout=10 * SLOW)
    h = dict(headers or {})
    if token is not None:
        h["authorization"] = "Bearer " + token
    c.request("GET", path, headers=h)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def test_valid_tokens_pass_with_their_claims(sluice_factory, keys):
    s = server(sluice_factory, keys)
    for route in ("/pem/anything", "/jwks/anything"):
        for alg in ("rsa", "ec", "ed"):
            st, _, body = get(s, route, keys.sign(alg, claims()), {"x-user": "mallory"})
            assert st == 200, (route, alg, body)
            seen = json.loads(body)["headers"]
            assert seen["x-user"] == "alice" and seen["x-tenant"] == "7", seen
    # an audience list holds the audience too
    assert get(s, "/jwks/anything", keys.sign("ed", claims(aud=["other", AUD])))[0] == 200


def test_bad_tokens_are_refused(sluice_factory, keys):
    s = server(sluice_factory, keys)
    now = int(time.time())
    good = keys.sign("ec", claims())
    h, p, sig = good.split(".")
    cases = {
        "expired": keys.sign("rsa", claims(exp=now - 60)),
        "early": keys.sign("rsa", claims(nbf=now + 600)),
        "no exp": keys.sign("ed", {k: v for k, v in claims().items() if k != "exp"}),
        "audience": keys.sign("ec", claims(aud="someone-else")),
        "issuer": keys.sign("ed", claims(iss="https://evil.test")),
        "signature": h + "." + b64u(json.dumps(claims(sub="root")).encode()) + "." + sig,
        "alg none": b64u(b'{"alg":"none","typ":"JWT"}') + "." + p + ".",
        "alg none, sig": b64u(b'{"alg":"none"}') + "." + p + "." + sig,
        "garbage": "not.a.token",
        "two parts": h + "." + p,
    }
    # HS256 with the public key as the secret (the algorithm confusion trick)
    for name in ("rsa", "ec", "ed"):
        si = b64u(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k-" + name}).encode()) + \
            "." + p
        mac = hmac.new(keys.pub[name], si.encode(), hashlib.sha256).digest()
        cases["hs256 with the %s public key" % name] = si + "." + b64u(mac)
    # a kid that names another key: the right signature under the wrong kid
    cases["kid of another key"] = keys.sign("ec", claims(), header={"kid": "k-ed"})
    for why, token in cases.items():
        st, hdrs, body = get(s, "/jwks/anything", token)
        assert st == 401, (why, st, body)
        assert hdrs["www-authenticate"].startswith('Bearer error="invalid_token"'), why
        assert json.loads(body)["error"] == "invalid_token", why
    st, hdrs, _ = get(s, "/jwks/anything")  # no token at all
    assert st == 401 and hdrs["www-authenticate"] == "Bearer"


def test_stream_ends_when_its_token_expires(sluice_factory, keys):
    s = server(sluice_factory, keys)
    token = keys.sign("ed", claims(exp=int(time.time()) + 2))  # + leeway 1 s
    c = http.client.HTTPConnection("127.0.0.1", s.h2c_port, timeout=10 * SLOW)
    c.request("GET", "/stream?n=100000&interval_ms=50",
              headers={"authorization": "Bearer " + token, "accept": "text/event-stream"})
    r = c.getresponse()
    assert r.status == 200
    t0 = time.monotonic()
    lines = []
    while True:
        line = r.readline()
        if not line:
            break
        lines.append(line)
    took = time.monotonic() - t0
    c.close()
    assert 1 < took < 4 * SLOW, took
    assert b'data: {"error":"access revoked"}\n' in lines[-3:]


def test_jwt_config_errors(tmp_path, keys):
    from test_10_config import check, write
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}))
    short_rsa = tmp_path / "rsa1024.pem"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out",
            str(tmp_path / "k.pem"))
    short_rsa.write_bytes(openssl("pkey", "-in", str(tmp_path / "k.pem"), "-pubout"))
    cases = [({"keys_file": str(bad)}, "not a usable key"),
             ({"keys_file": str(short_rsa)}, "not a usable key"),
             ({"keys_file": str(tmp_path / "missing")}, "cannot open"),
             ({"keys_file": str(keys.pem_file), "leway_s": 3}, 'did you mean "leeway_s"'),
             ({"keys_file": str(keys.pem_file), "claims_to_headers": {"sub": "host"}},
              "host cannot be set")]
    for jwt, msg in cases:
        cfg = {"routes": [{"path": "/", "handler": "return", "auth": {"jwt": jwt}}]}
        r = check(write(tmp_path, "c.json", json.dumps(cfg)))
        assert r.returncode == 1 and msg in r.stderr.decode(), (jwt, r.stderr.decode())
