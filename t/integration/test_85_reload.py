"""Configuration reload (SIGHUP) with the real binary and independent
clients: h2load over HTTP/2 TLS and an HTTP/1.1 keep-alive client run
while 20 reloads alternate between two configs (different routes, a
rotated certificate, a listener that comes and goes): no request fails, new
connections see each new config and certificate, and a WebSocket
(python3-websockets) and an SSE stream opened before the first reload stay
up and intact. A broken file changes nothing and is counted; `sluice -s
reload` reaches the daemon through its pid_file; an upstream group's state
of the old config is dropped once its last connection is gone."""

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import ROUTES, SLOW, SLUICE_BIN, Certs, free_port, require, run, wait_for

websockets = pytest.importorskip("websockets")

WS_ROUTE = {"path": "/ws", "handler": "ws", "app": "echo"}
METRICS = {"path": "/metrics", "handler": "metrics"}


def gen_route(letter):
    return {"path": "/gen", "match": "exact", "handler": "return", "status": 200,
            "body": letter}


def get(port, path, tls=False):
    """One request on a new connection: (status, body)."""
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    except OSError:
        return None, b""
    finally:
        c.close()


def peer_cert(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


class KeepAlive(threading.Thread):
    """HTTP/1.1 keep-alive GETs in a loop; http.client reopens after a
    response that said `Connection: close`. Any exception is a failure."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop, self.ok, self.failures, self.conns = port, False, 0, [], 0

    def run(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop:
            try:
                if c.sock is None:
                    self.conns += 1
                c.request("GET", "/")
                r = c.getresponse()
                body = r.read()
                if r.status == 200 and body:
                    self.ok += 1
                else:
                    self.failures.append((r.status, body[:80]))
            except Exception as e:  # noqa: BLE001 - each one is a failed request
                self.failures.append(repr(e))
                c.close()
        c.close()


class SSE(threading.Thread):
    """One SSE stream over HTTP/1.1, its event ids in order."""

    def __init__(self, port, n):
        super().__init__(daemon=True)
        self.port, self.n, self.ids, self.error, self.done = port, n, [], None, False

    def run(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=30 * SLOW)
            s.sendall(b"GET /_h/sse?n=%d&interval_ms=50 HTTP/1.1\r\nhost: x\r\n\r\n" % self.n)
            buf = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
                self.ids = [int(x) for x in re.findall(rb"^id: (\d+)$", buf, re.M)]
                if len(self.ids) >= self.n:
                    break
            s.close()
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)
        self.done = True


def h2load_result(out):
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    assert m and codes, out[-2000:]
    total, _, done, ok, failed, errored = (int(x) for x in m.groups())
    return total, done, ok, failed, errored, int(codes.group(1))


def scrape(port):
    from prometheus_client.parser import text_string_to_metric_families
    _, body = get(port, "/metrics")
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def pair(sluice_factory, tmp_path):
    """A daemon on config A, and the two configs to alternate."""
    rotated = Certs(str(tmp_path))  # a second certificate for localhost
    extra = free_port()

    def listen_for(cert, key, with_extra):
        def f(tls_port, h2c_port, certs):
            v = [{"addr": "127.0.0.1:%d" % tls_port, "tls": {"cert": cert, "key": key}},
                 {"addr": "127.0.0.1:%d" % h2c_port}]
            if with_extra:
                v.append({"addr": "127.0.0.1:%d" % extra})
            return v
        return f

    s = sluice_factory(start=False, routes=[gen_route("A"), WS_ROUTE, METRICS] + ROUTES,
                       pid_file=str(tmp_path / "sluice.pid"))
    a = dict(s.config)
    b = dict(s.config, routes=[gen_route("B"), WS_ROUTE, METRICS] + ROUTES)
    b["listen"] = listen_for(rotated.cert, rotated.key, True)(s.tls_port, s.h2c_port, None)
    s.start()
    return s, {"A": a, "B": b}, {"A": s.certs.cert, "B": rotated.cert}, extra


def write(s, cfg):
    tmp = s.cfg_path + ".new"
    with open(tmp, "w") as f:
        json.dump(cfg, f)
    os.replace(tmp, s.cfg_path)


def reload_to(s, cfgs, letter):
    write(s, cfgs[letter])
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: get(s.h2c_port, "/gen") == (200, letter.encode())), \
        "config %s not in effect; stderr:\n%s" % (letter, s.stderr()[-2000:])


async def ws_echo_session(url, rounds, step):
    """Open before the reloads, echo once per round, never reconnect."""
    async with websockets.connect(url, max_size=None) as ws:
        for i in range(rounds):
            await step.wait()
            step.clear()
            msg = "round %d " % i + "x" * i
            await ws.send(msg)
            assert await ws.recv() == msg
        return True


def test_twenty_reloads_under_load(pair):
    require("h2load")
    s, cfgs, certs, extra = pair
    sse = SSE(s.h2c_port, 120)
    sse.start()
    ka = KeepAlive(s.h2c_port)
    ka.start()
    # 4 connections x 1000 requests/s for as long as the reloads take
    h2 = subprocess.Popen(["h2load", "-D", "%d" % (8 * SLOW), "--rps=1000", "-c", "4", "-m", "10",
                           "https://127.0.0.1:%d/" % s.tls_port],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    loop = asyncio.new_event_loop()
    step = asyncio.Event()
    ws_task = loop.create_task(ws_echo_session("ws://127.0.0.1:%d/ws" % s.h2c_port, 21, step))

    def ws_round():
        loop.call_soon(step.set)
        loop.run_until_complete(asyncio.sleep(0.05))

    ws_round()  # the session is open before the first reload
    assert wait_for(lambda: len(sse.ids) >= 1)
    for i in range(20):
        letter = "B" if i % 2 == 0 else "A"
        reload_to(s, cfgs, letter)
        assert peer_cert(s.tls_port) == Certs.der(certs[letter])
        if letter == "B":
            assert get(extra, "/gen") == (200, b"B")
        else:
            assert wait_for(lambda: get(extra, "/gen")[0] is None), "removed listener still open"
        ws_round()
    loop.run_until_complete(asyncio.wait_for(ws_task, 20 * SLOW))
    assert ws_task.result() is True
    loop.close()

    out, _ = h2.communicate(timeout=120 * SLOW)
    total, done, ok, failed, errored, n2xx = h2load_result(out)
    assert (failed, errored) == (0, 0) and done == total == ok == n2xx, out[-1500:]
    ka.stop = True
    ka.join(10)
    assert ka.failures == [] and ka.ok > 20, (ka.failures[:5], ka.ok)
    assert ka.conns > 1  # it was told to reconnect after reloads
    sse.join(30 * SLOW)
    assert sse.error is None and sse.ids == list(range(1, 121))
    m = scrape(s.h2c_port)
    assert m[("sluice_config_reloads_total", (("result", "ok"),))] == 20
    assert m[("sluice_config_last_reload_successful", ())] == 1
    s.assert_up()


def test_broken_file_changes_nothing(pair):
    s, cfgs, certs, extra = pair
    before = scrape(s.h2c_port)
    for k, bad in enumerate(['{"listen": [',
                             '{"listen": [{"addr": "127.0.0.1:1"}], "limits": {"h2_max_frame_size": 1}}',
                             None]):
        if bad is None:  # valid JSON, a certificate that is not there
            cfg = dict(cfgs["B"])
            cfg["listen"] = [dict(cfg["listen"][0], tls={"cert": "/nonexistent.pem",
                                                          "key": "/nonexistent.key"})]
            bad = json.dumps(cfg)
        with open(s.cfg_path, "w") as f:
            f.write(bad)
        s.signal(signal.SIGHUP)  # one at a time: pending SIGHUPs merge into one
        assert wait_for(lambda: s.stderr().count("reload failed") == k + 1), s.stderr()[-2000:]
    err = s.stderr()
    assert "limits.h2_max_frame_size" in err and "nonexistent" in err
    assert get(s.h2c_port, "/gen") == (200, b"A")
    assert peer_cert(s.tls_port) == Certs.der(certs["A"])
    after = scrape(s.h2c_port)
    key = ("sluice_config_reloads_total", (("result", "failed"),))
    assert after[key] - before.get(key, 0) == 3
    assert after[("sluice_config_last_reload_successful", ())] == 0
    # a good file afterwards is taken
    write(s, cfgs["B"])
    r = run([SLUICE_BIN, "-c", s.cfg_path, "-s", "reload"], text=True)
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: get(s.h2c_port, "/gen") == (200, b"B"))
    assert scrape(s.h2c_port)[("sluice_config_last_reload_successful", ())] == 1
    s.assert_up()


def test_open_http2_connection_keeps_its_config_until_grace(sluice_factory):
    """An HTTP/2 connection open before a reload goes on with its snapshot
    (old routes) until timeouts.reload_drain_s, then gets a GOAWAY; a new
    connection sees the new routes at once."""
    h2 = pytest.importorskip("h2.connection")
    import h2.config
    import h2.events

    s = sluice_factory(routes=[gen_route("A")] + ROUTES, timeouts={"reload_drain_s": 1})
    sock = socket.create_connection(("127.0.0.1", s.h2c_port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())

    def request(path):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                (":authority", "x")], end_stream=True)
        sock.sendall(conn.data_to_send())
        body, status, goaway = b"", None, None
        while True:
            data = sock.recv(65536)
            if not data:
                return status, body, "eof"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers)[b":status"]
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(len(ev.data), ev.stream_id)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    goaway = ev
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    sock.sendall(conn.data_to_send())
                    return status, body, goaway
            sock.sendall(conn.data_to_send())

    assert request("/gen")[:2] == (b"200", b"A")
    cfg = dict(s.config, routes=[gen_route("B")] + ROUTES)
    write(s, cfg)
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: get(s.h2c_port, "/gen") == (200, b"B"))
    assert request("/gen")[:2] == (b"200", b"A")  # the old snapshot, on the old connection
    # past the grace: a GOAWAY (NO_ERROR), and the connection ends
    sock.settimeout(5 * SLOW)
    goaway, deadline = None, time.monotonic() + 5 * SLOW
    while goaway is None and time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ConnectionTerminated):
                goaway = ev
    assert goaway is not None and goaway.error_code == 0
    sock.close()


def test_upstream_state_of_old_config_dropped(sluice_factory, tmp_path):
    """An upstream with active health checks: after a reload to a config
    without it and the last old connection gone, its checks stop (the
    checker's requests stop arriving at the upstream)."""
    hits = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                c.recv(65536)
                hits.append(time.monotonic())
                c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    ups = {"app": {"servers": [{"addr": "127.0.0.1:%d" % port}],
                   "health": {"path": "/hc", "interval_s": 0.2, "timeout_s": 1}}}
    s = sluice_factory(upstreams=ups, workers=1,
                       routes=[{"path": "/app/", "handler": "proxy", "upstream": "app"}] + ROUTES,
                       timeouts={"reload_drain_s": 0})
    assert get(s.h2c_port, "/app/x")[0] == 200  # the worker starts checking
    assert wait_for(lambda: len(hits) >= 4)
    cfg = dict(s.config)
    del cfg["upstreams"]
    cfg["routes"] = ROUTES
    write(s, cfg)
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: "reloaded" in s.stderr())
    time.sleep(1.0 * SLOW)  # the retire step runs within 200 ms of the last close
    n = len(hits)
    time.sleep(1.0)
    assert len(hits) == n, "health checks of the old config still run"
    srv.close()
    s.assert_up()


def test_h2c_preface_after_the_grace_gets_goaway(sluice_factory):
    """With reload_drain_s 0, a cleartext connection accepted before a
    reload that sends its HTTP/2 preface only after it is served on its own
    snapshot and told to go (GOAWAY NO_ERROR) at once."""
    h2 = pytest.importorskip("h2.connection")
    import h2.config
    import h2.events

    s = sluice_factory(routes=[gen_route("A")] + ROUTES, timeouts={"reload_drain_s": 0},
                       workers=1)
    sock = socket.create_connection(("127.0.0.1", s.h2c_port), timeout=5 * SLOW)
    assert get(s.h2c_port, "/gen") == (200, b"A")  # the worker has accepted it by now
    write(s, dict(s.config, routes=[gen_route("B")] + ROUTES))
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: get(s.h2c_port, "/gen") == (200, b"B"))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", "/gen"), (":scheme", "http"),
                          (":authority", "x")], end_stream=True)
    sock.sendall(conn.data_to_send())
    body, goaway, ended = b"", None, False
    while not (ended and goaway):
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                body += ev.data
            elif isinstance(ev, h2.events.StreamEnded):
                ended = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                goaway = ev
        sock.sendall(conn.data_to_send())
    sock.close()
    assert body == b"A" and ended
    assert goaway is not None and goaway.error_code == 0
