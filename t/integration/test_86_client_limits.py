"""Fair limits per client (issue 16): limits.conns_per_ip counted across
workers, and per-route rate limits by key. Clients: python http.client
and raw sockets from several loopback addresses (127.0.0.0/8 is all
loopback), prometheus_client to read the counters."""

import http.client
import socket

from conftest import ROUTES, SLOW, wait_for
from test_82_metrics import parse, val


def get(s, path="/healthz", src="127.0.0.1", headers=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", s.h2c_port, timeout=10 * SLOW,
                                           source_address=(src, 0))
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    return c, r.status, {k.lower(): v for k, v in r.getheaders()}, body


def refused(s, src):
    """A connection from src is closed before it gets an answer."""
    c = socket.create_connection(("127.0.0.1", s.h2c_port), timeout=10 * SLOW,
                                 source_address=(src, 0))
    try:
        c.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        return c.recv(100) == b""
    except ConnectionResetError:
        return True
    finally:
        c.close()


def test_conns_per_ip_across_workers(sluice_factory):
    routes = [{"path": "/metrics", "handler": "metrics"}] + ROUTES
    s = sluice_factory(workers=2, limits={"conns_per_ip": 3}, routes=routes)
    held = [get(s)[0] for _ in range(3)]  # open, and kept open (keep-alive)
    assert refused(s, "127.0.0.1")
    _, st, _, _ = get(s, src="127.0.0.2")  # another client is served meanwhile
    assert st == 200
    for c in held:  # the three are still served on their connections
        assert get(s, conn=c)[1] == 200
    held[0].close()

    def room():
        try:
            c, st, _, _ = get(s)
            held[0] = c
            return st == 200
        except (ConnectionError, http.client.HTTPException):
            return False
    assert wait_for(room, 10 * SLOW)
    m = scrape_from(s, "127.0.0.3")
    assert val(m, "sluice_abuse_limits_total", limit="conns_per_ip") >= 1
    for c in held:
        c.close()
    log = open(s.stdout_path).read() + open(s.stderr_path).read()
    assert "limits.conns_per_ip (3) connections open; refused" in log


def scrape_from(s, src):
    c, st, _, body = get(s, "/metrics", src=src)
    c.close()
    assert st == 200
    return parse(body.decode())


def test_conns_per_ip_off_by_default(sluice_factory):
    s = sluice_factory()
    held = [get(s)[0] for _ in range(20)]
    assert get(s)[1] == 200
    for c in held:
        c.close()


LIMITED = [
    {"path": "/metrics", "handler": "metrics"},
    {"path": "/by-user", "handler": "return", "status": 200, "body": "ok\n",
     "rate_limit": {"key": "header:x-user", "rps": 0.5, "burst": 3}},
    {"path": "/by-ip", "handler": "return", "status": 200, "body": "ok\n",
     "rate_limit": {"rps": 1, "burst": 2}},
    {"path": "/mine", "handler": "jobs_api", "owner": "header:x-user",
     "rate_limit": {"key": "owner", "rps": 1, "burst": 2}},
] + ROUTES


def fresh(s, path, headers=None, src="127.0.0.1"):
    """One request on a new connection (so that they spread over workers)."""
    c, st, hdrs, body = get(s, path, src=src, headers=headers)
    c.close()
    return st, hdrs, body


def test_rate_limit_by_header_across_workers(sluice_factory):
    s = sluice_factory(workers=2, routes=LIMITED)
    alice, bob = {"x-user": "alice"}, {"x-user": "bob"}
    got = [fresh(s, "/by-user", alice) for _ in range(3)]
    assert [g[0] for g in got] == [200, 200, 200]
    assert got[0][1]["ratelimit-policy"] == '"route";q=3;w=6'
    assert [g[1]["ratelimit"].split(";")[1] for g in got] == ["r=2", "r=1", "r=0"]
    st, hdrs, body = fresh(s, "/by-user", alice)
    assert st == 429 and b"too many requests" in body
    assert hdrs["retry-after"] == "2" and hdrs["ratelimit"].startswith('"route";r=0;')
    assert fresh(s, "/by-user", bob)[0] == 200  # another key is served
    # a token every two seconds: alice is back after Retry-After
    assert wait_for(lambda: fresh(s, "/by-user", alice)[0] == 200, 5 * SLOW)
    m = parse(get(s, "/metrics", src="127.0.0.9")[3].decode())
    assert val(m, "sluice_abuse_limits_total", limit="rate_limit") >= 1
    log = open(s.stdout_path).read() + open(s.stderr_path).read()
    assert "past route /by-user's rate_limit" in log


def test_rate_limit_by_ip_and_by_owner(sluice_factory):
    s = sluice_factory(routes=LIMITED)
    assert [fresh(s, "/by-ip", src="127.0.0.5")[0] for _ in range(3)] == [200, 200, 429]
    assert fresh(s, "/by-ip", src="127.0.0.6")[0] == 200
    # a request without the header counts under its address
    assert [fresh(s, "/by-user", src="127.0.0.7")[0] for _ in range(4)] == [200, 200, 200, 429]
    assert fresh(s, "/by-user", src="127.0.0.8")[0] == 200
    # the job owner: the same credential from any address is one key
    alice = {"x-user": "alice"}
    got = [fresh(s, "/mine", alice, src="127.0.0.%d" % (10 + i))[0] for i in range(3)]
    assert got == [200, 200, 429]
    assert fresh(s, "/mine", {"x-user": "bob"}, src="127.0.0.10")[0] == 200


def test_rate_limit_config_errors(tmp_path):
    from test_10_config import check, write
    import json
    cases = [({"rps": 0}, "rate_limit.rps: must be between"),
             ({"key": "owner"}, "\"owner\" needs a route with job owners"),
             ({"key": "query:x"}, "rate_limit.key: must be"),
             ({"brust": 5}, 'did you mean "burst"')]
    for rl, msg in cases:
        cfg = {"routes": [{"path": "/", "handler": "return", "rate_limit": rl}]}
        r = check(write(tmp_path, "c.json", json.dumps(cfg)))
        assert r.returncode == 1 and msg in r.stderr.decode(), (rl, r.stderr.decode())
