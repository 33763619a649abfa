"""The httpbin-compatible harness surface (issue 19, docs/harness.md
"httpbin API"), driven the way client suites use httpbin: python3-httpx
(HTTP/1.1 cleartext and HTTP/2 over TLS) and python3-requests, checking
the response shapes httpbin documents."""

import base64
import hashlib
import json
import re
import struct
import time
import xml.etree.ElementTree as ET
import zlib

import httpx
import pytest
import requests

from conftest import SLOW
from h2raw import harness_bytes


@pytest.fixture(scope="module", params=["h1", "h2"])
def client(request, sluice):
    """An httpx client on the harness: HTTP/1.1 cleartext, or HTTP/2 over
    TLS (ALPN h2)."""
    if request.param == "h1":
        c = httpx.Client(base_url="http://127.0.0.1:%d/_h" % sluice.h2c_port, timeout=30 * SLOW)
    else:
        c = httpx.Client(base_url="https://127.0.0.1:%d/_h" % sluice.tls_port, http2=True,
                         verify=False, timeout=30 * SLOW)
    c.proto = request.param
    yield c
    c.close()


def base(sluice):
    return "http://127.0.0.1:%d/_h" % sluice.h2c_port


def version(c, r):
    assert r.http_version == ("HTTP/2" if c.proto == "h2" else "HTTP/1.1")


# --------------------------------------------------------------------------
def test_get_shape(client):
    r = client.get("/get", params=[("a", "1"), ("a", "2"), ("b", "x y")],
                   headers={"X-Custom": "v"})
    version(client, r)
    j = r.json()
    assert set(j) == {"args", "headers", "origin", "url"}
    assert j["args"] == {"a": ["1", "2"], "b": "x y"}
    assert j["headers"]["X-Custom"] == "v" and "Host" in j["headers"]
    assert j["origin"] == "127.0.0.1"
    assert j["url"].endswith("/_h/get?a=1&a=2&b=x+y")
    assert client.post("/get").status_code == 405


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_body_methods(client, method):
    send = getattr(client, method) if method != "delete" else None
    # JSON body
    if method == "delete":
        r = client.request("DELETE", "/delete", json={"k": [1, 2]})
    else:
        r = send("/" + method, json={"k": [1, 2]})
    j = r.json()
    assert r.status_code == 200
    assert set(j) == {"args", "data", "files", "form", "headers", "json", "origin", "url"}
    assert j["json"] == {"k": [1, 2]} and json.loads(j["data"]) == {"k": [1, 2]}
    # a form: fields in form, data empty
    r = client.request(method.upper(), "/" + method, data={"f": "1", "g": "two words"})
    j = r.json()
    assert j["form"] == {"f": "1", "g": "two words"} and j["data"] == "" and j["json"] is None
    # bytes that are not UTF-8 come back as a data: URL
    raw = bytes(range(256))
    j = client.request(method.upper(), "/" + method, content=raw).json()
    prefix = "data:application/octet-stream;base64,"
    assert j["data"].startswith(prefix) and base64.b64decode(j["data"][len(prefix):]) == raw
    other = "put" if method == "post" else "post"
    assert client.request(method.upper(), "/" + other).status_code == 405


def test_requests_client(sluice):
    b = base(sluice)
    r = requests.post(b + "/post", params={"q": "1"}, data=b"hello", timeout=30)
    j = r.json()
    assert j["args"] == {"q": "1"} and j["data"] == "hello"
    assert j["headers"]["User-Agent"].startswith("python-requests/")
    assert requests.get(b + "/user-agent", headers={"User-Agent": "ua/1"}).json() == \
        {"user-agent": "ua/1"}
    assert requests.get(b + "/ip").json() == {"origin": "127.0.0.1"}
    assert requests.get(b + "/headers", headers={"X-A": "b"}).json()["headers"]["X-A"] == "b"
    u = requests.get(b + "/uuid").json()["uuid"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", u)


def test_status_codes(client):
    assert client.get("/status/418").status_code == 418
    r = client.get("/status/302")
    assert r.status_code == 302 and r.headers["location"] == "/_h/redirect/1"
    r = client.get("/status/401")
    assert r.headers["www-authenticate"] == 'Basic realm="Fake Realm"'
    # a weighted list; weight 0 never comes
    seen = {client.get("/status/200:0,503:1,504").status_code for _ in range(30)}
    assert seen <= {503, 504} and len(seen) == 2
    assert client.get("/status/99,200").status_code == 400


def test_response_headers(client):
    r = client.get("/response-headers", params=[("X-A", "1"), ("X-A", "2"),
                                                  ("Set-Cookie", "k=v"),
                                                  ("Content-Type", "text/plain")])
    assert r.headers.get_list("x-a") == ["1", "2"]
    assert r.headers["set-cookie"] == "k=v" and r.headers["content-type"] == "text/plain"
    assert r.json() == {"X-A": ["1", "2"], "Set-Cookie": "k=v", "Content-Type": "text/plain"}
    assert client.get("/response-headers", params={"Transfer-Encoding": "x"}).status_code == 400


def test_redirects(client, sluice):
    r = client.get("/redirect/3", follow_redirects=True)
    assert r.status_code == 200 and len(r.history) == 3
    assert [h.headers["location"] for h in r.history] == [
        "/_h/relative-redirect/2", "/_h/relative-redirect/1", "/_h/get"]
    r = client.get("/absolute-redirect/2", follow_redirects=True)
    assert len(r.history) == 2 and r.history[0].headers["location"].startswith(
        ("http://", "https://"))
    r = client.get("/redirect/2", params={"absolute": "true"})
    assert r.headers["location"].endswith("/_h/absolute-redirect/1")
    r = client.get("/redirect-to", params={"url": "/_h/get?x=1", "status_code": "307"})
    assert r.status_code == 307 and r.headers["location"] == "/_h/get?x=1"
    own = str(client.base_url).rsplit("/_h", 1)[0]
    assert client.get("/redirect-to", params={"url": own + "/_h/ip"}).status_code == 302
    for evil in ("http://example.com/", "//example.com/x", "https://127.0.0.1:1/",
                 "/\\example.com", "javascript:alert(1)"):
        assert client.get("/redirect-to", params={"url": evil}).status_code == 400, evil
    # requests follows them too
    r = requests.get(base(sluice) + "/redirect/2", timeout=30)
    assert r.status_code == 200 and len(r.history) == 2 and r.url.endswith("/_h/get")


def test_cookies(sluice):
    b = base(sluice)
    s = requests.Session()
    r = s.get(b + "/cookies/set", params={"a": "1", "b": "two"}, timeout=30)
    assert r.status_code == 200 and r.json() == {"cookies": {"a": "1", "b": "two"}}
    r = s.get(b + "/cookies/delete", params={"a": ""}, timeout=30)
    assert r.json() == {"cookies": {"b": "two"}}
    assert requests.get(b + "/cookies/set", params={"bad name": "x"},
                        allow_redirects=False).status_code == 400


def test_auth(client):
    assert client.get("/basic-auth/alice/s3cret", auth=("alice", "s3cret")).json() == \
        {"authenticated": True, "user": "alice"}
    r = client.get("/basic-auth/alice/s3cret", auth=("alice", "wrong"))
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert client.get("/bearer", headers={"Authorization": "Bearer tok"}).json() == \
        {"authenticated": True, "token": "tok"}
    r = client.get("/bearer")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("name,flag,enc", [("gzip", "gzipped", "gzip"),
                                           ("deflate", "deflated", "deflate"),
                                           ("brotli", "brotli", "br")])
def test_compressed(client, sluice, name, flag, enc):
    r = client.get("/" + name)  # httpx decodes gzip, deflate and (python3-brotli) br
    assert r.headers["content-encoding"] == enc
    j = r.json()
    assert j[flag] is True and j["method"] == "GET" and "Host" in j["headers"]
    r = requests.get(base(sluice) + "/" + name, timeout=30)
    assert r.json()[flag] is True


def test_documents(client):
    assert client.get("/json").json()["slideshow"]["title"] == "Sample Slide Show"
    root = ET.fromstring(client.get("/xml").content)
    assert root.tag == "slideshow" and len(root.findall("slide")) == 2
    r = client.get("/html")
    assert "Moby-Dick" in r.text and r.headers["content-type"].startswith("text/html")
    r = client.get("/encoding/utf8")
    assert "charset=utf-8" in r.headers["content-type"] and "Σὲ" in r.text
    assert client.get("/base64/SFRUUEJJTiBpcyBhd2Vzb21l").text == "HTTPBIN is awesome"
    assert client.get("/base64/" + base64.urlsafe_b64encode(b"\xfb\xff?").decode()).content == \
        b"\xfb\xff?"
    r = client.get("/links/5/2")
    hrefs = re.findall(r"href='([^']+)'>(\d+)<", r.text)
    assert [h[1] for h in hrefs] == ["0", "1", "3", "4"]
    assert all(h[0] == "/_h/links/5/%s" % h[1] for h in hrefs)


def test_png(client):
    r = client.get("/image/png")
    assert r.headers["content-type"] == "image/png"
    d = r.content
    assert d[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, kinds = 8, b"", []
    while pos < len(d):
        n, = struct.unpack(">I", d[pos:pos + 4])
        kind, body = d[pos + 4:pos + 8], d[pos + 8:pos + 8 + n]
        crc, = struct.unpack(">I", d[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) == crc, kind
        kinds.append(kind)
        if kind == b"IHDR":
            w, h, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (w, h, depth, colour) == (64, 64, 8, 2)
        idat += body if kind == b"IDAT" else b""
        pos += 12 + n
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    assert len(zlib.decompress(idat)) == 64 * (1 + 64 * 3)


def test_cache_and_etag(client):
    r = client.get("/cache")
    assert r.status_code == 200 and "etag" in r.headers and "last-modified" in r.headers
    assert client.get("/cache", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    assert client.get("/cache", headers={"If-Modified-Since": r.headers["last-modified"]}) \
        .status_code == 304
    assert client.get("/cache/30").headers["cache-control"] == "public, max-age=30"
    r = client.get("/etag/abc")
    assert r.status_code == 200 and r.headers["etag"] == '"abc"'
    assert client.get("/etag/abc", headers={"If-None-Match": '"abc"'}).status_code == 304
    assert client.get("/etag/abc", headers={"If-None-Match": "*"}).status_code == 304
    assert client.get("/etag/abc", headers={"If-Match": '"zzz"'}).status_code == 412
    assert client.get("/etag/abc", headers={"If-Match": '"abc"'}).status_code == 200


def test_range(client):
    r = client.get("/range/100")
    assert r.content == (b"abcdefghijklmnopqrstuvwxyz" * 4)[:100]
    assert r.headers["accept-ranges"] == "bytes" and r.headers["etag"] == '"range100"'
    r = client.get("/range/100", headers={"Range": "bytes=26-30"})
    assert r.status_code == 206 and r.content == b"abcde"
    assert r.headers["content-range"] == "bytes 26-30/100"
    r = client.get("/range/100", headers={"Range": "bytes=200-"})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */100"


def test_drip_and_stream_bytes(client):
    t0 = time.monotonic()
    r = client.get("/drip", params={"numbytes": "20", "duration": "1", "code": "201"})
    took = time.monotonic() - t0
    assert r.status_code == 201 and r.content == b"*" * 20
    assert r.headers["content-length"] == "20"
    assert 0.8 <= took < 5 * SLOW, took
    t0 = time.monotonic()
    r = client.get("/drip", params={"numbytes": "3", "duration": "0", "delay": "0.5"})
    assert r.content == b"***" and time.monotonic() - t0 >= 0.45
    assert client.get("/drip", params={"duration": "-1"}).status_code == 400
    r = client.get("/stream-bytes/100000", params={"seed": "7", "chunk_size": "1000"})
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(harness_bytes(100000, 7)).digest()
    if client.proto == "h1":
        assert r.headers.get("transfer-encoding") == "chunked"


def test_body_bound(sluice_factory):
    s = sluice_factory(routes=[{"path": "/healthz", "handler": "health", "check": "live"},
                               {"path": "/_h/", "handler": "harness", "max_body_bytes": 1000}])
    b = "http://127.0.0.1:%d/_h" % s.h2c_port
    assert requests.post(b + "/post", data=b"x" * 1000, timeout=30).status_code == 200
    assert requests.post(b + "/post", data=b"x" * 1001, timeout=30).status_code == 413
    with httpx.Client(base_url="https://127.0.0.1:%d/_h" % s.tls_port, http2=True,
                      verify=False) as c:
        assert c.post("/post", content=b"y" * 5000).status_code == 413
        assert c.get("/get").status_code == 200  # the connection goes on
