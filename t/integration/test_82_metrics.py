"""The metrics handler (issue 13, first slice): scraped with Debian's
python3-prometheus-client text parser, the counters move by exactly what a
known workload did - requests by protocol, route and status class, body
bytes, the duration histogram, connections by listener and protocol, TLS
handshakes - summed over both workers."""

import subprocess
import time
import urllib.request

import pytest

from conftest import ROUTES, SLOW, free_port, require

parser = pytest.importorskip("prometheus_client.parser")

# the suite's routes without its catch-all "/": /nowhere is then a 404 outside every route
METRICS_ROUTES = [{"path": "/metrics", "match": "exact", "handler": "metrics"}] + \
    [r for r in ROUTES if r["path"] != "/"]


def scrape(s):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % s.h2c_port,
                                timeout=10 * SLOW) as r:
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse(r.read().decode())


def parse(text):
    """{(name, sorted labels): value} of a scrape."""
    out = {}
    for fam in parser.text_string_to_metric_families(text):
        for smp in fam.samples:
            out[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return out


def val(m, name, **labels):
    return m.get((name, tuple(sorted(labels.items()))), 0)


def delta(a, b, name, **labels):
    return val(b, name, **labels) - val(a, name, **labels)


def test_counters_follow_a_known_workload(sluice_factory):
    require("curl")
    require("h2load")
    s = sluice_factory(workers=2, routes=METRICS_ROUTES)
    before = scrape(s)
    # 40 HTTP/2 requests of 1,000 body bytes on /_h/ over 4 connections
    r = subprocess.run(["h2load", "-n", "40", "-c", "4", "-m", "2",
                        "http://127.0.0.1:%d/_h/bytes/1000" % s.h2c_port],
                       capture_output=True, timeout=60 * SLOW)
    assert "40 succeeded" in r.stdout.decode(), r.stdout
    # 3 HTTP/1.1 404s outside every route, one upload of 5,000 bytes
    for _ in range(3):
        subprocess.run(["curl", "-s", "-o", "/dev/null", "--http1.1",
                        "http://127.0.0.1:%d/nowhere" % s.h2c_port], timeout=30 * SLOW)
    subprocess.run(["curl", "-s", "-o", "/dev/null", "--http1.1", "--data-binary", "@-",
                    "http://127.0.0.1:%d/_h/echo" % s.h2c_port],
                   input=b"x" * 5000, timeout=30 * SLOW)
    # one TLS connection
    subprocess.run(["curl", "-sk", "-o", "/dev/null"] + s.resolve() +
                   ["https://localhost:%d/_h/bytes/10" % s.tls_port], timeout=30 * SLOW)
    after = scrape(s)
    h2 = {"protocol": "h2", "route": "/_h/", "code": "2xx"}
    assert delta(before, after, "sluice_requests_total", **h2) == 40 + 1  # + the TLS one (h2 ALPN)
    assert delta(before, after, "sluice_requests_total",
                 protocol="http/1.1", route="", code="4xx") == 3
    assert delta(before, after, "sluice_requests_total",
                 protocol="http/1.1", route="/_h/", code="2xx") == 1
    assert delta(before, after, "sluice_response_bytes_total", protocol="h2") == 40 * 1000 + 10
    assert delta(before, after, "sluice_request_bytes_total", protocol="http/1.1") == 5000
    # the histogram counts every h2 request once, in cumulative buckets
    assert delta(before, after, "sluice_request_duration_seconds_count", protocol="h2") == 41
    assert delta(before, after, "sluice_request_duration_seconds_bucket",
                 protocol="h2", le="+Inf") == 41
    assert val(after, "sluice_request_duration_seconds_bucket", protocol="h2", le="10") >= \
        val(after, "sluice_request_duration_seconds_bucket", protocol="h2", le="0.001")
    # connections: h2load's 4 + curl's 5 on the cleartext listener, 1 on TLS
    clear = "127.0.0.1:%d" % s.h2c_port
    tls = "127.0.0.1:%d" % s.tls_port
    assert delta(before, after, "sluice_connections_accepted_total", listener=clear) >= 4 + 4
    assert delta(before, after, "sluice_connections_accepted_total", listener=tls) == 1
    assert val(after, "sluice_connections_open", listener=tls, protocol="h2") == 0
    assert delta(before, after, "sluice_tls_handshakes_total", version="TLSv1.3") == 1
    assert val(after, "process_open_fds") > 0
    assert val(after, "process_resident_memory_bytes") > 1 << 20


def test_metrics_route_refuses_unknown_keys(sluice_factory):
    from conftest import SLUICE_BIN, run
    s = sluice_factory(start=False, routes=[{"path": "/metrics", "handler": "metrics",
                                             "bogus": 1}])
    r = run([SLUICE_BIN, "-t", "-c", s.cfg_path])
    assert r.returncode == 1 and b"bogus: unknown key" in r.stderr, r.stderr


def test_h2_frames_abuse_and_websocket_families(sluice_factory):
    """RST_STREAM received by code, GOAWAY sent, the header-size limit,
    WebSocket sessions, messages and close codes, each moved by a known
    amount with real clients (python3-h2, curl, python3-websockets)."""
    import asyncio
    import socket

    import h2.connection
    import h2.errors
    import websockets

    routes = METRICS_ROUTES + [{"path": "/ws", "handler": "ws", "app": "echo"}]
    s = sluice_factory(workers=1, routes=routes)
    before = scrape(s)
    # two streams the client cancels, then a graceful close from the client
    sock = socket.create_connection(("127.0.0.1", s.h2c_port), timeout=10 * SLOW)
    c = h2.connection.H2Connection()
    c.initiate_connection()
    for sid in (1, 3):
        c.send_headers(sid, [(":method", "GET"), (":path", "/_h/delay/5000"),
                             (":scheme", "http"), (":authority", "x")])
        c.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    c.close_connection()
    sock.sendall(c.data_to_send())
    sock.settimeout(10 * SLOW)
    while sock.recv(65536):
        pass  # sluice answers our GOAWAY with its own and closes
    sock.close()
    # a DATA frame on stream 0: a connection error, GOAWAY(PROTOCOL_ERROR) sent
    sock = socket.create_connection(("127.0.0.1", s.h2c_port), timeout=10 * SLOW)
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" +
                 b"\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    while sock.recv(65536):
        pass
    sock.close()
    # one request head over h1_header_bytes: 431
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--http1.1",
                        "-H", "x-big: " + "a" * 70000,
                        "http://127.0.0.1:%d/healthz" % s.h2c_port],
                       capture_output=True, timeout=30 * SLOW)
    assert r.stdout == b"431"

    async def ws_session():
        async with websockets.connect("ws://127.0.0.1:%d/ws" % s.h2c_port,
                                      compression=None) as ws:
            for m in ("one", "two", "three"):
                await ws.send(m)
                assert await ws.recv() == m
            await ws.close(code=1000)

    asyncio.run(asyncio.wait_for(ws_session(), 20 * SLOW))
    after = scrape(s)
    assert delta(before, after, "sluice_h2_rst_stream_total",
                 direction="received", code="CANCEL") == 2
    assert delta(before, after, "sluice_h2_goaway_total",
                 direction="received", code="NO_ERROR") == 1
    assert delta(before, after, "sluice_h2_goaway_total",
                 direction="sent", code="PROTOCOL_ERROR") == 1
    assert delta(before, after, "sluice_abuse_limits_total", limit="header_size") == 1
    assert delta(before, after, "sluice_abuse_limits_total", limit="rapid_reset") == 0
    assert delta(before, after, "sluice_websocket_connections_total") == 1
    assert val(after, "sluice_websocket_connections_open") == 0
    assert delta(before, after, "sluice_websocket_messages_total", direction="received") == 3
    assert delta(before, after, "sluice_websocket_messages_total", direction="sent") == 3
    assert delta(before, after, "sluice_websocket_closes_total",
                 direction="received", code="1000") == 1
    assert delta(before, after, "sluice_websocket_closes_total",
                 direction="sent", code="1000") == 1


def test_h2_flow_control_stall(sluice_factory):
    """A python3-h2 client with a 1000-byte stream window asks for 4000
    bytes: the first DATA frame uses the window up (one stream stall), the
    WINDOW_UPDATE lets the rest go in one frame (none more)."""
    import socket

    import h2.connection
    import h2.events
    import h2.settings

    s = sluice_factory(workers=1, routes=METRICS_ROUTES)
    before = scrape(s)
    sock = socket.create_connection(("127.0.0.1", s.h2c_port), timeout=10 * SLOW)
    c = h2.connection.H2Connection()
    c.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    c.initiate_connection()
    c.send_headers(1, [(":method", "GET"), (":path", "/_h/bytes/4000"), (":scheme", "http"),
                       (":authority", "x")], end_stream=True)
    sock.sendall(c.data_to_send())
    got, updated, done = 0, False, False
    while not done:
        data = sock.recv(65536)
        assert data, "connection closed after %d bytes" % got
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                got += len(ev.data)
                c.acknowledge_received_data(0, ev.stream_id)  # credit later, by hand
            elif isinstance(ev, h2.events.StreamEnded):
                done = True
        if got == 1000 and not updated:
            time.sleep(0.2)  # the server is waiting on the window now
            c.increment_flow_control_window(3000, stream_id=1)
            updated = True
        sock.sendall(c.data_to_send())
    sock.close()
    assert got == 4000
    after = scrape(s)
    assert delta(before, after, "sluice_h2_flow_control_stalls_total", window="stream") == 1
    assert delta(before, after, "sluice_h2_flow_control_stalls_total", window="connection") == 0


def test_upstream_and_jobs_families(sluice_factory):
    from testservers import TcpServer

    class App(TcpServer):
        def handle(self, c, n):
            while True:  # one small request per read, kept alive
                data = c.recv(65536)
                if not data:
                    return
                if b"/app/slow" in data:
                    time.sleep(0.3)
                c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    app = App()
    dead_port = free_port()  # nothing listens there: connects are refused
    try:
        s = sluice_factory(
            workers=1,
            upstreams={"app": {"servers": [{"addr": "127.0.0.1:%d" % app.port}]},
                       "gone": {"servers": [{"addr": "127.0.0.1:%d" % dead_port}],
                                "retries": 0}},
            executors={"tick": {"type": "builtin", "kind": "ticker"}},
            jobs={"retain_bytes": 2048},
            routes=[{"path": "/app/", "handler": "proxy", "upstream": "app"},
                    {"path": "/gone/", "handler": "proxy", "upstream": "gone"},
                    {"path": "/v1/tick", "handler": "job", "executor": "tick"},
                    {"path": "/jobs", "handler": "jobs_api"}] + METRICS_ROUTES)
        before = scrape(s)
        for _ in range(5):
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                "http://127.0.0.1:%d/app/x" % s.h2c_port],
                               capture_output=True, timeout=30 * SLOW)
            assert r.stdout == b"200"
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            "http://127.0.0.1:%d/app/slow" % s.h2c_port],
                           capture_output=True, timeout=30 * SLOW)
        assert r.stdout == b"200"
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            "http://127.0.0.1:%d/gone/x" % s.h2c_port],
                           capture_output=True, timeout=30 * SLOW)
        assert r.stdout == b"502"
        pool = scrape(s)  # now: the pool shrinks back after a while without load
        r = subprocess.run(["curl", "-s", "-X", "POST",
                            "http://127.0.0.1:%d/v1/tick?n=3&interval_ms=1" % s.h2c_port],
                           capture_output=True, timeout=30 * SLOW)
        assert r.returncode == 0
        # 100 events of 100 bytes in 2 KiB of retention: most are dropped
        # (1 ms apart: at the default 100 ms the job took the whole deadline);
        # then one resumed read of its events
        import json
        r = subprocess.run(["curl", "-s", "-X", "POST", "-H", "Prefer: respond-async",
                            "http://127.0.0.1:%d/v1/tick?n=100&size=100&interval_ms=1"
                            % s.h2c_port],
                           capture_output=True, timeout=30 * SLOW, text=True)
        loc = [json.loads(r.stdout)["location"]]
        deadline = time.monotonic() + 10 * SLOW
        while json.loads(subprocess.run(
                ["curl", "-s", "http://127.0.0.1:%d%s" % (s.h2c_port, loc[0])],
                capture_output=True, timeout=30 * SLOW, text=True).stdout)["state"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = subprocess.run(["curl", "-s", "-H", "Last-Event-ID: 99", "-w", "\n%{http_code}",
                            "http://127.0.0.1:%d%s/events" % (s.h2c_port, loc[0])],
                           capture_output=True, timeout=30 * SLOW, text=True)
        assert r.stdout.endswith("200"), r.stdout[-300:]
        after = scrape(s)
        app_l = {"upstream": "app", "server": "127.0.0.1:%d" % app.port}
        gone_l = {"upstream": "gone", "server": "127.0.0.1:%d" % dead_port}
        assert delta(before, after, "sluice_upstream_requests_total", **app_l) == 6
        assert delta(before, after, "sluice_upstream_failures_total", **app_l) == 0
        assert delta(before, after, "sluice_upstream_requests_total", **gone_l) == 1
        assert delta(before, after, "sluice_upstream_failures_total", **gone_l) == 1
        assert val(after, "sluice_upstream_server_up", **app_l) == 1
        assert val(pool, "sluice_upstream_connections", **app_l) == 1  # kept alive
        assert val(pool, "sluice_upstream_idle_connections", **app_l) == 1
        assert delta(before, after, "sluice_jobs_submitted_total") == 2
        assert delta(before, after, "sluice_jobs_finished_total", state="succeeded") == 2
        assert delta(before, after, "sluice_jobs_events_total") >= 3
        assert val(after, "sluice_jobs_admitted", executor="tick") == 0
        assert val(after, "sluice_jobs_subscribers") == 0
        assert delta(before, after, "sluice_jobs_resumes_total") == 1
        assert delta(before, after, "sluice_jobs_events_dropped_total") >= 80
        # the latency of the 6 answered requests: 5 fast, one of 0.3 s
        lat = "sluice_upstream_response_seconds"
        assert delta(before, after, lat + "_count", **app_l) == 6
        assert delta(before, after, lat + "_bucket", le="0.25", **app_l) == 5
        assert delta(before, after, lat + "_bucket", le="0.5", **app_l) == 6
        assert 0.3 <= delta(before, after, lat + "_sum", **app_l) < 0.3 + 5 * SLOW
    finally:
        app.stop()


def test_jobs_queue_depth(sluice_factory):
    """Three jobs on an executor that runs one at a time: one running, two
    queued, by executor."""
    s = sluice_factory(
        workers=1,
        executors={"one": {"type": "builtin", "kind": "ticker", "concurrency": 1, "queue": 5}},
        routes=[{"path": "/v1/slow", "handler": "job", "executor": "one"}] + METRICS_ROUTES)
    for _ in range(3):
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                            "-H", "Prefer: respond-async",
                            "http://127.0.0.1:%d/v1/slow?n=2&interval_ms=5000" % s.h2c_port],
                           capture_output=True, timeout=30 * SLOW)
        assert r.stdout == b"202"
    m = scrape(s)
    assert val(m, "sluice_jobs_running", executor="one") == 1
    assert val(m, "sluice_jobs_queued", executor="one") == 2
    assert val(m, "sluice_jobs_admitted", executor="one") == 3
