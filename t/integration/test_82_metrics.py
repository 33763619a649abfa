"""The metrics handler (issue 13, first slice): scraped with Debian's
python3-prometheus-client text parser, the counters move by exactly what a
known workload did - requests by protocol, route and status class, body
bytes, the duration histogram, connections by listener and protocol, TLS
handshakes - summed over both workers."""

import subprocess
import urllib.request

import pytest

from conftest import ROUTES, SLOW, require

parser = pytest.importorskip("prometheus_client.parser")

# the suite's routes without its catch-all "/": /nowhere is then a 404 outside every route
METRICS_ROUTES = [{"path": "/metrics", "match": "exact", "handler": "metrics"}] + \
    [r for r in ROUTES if r["path"] != "/"]


def scrape(s):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % s.h2c_port,
                                timeout=10 * SLOW) as r:
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
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
