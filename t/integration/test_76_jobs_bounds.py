"""Jobs are bounded (issue 9): a global budget for retained event bytes
(RSS sampled from /proc while one client submits jobs in a loop), resume
past the end refused at once, and a finished job expiring at its TTL even
while a subscriber is still reading it (who still gets everything).
Clients: python http.client, curl, raw sockets, python3-websockets."""

import asyncio
import http.client
import json
import socket
import time

import pytest

from conftest import ROUTES, SANITIZE, SLOW, curl

websockets = pytest.importorskip("websockets")


def config(**jobs):
    return {
        "executors": {"tick": {"type": "builtin", "kind": "ticker", "max_events": 10000}},
        "jobs": dict({"heartbeat_s": 1}, **jobs),
        "routes": [
            {"path": "/v1/tick", "handler": "job", "executor": "tick", "reply": "async"},
            {"path": "/jobs", "handler": "jobs_api"},
        ] + ROUTES,
    }


def h1(srv, method, path, headers=None, timeout=20):
    c = http.client.HTTPConnection("127.0.0.1", srv.h2c_port, timeout=timeout * SLOW)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def submit(srv, query):
    st, _, body = h1(srv, "POST", "/v1/tick?" + query)
    return st, (json.loads(body).get("id") if st == 202 else None)


def status(srv, jid):
    st, _, body = h1(srv, "GET", "/jobs/" + jid)
    return st, (json.loads(body) if st == 200 else None)


def wait_done(srv, jid, timeout=20):
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        st, s = status(srv, jid)
        if st != 200 or s["state"] not in ("queued", "running"):
            return st, s
        time.sleep(0.05)
    pytest.fail("job %s did not finish" % jid)


# ---- resume past the end ------------------------------------------------

@pytest.mark.parametrize("mode", ["h1", "h2c", "h2-tls"])
def test_resume_past_the_end_refused_at_once(sluice_factory, mode):
    s = sluice_factory(**config())
    st, jid = submit(s, "n=3&interval_ms=1")
    assert st == 202
    wait_done(s, jid)
    # started, 3 data, end: the last event is 5
    for extra in (["-H", "Last-Event-ID: 6"], []):
        path = "/jobs/%s/events%s" % (jid, "" if extra else "?from=1000000000000000")
        t0 = time.monotonic()
        r = curl(s, mode, path, *extra, timeout=10)
        assert time.monotonic() - t0 < 3 * SLOW, "not answered at once"
        assert r.status == 400, r
        assert "past the job's last event (5)" in r.json()["error"], r.body
    # the last event itself is fine: nothing more to send, the stream ends
    r = curl(s, mode, "/jobs/%s/events" % jid, "-H", "Last-Event-ID: 5", timeout=10)
    assert r.status == 200 and r.rc == 0, r


def test_ws_from_past_the_end(sluice_factory):
    s = sluice_factory(**config())
    st, jid = submit(s, "n=2&interval_ms=1")
    wait_done(s, jid)

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/jobs/ws" % s.h2c_port) as ws:
            for frm in (10 ** 15, 5):  # started, 2 data, end: the last is 4
                await ws.send(json.dumps({"op": "subscribe", "id": jid, "from": frm}))
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert m["op"] == "error" and m["status"] == 400, m
                assert "past the job's last event (4)" in m["error"], m
            await ws.send(json.dumps({"op": "subscribe", "id": jid, "from": 1e15}))
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert m["op"] == "error" and m["status"] == 400, m
            await ws.send(json.dumps({"op": "subscribe", "id": jid, "from": 3}))
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert m["op"] == "subscribed", m
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert m["seq"] == 4 and m["type"] == "end", m
    asyncio.run(asyncio.wait_for(go(), 30))


# ---- expiry does not wait for readers -------------------------------------

def test_subscribed_finished_job_still_expires(sluice_factory):
    n, size = 200, 65536  # 13 MB: far past what the sockets hold
    s = sluice_factory(**config(ttl_s=1, max_jobs=1, retain_bytes=32 << 20,
                                max_retained_bytes=64 << 20))
    st, jid = submit(s, "n=%d&size=%d&interval_ms=0" % (n, size))
    assert st == 202
    wait_done(s, jid)
    reader = socket.create_connection(("127.0.0.1", s.h2c_port), timeout=30 * SLOW)
    # a small window keeps most of the 13 MB waiting in sluice (a 4 KiB
    # one would also make reading it back a crawl)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    reader.sendall(("GET /jobs/%s/events HTTP/1.1\r\nHost: x\r\n\r\n" % jid).encode())
    time.sleep(0.5)  # the reply is attached and stuck behind the reader
    deadline = time.monotonic() + 10 * SLOW
    while status(s, jid)[0] != 410 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status(s, jid)[0] == 410, "a subscriber kept the job alive past its TTL"
    st, jid2 = submit(s, "n=1")  # max_jobs = 1: the slot is free again
    assert st == 202, st
    # and the reader still gets every event, then the end
    chunks, tail = [], b""
    while True:
        d = reader.recv(1 << 20)
        if not d:
            break
        chunks.append(d)
        tail = (tail + d)[-200:]
        if b"event: end" in tail:
            break
    reader.close()
    data = b"".join(chunks)
    assert data.count(b"event: data") == n, data.count(b"event: data")
    assert b"event: dropped" not in data


# ---- the global byte budget ----------------------------------------------

def test_global_retained_budget_holds(sluice_factory):
    if SANITIZE:
        pytest.skip("RSS means nothing under ASan's quarantine")
    budget = 24 << 20
    s = sluice_factory(workers=1, **config(max_retained_bytes=budget, retain_bytes=16 << 20))
    time.sleep(0.3)
    start = s.rss_kb()
    peak, done, refused = start, [], 0
    for _ in range(40):  # 40 x 6.5 MB of output: 260 MB without the budget
        st, jid = submit(s, "n=100&size=65536&interval_ms=0")
        if st == 503:
            refused += 1
            time.sleep(0.05)
            continue
        assert st == 202, st
        wait_done(s, jid)
        done.append(jid)
        peak = max(peak, s.rss_kb())
    assert len(done) >= 10, (len(done), refused)
    grown = peak - start
    print("budget %d KiB: RSS %d -> peak %d KiB (+%d), %d jobs done, %d refused" % (
        budget >> 10, start, peak, grown, len(done), refused))
    assert grown < (budget >> 10) + 24 * 1024, "RSS grew %d KiB for a %d KiB budget" % (
        grown, budget >> 10)
    # the oldest finished jobs paid for it, and say so
    st, first = status(s, done[0])
    assert st == 200 and first["dropped_upto"] > 0, first
    r = curl(s, "h1", "/jobs/%s/events" % done[0], timeout=10)
    assert b"event: dropped" in r.body and b"event: end" in r.body
