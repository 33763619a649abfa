"""PROXY protocol on listeners ("proxy_protocol": true, issue 13): the
client address from a v1 or v2 header is the one sluice uses (the
harness's "peer", access log, X-Forwarded-For to an upstream); a
connection without a valid header is closed; TLS after a v2 header works.
Independent senders: Debian's haproxy (send-proxy, send-proxy-v2, in tcp
mode in front of a TLS listener), curl --haproxy-protocol, raw sockets
(split headers, LOCAL, garbage). The clients connect from 127.0.0.2 so
that the header's address differs from the balancer's own 127.0.0.1."""

import json
import os
import socket
import ssl
import struct
import subprocess
import time

import pytest

from conftest import SLOW, free_port, require

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def pp_server(sluice_factory, **over):
    """The usual plain listener (the suite's readiness probe uses it) plus
    two with proxy_protocol: cleartext (s.pp_port) and TLS (s.pp_tls_port)."""
    ports = {}

    def listen(tls_port, h2c_port, certs):
        ports["pp"], ports["tls"] = free_port(), free_port()
        return [{"addr": "127.0.0.1:%d" % h2c_port},
                {"addr": "127.0.0.1:%d" % ports["pp"], "proxy_protocol": True},
                {"addr": "127.0.0.1:%d" % ports["tls"], "proxy_protocol": True,
                 "tls": {"cert": certs.cert, "key": certs.key}}]
    s = sluice_factory(listen=listen, workers=1, **over)
    s.pp_port, s.pp_tls_port = ports["pp"], ports["tls"]
    return s


def raw_exchange(port, data, timeout=5.0):
    """Send data, then read until the peer closes (Connection: close)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    try:
        for piece in data if isinstance(data, list) else [data]:
            s.sendall(piece)
            time.sleep(0.05)
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


def peer_of(resp):
    body = resp.split(b"\r\n\r\n", 1)[1]
    return json.loads(body)["peer"]


GET = b"GET /_h/anything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def v2_tcp4(src, sport, dst="127.0.0.1", dport=443, tlv=b""):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlv
    return V2_SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def test_v1_and_v2_give_the_client_address(sluice_factory):
    s = pp_server(sluice_factory)
    r = raw_exchange(s.pp_port, b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 80\r\n" + GET)
    assert r.startswith(b"HTTP/1.1 200"), r
    assert peer_of(r) == "192.0.2.7:4242"
    r = raw_exchange(s.pp_port, b"PROXY TCP6 2001:db8::9 ::1 5353 80\r\n" + GET)
    assert peer_of(r) == "[2001:db8::9]:5353", r
    # split at every awkward place: inside the signature, the length, the address
    hdr = v2_tcp4("198.51.100.20", 6000, tlv=b"\x01\x00\x02h2")
    r = raw_exchange(s.pp_port, [hdr[:5], hdr[5:15], hdr[15:20], hdr[20:] + GET[:10], GET[10:]])
    assert peer_of(r) == "198.51.100.20:6000", r
    # LOCAL (the balancer's own health check) and UNKNOWN keep the socket's address
    local = V2_SIG + bytes([0x20, 0x00, 0, 0])
    r = raw_exchange(s.pp_port, local + GET)
    assert peer_of(r).startswith("127.0.0.1:"), r
    r = raw_exchange(s.pp_port, b"PROXY UNKNOWN\r\n" + GET)
    assert peer_of(r).startswith("127.0.0.1:"), r
    # the access log has the header's address
    deadline = time.monotonic() + 5 * SLOW
    while time.monotonic() < deadline and "192.0.2.7" not in s.stdout():
        time.sleep(0.1)
    lines = [json.loads(x) for x in s.stdout().splitlines() if x.startswith("{")]
    assert "192.0.2.7:4242" in [x["peer"] for x in lines], lines


def test_no_valid_header_is_closed(sluice_factory):
    s = pp_server(sluice_factory)
    for bad in (GET,                                                   # no header at all
                b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n" + GET,        # bad port
                V2_SIG + bytes([0x21, 0x11, 0, 4]) + b"abcd" + GET,    # too short for TCP4
                b"PROXY " + b"x" * 200):                               # no end of line
        r = raw_exchange(s.pp_port, bad)
        assert r == b"", (bad, r)
    assert "no valid PROXY protocol header" in s.stderr()
    # a client that sends nothing is dropped after timeouts.tls_handshake_s
    s2 = pp_server(sluice_factory, timeouts={"tls_handshake_s": 0.5})
    c = socket.create_connection(("127.0.0.1", s2.pp_port), timeout=5 * SLOW)
    try:
        c.settimeout(5 * SLOW)
        assert c.recv(10) == b""
    finally:
        c.close()
    assert "no PROXY protocol header in time" in s2.stderr()


def test_curl_haproxy_protocol(sluice_factory):
    require("curl")
    s = pp_server(sluice_factory)
    r = subprocess.run(["curl", "-s", "--haproxy-protocol", "--interface", "127.0.0.2",
                        "http://127.0.0.1:%d/_h/anything" % s.pp_port],
                       capture_output=True, timeout=30 * SLOW)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["peer"].startswith("127.0.0.2:"), r.stdout


class Haproxy:
    def __init__(self, tmp_path, backend_port, mode):
        self.port = free_port()
        cfg = tmp_path / ("haproxy-%s.cfg" % mode)
        send = "send-proxy-v2" if mode == "v2" else "send-proxy"
        cfg.write_text(
            "global\n  log stderr format raw local0 err\n"
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n"
            "  timeout server 30s\n"
            "frontend fe\n  bind 127.0.0.1:%d\n  default_backend be\n"
            "backend be\n  server s1 127.0.0.1:%d %s\n" % (self.port, backend_port, send))
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10 * SLOW
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail("haproxy did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.mark.parametrize("mode", ["v1", "v2"])
def test_haproxy_in_front_cleartext_and_tls(sluice_factory, tmp_path, mode):
    require("haproxy")
    require("curl")
    s = pp_server(sluice_factory)
    for backend, scheme in ((s.pp_port, "http"), (s.pp_tls_port, "https")):
        hp = Haproxy(tmp_path, backend, mode)
        try:
            url = "%s://localhost:%d/_h/anything" % (scheme, hp.port)
            for http in (["--http1.1"], ["--http2"] if scheme == "https" else
                         ["--http2-prior-knowledge"]):
                r = subprocess.run(["curl", "-sk", "--interface", "127.0.0.2",
                                    "--resolve", "localhost:%d:127.0.0.1" % hp.port] + http +
                                   [url], capture_output=True, timeout=30 * SLOW)
                assert r.returncode == 0, (mode, scheme, http, r.stderr)
                got = json.loads(r.stdout)
                assert got["peer"].startswith("127.0.0.2:"), (mode, scheme, got)
                if scheme == "https":
                    assert got["tls"], got
        finally:
            hp.stop()


def test_off_by_default_and_config(sluice_factory):
    """A listener without the key takes a PROXY line as a bad request."""
    s = sluice_factory(workers=1)
    r = raw_exchange(s.h2c_port, b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 80\r\n" + GET)
    assert r.startswith(b"HTTP/1.1 400"), r
