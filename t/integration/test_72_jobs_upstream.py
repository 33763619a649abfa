"""Jobs, "upstream" executor (issue 5): the job's request goes to an upstream
group (uvicorn running t/integration/apps/asgi_app.py); status, headers and
the streamed body become job events; the job outlives its client. Clients:
curl over h1 / h2c / h2+TLS."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import ROUTES, SLOW, curl, free_port, module_server, require

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
PY = "/usr/bin/python3"
MODES = ["h1", "h2c", "h2-tls"]


def pattern(n):
    block = bytes(range(256))
    return (block * (n // 256 + 1))[:n]


@pytest.fixture(scope="module")
def app():
    pytest.importorskip("uvicorn")
    port = free_port()
    p = subprocess.Popen([PY, "-m", "uvicorn", "--app-dir", APPS, "asgi_app:app", "--host",
                          "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 15 * SLOW
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        p.kill()
        pytest.fail("uvicorn did not start")
    yield port
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs, app):
    dead = free_port()
    with module_server(
            tmp_path_factory, certs, "jobsup",
            upstreams={"app": {"servers": ["127.0.0.1:%d" % app]},
                       "dead": {"servers": ["127.0.0.1:%d" % dead]}},
            executors={
                "app": {"type": "upstream", "upstream": "app",
                        "headers": ["accept", "content-type", "x-pass"]},
                "streamer": {"type": "upstream", "upstream": "app", "path": "/stream"},
                "dead": {"type": "upstream", "upstream": "dead"},
            },
            routes=[
                {"path": "/stream", "match": "exact", "handler": "job", "executor": "app"},
                {"path": "/sha256", "match": "exact", "handler": "job", "executor": "app"},
                {"path": "/headers", "match": "exact", "handler": "job", "executor": "app"},
                {"path": "/status/", "handler": "job", "executor": "app"},
                {"path": "/v1/streamed", "handler": "job", "executor": "streamer"},
                {"path": "/v1/dead", "handler": "job", "executor": "dead"},
                {"path": "/jobs", "handler": "jobs_api"},
            ] + ROUTES) as s:
        yield s


def get(srv, path, *args, timeout=20):
    return curl(srv, "h1", path, *args, timeout=timeout).body


def status(srv, jid):
    return json.loads(get(srv, "/jobs/" + jid))


def result(srv, jid):
    return get(srv, "/jobs/%s/result" % jid, "-H", "Prefer: wait=15")


@pytest.mark.parametrize("mode", MODES)
def test_stream_reply_carries_the_upstream_body(srv, mode):
    require("curl")
    r = curl(srv, mode, "/stream?n=20&size=1000&delay=0.01")
    assert r.status == 200, r
    assert r.body == pattern(1000) * 20
    jid = r.header("job-id")
    st = status(srv, jid)
    assert st["state"] == "succeeded" and st["exit_code"] == 200
    assert st["data_bytes"] == 20000


def test_events_record_status_and_headers(srv):
    require("curl")
    a = json.loads(get(srv, "/v1/streamed?n=3&size=5", "-H", "Prefer: respond-async"))
    ev = get(srv, "/jobs/%s/events" % a["id"]).decode()
    progress = [line for line in ev.split("\n\n") if "event: progress" in line]
    assert progress, ev
    head = json.loads(progress[0].split("data: ", 1)[1])
    assert head["status"] == 200
    assert ["content-type", "application/octet-stream"] in head["headers"]
    assert result(srv, a["id"]) == pattern(5) * 3   # path override: /stream
    assert "event: end" in ev


def test_request_body_streams_upstream(srv):
    require("curl")
    body = os.urandom(3 << 20)
    r = subprocess.run(["curl", "-sS", "--max-time", "30", "--data-binary", "@-",
                        "-H", "Prefer: wait=20",
                        "http://127.0.0.1:%d/sha256" % srv.h2c_port],
                       input=body, capture_output=True, timeout=40)
    got = json.loads(r.stdout)
    assert got == {"sha256": hashlib.sha256(body).hexdigest(), "len": len(body)}


def test_selected_headers_and_trace(srv):
    require("curl")
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    hs = json.loads(get(srv, "/headers", "-H", "Prefer: wait=10", "-H", "Accept: x/y",
                        "-H", "X-Pass: 1", "-H", "X-Secret: no", "-H", "traceparent: " + tp))
    names = dict((k, v) for k, v in hs)
    assert names["accept"] == "x/y" and names["x-pass"] == "1"
    assert "x-secret" not in names
    assert names["traceparent"] == tp
    assert len(names["job-id"]) == 26


def test_error_status_fails_the_job(srv):
    require("curl")
    a = json.loads(get(srv, "/status/503", "-H", "Prefer: respond-async"))
    result(srv, a["id"])
    st = status(srv, a["id"])
    assert st["state"] == "failed" and st["exit_code"] == 503


def test_dead_upstream_is_a_failed_job(srv):
    require("curl")
    a = json.loads(get(srv, "/v1/dead", "-H", "Prefer: respond-async"))
    ev = get(srv, "/jobs/%s/events" % a["id"]).decode()
    assert "event: error" in ev and "event: end" in ev
    assert status(srv, a["id"])["state"] == "failed"


def test_job_outlives_its_client(srv):
    require("curl")
    p = subprocess.run(["curl", "-sS", "-D", "-", "--max-time", "0.7",
                        "http://127.0.0.1:%d/stream?n=25&size=100&delay=0.1" % srv.h2c_port],
                       capture_output=True, timeout=10)
    assert p.returncode == 28   # cut by --max-time mid-stream
    jid = [l.split(b":", 1)[1].strip() for l in p.stdout.split(b"\r\n")
           if l.lower().startswith(b"job-id:")][0].decode()
    assert status(srv, jid)["state"] == "running"
    assert result(srv, jid) == pattern(100) * 25
    assert status(srv, jid)["exit_code"] == 200


def test_cancel_stops_the_upstream_request(srv):
    require("curl")
    a = json.loads(get(srv, "/stream?n=100&size=10&delay=0.2", "-H", "Prefer: respond-async"))
    time.sleep(0.5)
    subprocess.run(["curl", "-sS", "-X", "DELETE", "--max-time", "5",
                    "http://127.0.0.1:%d/jobs/%s" % (srv.h2c_port, a["id"])],
                   capture_output=True, timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and status(srv, a["id"])["state"] == "running":
        time.sleep(0.05)
    st = status(srv, a["id"])
    assert st["state"] == "cancelled" and st["data_bytes"] < 1000
