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
