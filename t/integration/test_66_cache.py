"""The HTTP cache (issue 18): sluice with a cached proxy route in front of a
real origin (uvicorn, or hypercorn over h2c, running apps/cache_app.py,
which counts its requests per path). Clients: curl (HTTP/1.1, h2c, h2 over
TLS), raw HTTP/1.1 sockets in threads, the Prometheus text parser."""

import hashlib
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import SLOW, curl, free_port, require, wait_for
from test_60_proxy import Upstream
import h1raw

MODES = ["h1", "h2c", "h2-tls"]
TOKEN = "purge-token-0123456789"


def pattern(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


class Origin(Upstream):
    """apps/cache_app.py under uvicorn (HTTP/1.1; its own Date header,
    uvicorn 0.17 keeps one per connection) or hypercorn (h2c)."""

    def __init__(self, kind="uvicorn"):
        super().__init__(kind, app="cache_app:app",
                         args=["--no-date-header"] if kind == "uvicorn" else [])

    def count(self, path):
        return self.stats().get(path, 0)


@pytest.fixture
def origins():
    started = []

    def make(kind="uvicorn"):
        o = Origin(kind).start()
        started.append(o)
        return o
    yield make
    for o in started:
        o.stop()


def cached_server(sluice_factory, tmp_path, origin, cache=None, zone=None, protocol=None,
                  **over):
    token = tmp_path / "purge.token"
    token.write_text(TOKEN + "\n")
    up = {"servers": ["127.0.0.1:%d" % origin.port]}
    if protocol:
        up["protocol"] = protocol
    routes = [{"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
              {"path": "/metrics", "match": "exact", "handler": "metrics"},
              {"path": "/_cache/purge", "match": "exact", "handler": "cache_purge",
               "zone": "main", "admin_token_file": str(token)},
              {"path": "/r/", "handler": "proxy", "upstream": "app",
               "cache": dict({"zone": "main"}, **(cache or {}))},
              {"path": "/", "handler": "proxy", "upstream": "app"}]
    return sluice_factory(upstreams={"app": up},
                          caches={"main": dict({"memory_bytes": 64 << 20}, **(zone or {}))},
                          routes=routes, **over)


def get(s, path, *extra, mode="h1"):
    r = curl(s, mode, path, *extra)
    assert r.rc == 0, r
    return r


# --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_hits_and_misses_by_cache_control(sluice_factory, tmp_path, origins, mode):
    o = origins()
    s = cached_server(sluice_factory, tmp_path, o)
    p = "/r/fresh?cc=max-age%3D60&size=5000"
    r1 = get(s, p, mode=mode)
    assert r1.status == 200 and r1.body == pattern(5000)
    assert "fwd=uri-miss" in r1.header("cache-status") and "stored" in r1.header("cache-status")
    for _ in range(3):
        r = get(s, p, mode=mode)
        assert r.status == 200 and r.body == pattern(5000)
        assert r.header("cache-status").startswith("sluice; hit; ttl="), r.headers
        assert r.header("x-count") == "1" and int(r.header("age")) <= 60
    assert o.count("/r/fresh") == 1
    # s-maxage wins for a shared cache; max-age=0 alone is stale at once
    get(s, "/r/smax?cc=max-age%3D0,s-maxage%3D60", mode=mode)
    assert "hit" in get(s, "/r/smax?cc=max-age%3D0,s-maxage%3D60", mode=mode).header(
        "cache-status")
    # no-store and no lifetime: every request goes upstream
    for q in ("/r/nostore?cc=no-store", "/r/none"):
        for _ in range(2):
            get(s, q, mode=mode)
        assert o.count(q.split("?")[0]) == 2, q
    # HEAD from the stored GET, with its length
    r = get(s, p, "-I", mode=mode)
    assert r.status == 200 and r.header("content-length") == "5000"
    assert "hit" in r.header("cache-status")
    assert o.count("/r/fresh") == 1


def test_request_directives(sluice_factory, tmp_path, origins):
    o = origins()
    s = cached_server(sluice_factory, tmp_path, o)
    p = "/r/req?cc=max-age%3D60&etag=t1"
    get(s, p)
    # no-cache from the client: revalidated with the stored validator, 304 upstream
    r = get(s, p, "-H", "Cache-Control: no-cache")
    assert r.status == 200 and r.body == pattern(100)
    assert "fwd=stale; fwd-status=304" in r.header("cache-status"), r.headers
    assert o.stats()["conditional"] == 1
    # only-if-cached: 504 when not stored, the entry when it is
    r = get(s, "/r/never?cc=max-age%3D60", "-H", "Cache-Control: only-if-cached")
    assert r.status == 504 and o.count("/r/never") == 0
    assert get(s, p, "-H", "Cache-Control: only-if-cached").status == 200


@pytest.mark.parametrize("mode", ["h1", "h2c"])
def test_vary_accept_encoding(sluice_factory, tmp_path, origins, mode):
    o = origins()
    s = cached_server(sluice_factory, tmp_path, o)
    p = "/r/vary?cc=max-age%3D60&vary=Accept-Encoding"
    seen = {}
    for ae in ("gzip", "br", "gzip", "br", "identity", "gzip"):
        r = get(s, p, "-H", "Accept-Encoding: " + ae, mode=mode)
        assert r.header("x-echo-accept-encoding") == ae, r.headers
        seen.setdefault(ae, r.header("x-count"))
        assert r.header("x-count") == seen[ae]
    assert o.count("/r/vary") == 3
    # at most max_variants per key: the oldest goes
    s2 = cached_server(sluice_factory, tmp_path, o, cache={"max_variants": 2})
    p = "/r/vary2?cc=max-age%3D60&vary=x-v"
    for v in ("1", "2", "3", "1"):
        get(s2, p, "-H", "x-v: " + v, mode=mode)
    assert o.count("/r/vary2") == 4


def test_revalidation_304_serves_the_stored_200(sluice_factory, tmp_path, origins):
    o = origins()
    s = cached_server(sluice_factory, tmp_path, o)
    p = "/r/reval?cc=max-age%3D1&etag=v1&size=3000"
    r = get(s, p)
    assert r.status == 200 and r.header("x-count") == "1"
    time.sleep(1.3)
    r = get(s, p)
    assert r.status == 200 and r.body == pattern(3000), r
    assert r.header("cache-status") == "sluice; fwd=stale; fwd-status=304; stored"
    assert r.header("x-count") == "2"  # the 304's fields update the stored ones
    assert o.stats()["conditional"] == 1
    r = get(s, p)  # fresh again after the 304 (or revalidated again: max-age is 1 s)
    assert r.status == 200 and r.body == pattern(3000)
    # the client's own conditionals and ranges are answered from the entry
    r = get(s, p, "-H", 'If-None-Match: "v1"')
    assert r.status == 304 and r.body == b""
    r = get(s, p, "-H", "Range: bytes=100-199")
    assert r.status == 206 and r.body == pattern(3000)[100:200]
    assert r.header("content-range") == "bytes 100-199/3000"
    r = get(s, p, "-H", "Range: bytes=5000-")
    assert r.status == 416 and r.header("content-range") == "bytes */3000"
    # the body came once: every later upstream request was a revalidation
    assert o.stats()["conditional"] == o.count("/r/reval") - 1


def parallel_get(port, path, n):
    out = [None] * n

    def one(i):
        try:
            with h1raw.H1Conn(port, timeout=30 * SLOW) as c:
                c.send(h1raw.request("GET", path, [("Connection", "close")],
                                     host="127.0.0.1:%d" % port))
                r = c.read_response()
                out[i] = (r.status, hashlib.sha256(r.body).hexdigest(),
                          r.header("cache-status"))
        except Exception as e:  # noqa: BLE001 (reported below)
            out[i] = ("error", repr(e), None)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60 * SLOW)
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_100_concurrent_misses_one_upstream_request(sluice_factory, tmp_path, origins, workers):
    o = origins()
    s = cached_server(sluice_factory, tmp_path, o, workers=workers)
    size = 300000
    path = "/r/herd?cc=max-age%%3D60&size=%d&delay=1" % size
    out = parallel_get(s.h2c_port, path, 100)
    want = hashlib.sha256(pattern(size)).hexdigest()
    assert all(x[0] == 200 and x[1] == want for x in out), [x for x in out if x[1] != want][:3]
    # requests on every worker follow the one fill
    assert o.count("/r/herd") == 1
    collapsed = sum(1 for x in out if "collapsed" in (x[2] or ""))
    assert collapsed == 99, [x[2] for x in out][:10]


def test_large_fill_streams_and_a_joiner_gets_it_whole(sluice_factory, tmp_path, origins):
    o = origins()
    s = cached_server(sluice_factory, tmp_path, o, cache={"max_entry_bytes": 60 << 20},
                      zone={"memory_bytes": 128 << 20})
    n = 50 << 20
    path = "/r/big?cc=max-age%%3D60&size=%d&chunks=200&pause=0.01" % n
    want = hashlib.sha256(pattern(n)).hexdigest()
    first = {}

    def reader():
        t0 = time.monotonic()
        with h1raw.H1Conn(s.h2c_port, timeout=60 * SLOW) as c:
            c.send(h1raw.request("GET", path, [("Connection", "close")],
                                 host="127.0.0.1:%d" % s.h2c_port))
            r = c.read_response()
            first["sum"] = hashlib.sha256(r.body).hexdigest()
            first["t"] = time.monotonic() - t0
    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.8)
    r = get(s, path)  # joins the fill mid-way
    t.join(90 * SLOW)
    assert hashlib.sha256(r.body).hexdigest() == want and first["sum"] == want
    assert "collapsed" in r.header("cache-status"), r.headers
    assert o.count("/r/big") == 1
    r = get(s, path, mode="h2c")
    assert "hit" in r.header("cache-status") and hashlib.sha256(r.body).hexdigest() == want


def test_too_large_streams_to_its_followers_with_backpressure(sluice_factory, tmp_path, origins):
    """A response past max_entry_bytes is not kept: the requests that
    waited for it get it whole from the one upstream request, on both
    workers, and memory stays at the window, not the body."""
    o = origins()
    s = cached_server(sluice_factory, tmp_path, o, cache={"max_entry_bytes": 1 << 20},
                      zone={"memory_bytes": 8 << 20})
    n = 24 << 20
    path = "/r/huge?cc=max-age%%3D60&size=%d&delay=0.5" % n  # with its length
    out = parallel_get(s.h2c_port, path, 6)
    want = hashlib.sha256(pattern(n)).hexdigest()
    assert all(x[0] == 200 and x[1] == want for x in out), out
    assert o.count("/r/huge") == 1
    assert sum("detail=too-large" in x[2] for x in out) == 1, [x[2] for x in out]
    m = metrics(s)
    assert m[("sluice_cache_bytes", (("zone", "main"),))] < 1 << 20  # nothing kept
    assert m[("sluice_cache_stored_total", (("zone", "main"),))] == 0


def test_stale_if_error_then_the_window_ends(sluice_factory, tmp_path, origins):
    o = origins()
    s = cached_server(sluice_factory, tmp_path, o)
    p = "/r/sie?cc=max-age%3D1,stale-if-error%3D2&size=2000"
    assert get(s, p).status == 200
    o.stop()
    time.sleep(1.2)
    r = get(s, p)
    assert r.status == 200 and r.body == pattern(2000), r
    assert "detail=stale-if-error" in r.header("cache-status"), r.headers
    time.sleep(2.5)
    r = get(s, p)
    assert r.status == 502, r


def test_stale_while_revalidate_refreshes_in_background(sluice_factory, tmp_path, origins):
    o = origins()
    s = cached_server(sluice_factory, tmp_path, o)
    p = "/r/swr?cc=max-age%3D2,stale-while-revalidate%3D30&delay=0.5"
    get(s, p)
    time.sleep(2.2)
    t0 = time.monotonic()
    r = get(s, p)
    assert time.monotonic() - t0 < 0.4 * SLOW  # not waiting for the slow origin
    assert r.header("x-count") == "1" and "detail=stale" in r.header("cache-status")
    time.sleep(0.8)  # the refresh is in: fresh for 2 s less the Date's rounding
    r = get(s, p)
    assert r.header("x-count") == "2", r.headers
    assert r.header("cache-status").startswith("sluice; hit; ttl="), r.headers
    assert "detail" not in r.header("cache-status") and o.count("/r/swr") == 2


@pytest.mark.parametrize("mode", ["h1", "h2-tls"])
def test_private_responses_are_never_shared(sluice_factory, tmp_path, origins, mode):
    o = origins()
    s = cached_server(sluice_factory, tmp_path, o)
    cases = [("/r/p1?cc=private,max-age%3D60", ()),
             ("/r/p2?cc=no-store", ()),
             ("/r/p3?cc=max-age%3D60&cookie=1", ()),
             ("/r/p4?cc=max-age%3D60", ("-H", "Authorization: Bearer alice"))]
    for path, extra in cases:
        a = get(s, path, *extra, mode=mode)
        b = get(s, path, *extra, mode=mode)
        assert a.header("x-count") == "1" and b.header("x-count") == "2", (path, b.headers)
        if "cookie" in path:
            assert a.header("set-cookie") == "session=1" and b.header("set-cookie") == "session=2"
    # concurrent requests for a private response do not get each other's
    out = parallel_get(s.h2c_port, "/r/p5?cc=private&cookie=1&delay=0.5", 10)
    assert all(x[0] == 200 for x in out) and o.count("/r/p5") == 10
    # public with credentials may be shared (RFC 9111 3.5)
    get(s, "/r/p6?cc=public,max-age%3D60", "-H", "Authorization: Bearer a", mode=mode)
    r = get(s, "/r/p6?cc=public,max-age%3D60", "-H", "Authorization: Bearer b", mode=mode)
    assert "hit" in r.header("cache-status")


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def metrics(s):
    from prometheus_client.parser import text_string_to_metric_families
    r = get(s, "/metrics")
    out = {}
    for fam in text_string_to_metric_families(r.body.decode()):
        for smp in fam.samples:
            out[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return out


def test_random_queries_stay_within_the_zone(sluice_factory, tmp_path, origins):
    o = origins()
    zone = 1 << 20
    s = cached_server(sluice_factory, tmp_path, o, zone={"memory_bytes": zone},
                      cache={"max_entry_bytes": 65536})
    argv = ["curl", "-sS", "-o", "/dev/null", "--parallel", "--parallel-max", "20"]
    for i in range(600):
        argv.append(s.url("/r/rand?cc=max-age%%3D60&size=8000&q=%d" % i))
    subprocess.run(argv, check=True, timeout=120 * SLOW)
    m = metrics(s)
    assert m[("sluice_cache_bytes", (("zone", "main"),))] <= zone
    assert m[("sluice_cache_evictions_total", (("zone", "main"),))] > 0
    assert m[("sluice_cache_requests_total", (("result", "miss"), ("zone", "main")))] == 600


def test_purge_needs_the_token(sluice_factory, tmp_path, origins):
    o = origins()
    s = cached_server(sluice_factory, tmp_path, o)
    for q in ("a", "b"):
        get(s, "/r/pg/%s?cc=max-age%%3D60" % q)
    r = get(s, "/_cache/purge?prefix=127.0.0.1:%d/r/pg/" % s.h2c_port, "-X", "PURGE")
    assert r.status == 401
    r = get(s, "/_cache/purge?key=127.0.0.1:%d/r/pg/a%%3Fcc%%3Dmax-age%%253D60" % s.h2c_port,
            "-X", "PURGE", "-H", "Authorization: Bearer " + TOKEN)
    assert r.status == 200 and r.json() == {"purged": 1}, r.body
    assert "fwd=uri-miss" in get(s, "/r/pg/a?cc=max-age%3D60").header("cache-status")
    assert "hit" in get(s, "/r/pg/b?cc=max-age%3D60").header("cache-status")
    r = get(s, "/_cache/purge?prefix=127.0.0.1:%d/r/pg/" % s.h2c_port, "-X", "DELETE",
            "-H", "Authorization: Bearer " + TOKEN)
    assert r.status == 200 and r.json() == {"purged": 2}
    assert "fwd=uri-miss" in get(s, "/r/pg/b?cc=max-age%3D60").header("cache-status")
    assert o.count("/r/pg/a") == 2 and o.count("/r/pg/b") == 2
    # an unsafe method on a key invalidates it
    get(s, "/r/pg/b?cc=max-age%3D60", "-X", "POST", "-d", "x")
    assert "fwd=uri-miss" in get(s, "/r/pg/b?cc=max-age%3D60").header("cache-status")


def test_h2c_upstream_and_metrics(sluice_factory, tmp_path, origins):
    o = origins("hypercorn")
    s = cached_server(sluice_factory, tmp_path, o, protocol="h2c")
    p = "/r/h2up?cc=max-age%3D60&size=70000"
    for mode in ("h2c", "h1"):
        r = get(s, p, mode=mode)
        assert r.status == 200 and r.body == pattern(70000)
    assert o.count("/r/h2up") == 1
    # the key has the client's host with its port: the TLS listener's is another
    r = get(s, p, mode="h2-tls")
    assert r.status == 200 and r.body == pattern(70000) and o.count("/r/h2up") == 2
    m = metrics(s)
    assert m[("sluice_cache_requests_total", (("result", "hit"), ("zone", "main")))] == 1
    assert m[("sluice_cache_stored_total", (("zone", "main"),))] == 2
    assert m[("sluice_cache_entries", (("zone", "main"),))] >= 1


def test_config_errors(sluice_factory, tmp_path):
    def check(cfg):
        p = tmp_path / "c.json"
        import json
        p.write_text(json.dumps(cfg))
        from conftest import SLUICE_BIN
        return subprocess.run([SLUICE_BIN, "-t", "-c", str(p)], capture_output=True)
    base = {"upstreams": {"app": {"servers": ["127.0.0.1:9"]}},
            "caches": {"main": {"memory_bytes": 1 << 20}}}
    route = {"path": "/", "handler": "proxy", "upstream": "app"}
    r = check(dict(base, routes=[dict(route, cache={"zone": "nope"})]))
    assert r.returncode == 1 and b'no zone named "nope"' in r.stderr
    r = check(dict(base, routes=[dict(route, cache={"zone": "main", "max_entry_bytes": 2 << 20})]))
    assert r.returncode == 1 and b"max_entry_bytes: larger than zone" in r.stderr
    r = check(dict(base, routes=[dict(route, cache={"zone": "main", "bogus": 1})]))
    assert r.returncode == 1 and b"cache.bogus: unknown key" in r.stderr
    r = check(dict(base, caches={"main": {"memory_bytes": 1 << 20, "disk": {"path": "/x"}}},
                   routes=[route]))
    assert r.returncode == 1 and b"disk tier" in r.stderr


def test_nginx_origin_with_capitalised_fields(sluice_factory, tmp_path):
    """nginx writes Cache-Control, ETag, Last-Modified with capitals: the
    cache reads them whatever their case, and revalidates with them."""
    require("nginx")
    d = tmp_path / "ngx"
    (d / "www").mkdir(parents=True)
    (d / "www" / "f.txt").write_bytes(pattern(4000))
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(
        "user root; pid %s/nginx.pid; error_log %s/error.log warn; worker_processes 1;\n"
        "daemon off; events { worker_connections 64; }\n"
        "http { access_log %s/access.log; client_body_temp_path %s/cb;\n"
        " proxy_temp_path %s/pt; fastcgi_temp_path %s/ft; uwsgi_temp_path %s/ut;\n"
        " scgi_temp_path %s/st;\n"
        " server { listen 127.0.0.1:%d; root %s/www; location /r/ { alias %s/www/; }\n"
        "  location /r/short/ { alias %s/www/; expires 1s; } expires 1h; } }\n"
        % ((d,) * 8 + (port, d, d, d)))
    p = subprocess.Popen(["nginx", "-p", str(d) + "/", "-c", str(conf)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: port_open(port)), "nginx did not start"
        o = Origin()  # never started: it only names nginx's port
        o.port = port
        s = cached_server(sluice_factory, tmp_path, o)

        def hits():
            return len((d / "access.log").read_text().splitlines())
        for mode in ("h1", "h2c"):
            r = get(s, "/r/f.txt", mode=mode)
            assert r.status == 200 and r.body == pattern(4000)
        assert "hit" in r.header("cache-status") and hits() == 1
        r = get(s, "/r/short/f.txt")
        assert "stored" in r.header("cache-status")
        time.sleep(2.1)
        r = get(s, "/r/short/f.txt")
        assert r.status == 200 and r.body == pattern(4000)
        assert "fwd=stale; fwd-status=304" in r.header("cache-status"), r.headers
        log = (d / "access.log").read_text()
        assert '"GET /r/short/f.txt HTTP/1.1" 304' in log, log
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)


def test_reload_keeps_the_zone(sluice_factory, tmp_path, origins):
    """SIGHUP with the zone's name and size unchanged keeps what it holds;
    a new size starts it empty."""
    import json
    o = origins()
    s = cached_server(sluice_factory, tmp_path, o)
    p = "/r/keep?cc=max-age%3D60"
    get(s, p)

    def reload_with(memory, gen):
        cfg = dict(s.config)
        cfg["caches"] = {"main": {"memory_bytes": memory}}
        cfg["routes"] = [{"path": "/gen", "handler": "return", "status": 200, "body": gen}] + \
            [r for r in s.config["routes"]]
        with open(s.cfg_path + ".new", "w") as f:
            json.dump(cfg, f)
        os.replace(s.cfg_path + ".new", s.cfg_path)
        s.signal(signal.SIGHUP)
        assert wait_for(lambda: get(s, "/gen").body == gen.encode()), s.stderr()[-2000:]
    reload_with(64 << 20, "A")
    r = get(s, p)
    assert "hit" in r.header("cache-status") and r.header("x-count") == "1"
    reload_with(32 << 20, "B")
    r = get(s, p)
    assert "fwd=uri-miss" in r.header("cache-status") and r.header("x-count") == "2"
