"""Honest job outcomes (issue 9): a client that goes away mid-upload never
produces a "succeeded" job from a partial body. The job fails with
client_aborted; an exec child is killed with its group; the upstream
executor closes its connection instead of ending the chunked body, so the
app never sees a complete request. Clients: raw HTTP/1.1 sockets and
python3-h2; upstream: uvicorn running apps/asgi_app.py."""

import socket
import time

import pytest

import h1raw
import h2raw
from conftest import ROUTES, SLOW, module_server
from test_60_proxy import Upstream


@pytest.fixture(scope="module")
def app():
    u = Upstream("uvicorn").start()
    yield u.port
    u.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs, app):
    with module_server(
            tmp_path_factory, certs, "outcomes",
            upstreams={"app": {"servers": ["127.0.0.1:%d" % app]}},
            executors={
                "cat": {"type": "exec", "argv": ["/bin/cat"]},
                "hook": {"type": "upstream", "upstream": "app", "path": "/hooks/up",
                         "headers": ["job-id"]},
            },
            routes=[
                {"path": "/v1/cat", "handler": "job", "executor": "cat"},
                {"path": "/v1/hook", "handler": "job", "executor": "hook"},
                {"path": "/jobs", "handler": "jobs_api"},
            ] + ROUTES) as s:
        s.app_port = app
        yield s


def get_json(port, path):
    with h1raw.H1Conn(port) as c:
        c.send(h1raw.request("GET", path, [("Connection", "close")]))
        return c.read_response(timeout=10 * SLOW).json()


def wait_final(srv, jid):
    deadline = time.monotonic() + 15 * SLOW
    while time.monotonic() < deadline:
        st = get_json(srv.h2c_port, "/jobs/" + jid)
        if st["state"] not in ("queued", "running"):
            return st
        time.sleep(0.05)
    pytest.fail("job %s never finished" % jid)


def events(srv, jid):
    with h1raw.H1Conn(srv.h2c_port) as c:
        c.send(h1raw.request("GET", "/jobs/%s/events" % jid, [("Connection", "close")]))
        return c.read_response(timeout=10 * SLOW).body.decode()


def abort_h1(srv, path, tag):
    """Head + 1000 of 100000 body bytes, read the response head (stream
    mode answers at once), then go away. Returns the job id."""
    s = socket.create_connection(("127.0.0.1", srv.h2c_port), timeout=10 * SLOW)
    s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\njob-id: %s\r\n\r\n"
               % (path, tag)).encode() + b"a" * 1000)
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        assert d, "no response head"
        head += d
    jid = [l.split(b":", 1)[1].strip().decode() for l in head.split(b"\r\n")
           if l.lower().startswith(b"job-id:")][0]
    time.sleep(0.3)
    s.close()
    return jid


def test_exec_job_fails_when_the_upload_is_cut(srv):
    jid = abort_h1(srv, "/v1/cat", "cat-1")
    st = wait_final(srv, jid)
    assert st["state"] == "failed", st
    ev = events(srv, jid)
    assert '"error":"client_aborted"' in ev, ev
    assert "client went away mid-upload" in srv.stderr()


def test_exec_job_h2_stream_reset_mid_upload(srv):
    with h2raw.H2Client(srv.h2c_port) as c:
        sid = c.request("/v1/cat", method="POST", headers=[("content-length", "100000")],
                        end_stream=False)
        c.conn.send_data(sid, b"b" * 1000)
        c.flush()
        c.pump(lambda: c.streams[sid].status is not None, 10 * SLOW)
        jid = dict(c.streams[sid].headers)["job-id"]
        c.conn.reset_stream(sid)
        c.flush()
    st = wait_final(srv, jid)
    assert st["state"] == "failed", st
    assert '"error":"client_aborted"' in events(srv, jid)


def test_complete_upload_still_succeeds(srv):
    with h1raw.H1Conn(srv.h2c_port) as c:
        c.send(b"POST /v1/cat HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               b"Connection: close\r\n\r\nhello")
        r = c.read_response(timeout=10 * SLOW)
    assert r.body == b"hello"
    assert wait_final(srv, r.header("job-id"))["state"] == "succeeded"


def test_upstream_never_sees_a_complete_request(srv):
    tag = "hook-%d" % time.monotonic_ns()
    jid = abort_h1(srv, "/v1/hook", tag)
    st = wait_final(srv, jid)
    assert st["state"] == "failed", st
    time.sleep(0.5)
    recs = get_json(srv.app_port, "/hooks/last?job=" + tag)
    assert all(not r["complete"] for r in recs), recs
    # control: a whole body arrives whole
    tag2 = tag + "-ok"
    with h1raw.H1Conn(srv.h2c_port) as c:
        c.send(("POST /v1/hook HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\njob-id: %s\r\n"
                "Connection: close\r\n\r\nhello" % tag2).encode())
        c.read_response(timeout=10 * SLOW)
    deadline = time.monotonic() + 10 * SLOW
    recs = []
    while not recs and time.monotonic() < deadline:
        recs = get_json(srv.app_port, "/hooks/last?job=" + tag2)
        time.sleep(0.1)
    assert recs and recs[0]["complete"] and recs[0]["body"] == "hello", recs
