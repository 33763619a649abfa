"""Jobs over WebSocket (issue 5): /jobs/ws carries JSON subscribe /
unsubscribe / cancel for many jobs at once, events as JSON messages. Over
HTTP/1.1 with python3-websockets and over HTTP/2 extended CONNECT with
python3-h2; results are checked against /jobs/{id}/result fetched with
curl, so the comparison does not rest on our own client code alone."""

import asyncio
import base64
import json
import subprocess
import time

import pytest

from conftest import ROUTES, module_server, require

websockets = pytest.importorskip("websockets")


def config():
    return {
        "executors": {
            "tick": {"type": "builtin", "kind": "ticker", "max_events": 10000},
        },
        "jobs": {"retain_bytes": 16 << 20},
        "routes": [
            {"path": "/v1/tick", "handler": "job", "executor": "tick", "reply": "async"},
            {"path": "/jobs", "handler": "jobs_api", "ws_max_jobs": 4,
             "ws_send_queue_bytes": 65536},
        ] + ROUTES,
    }


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    with module_server(tmp_path_factory, certs, "jobsws", **config()) as s:
        yield s


def submit(srv, query):
    """Start a ticker job (202) with curl; returns its id."""
    out = subprocess.run(["curl", "-sS", "--max-time", "10", "-H", "Prefer: respond-async",
                          "http://127.0.0.1:%d/v1/tick?%s" % (srv.h2c_port, query)],
                         capture_output=True, check=True, timeout=15).stdout
    return json.loads(out)["id"]


def wait_events(srv, jid, n, timeout=10.0):
    """Until job jid has at least n events: resuming "from" a seq the job
    has not reached yet is refused (docs/jobs.md, resume past the end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = json.loads(subprocess.run(["curl", "-sS", "--max-time", "5",
                                        "http://127.0.0.1:%d/jobs/%s" % (srv.h2c_port, jid)],
                                       capture_output=True, timeout=10).stdout)
        if st["last_seq"] >= n:
            return
        time.sleep(0.02)
    pytest.fail("job %s did not reach %d events" % (jid, n))


def result(srv, jid):
    out = subprocess.run(["curl", "-sS", "--max-time", "20", "-H", "Prefer: wait=15",
                          "http://127.0.0.1:%d/jobs/%s/result" % (srv.h2c_port, jid)],
                         capture_output=True, check=True, timeout=25).stdout
    return out


def payload(m):
    d = m["data"]
    return base64.b64decode(d) if m.get("encoding") == "base64" else d.encode()


def check_stream(msgs, first_seq=1):
    """Events of one job: seq contiguous from first_seq, ends with end."""
    seqs = [m["seq"] for m in msgs]
    assert seqs == list(range(first_seq, first_seq + len(seqs))), seqs
    assert msgs[-1]["type"] == "end"
    return b"".join(payload(m) for m in msgs if m["type"] == "data")


async def collect(ws, ids, timeout=20):
    """Read messages until every id has its end event."""
    per = {i: [] for i in ids}
    ops = []
    left = set(ids)
    deadline = time.monotonic() + timeout
    while left:
        raw = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
        m = json.loads(raw)
        if "op" in m:
            ops.append(m)
            continue
        per[m["id"]].append(m)
        if m["type"] == "end":
            left.discard(m["id"])
    return per, ops


def ws_url(srv):
    return "ws://127.0.0.1:%d/jobs/ws" % srv.h2c_port


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_three_jobs_on_one_socket_h1(srv):
    require("curl")
    ids = [submit(srv, "n=%d&size=%d&interval_ms=10" % (20 + 5 * k, 16 + 40 * k))
           for k in range(3)]

    async def go():
        async with websockets.connect(ws_url(srv), max_size=None) as ws:
            for i in ids:
                await ws.send(json.dumps({"op": "subscribe", "id": i, "from": 0}))
            return await collect(ws, ids)
    per, ops = run(go())
    assert sorted(o["id"] for o in ops if o["op"] == "subscribed") == sorted(ids)
    for k, i in enumerate(ids):
        types = [m["type"] for m in per[i]]
        assert types[0] == "started" and types.count("data") == 20 + 5 * k
        assert per[i][-1]["data"]["state"] == "succeeded"
        assert check_stream(per[i]) == result(srv, i)


def test_resume_from_n_exactly(srv):
    require("curl")
    jid = submit(srv, "n=30&size=24&interval_ms=0")
    full = result(srv, jid)

    async def go(frm):
        async with websockets.connect(ws_url(srv)) as ws:
            await ws.send(json.dumps({"op": "subscribe", "id": jid, "from": frm}))
            return await collect(ws, [jid])
    per, _ = run(go(0))
    all_msgs = per[jid]
    for n in (1, 7, 20):
        per2, ops = run(go(n))
        assert ops[0] == {"op": "subscribed", "id": jid, "from": n, "state": "succeeded"}
        got = per2[jid]
        assert got[0]["seq"] == n + 1
        check_stream(got, n + 1)
        assert got == all_msgs[n:]
    assert check_stream(all_msgs) == full


def test_cancel_via_ws(srv):
    jid = submit(srv, "n=10000&size=16&interval_ms=50")

    async def go():
        async with websockets.connect(ws_url(srv)) as ws:
            await ws.send(json.dumps({"op": "subscribe", "id": jid}))
            seen = 0
            while seen < 3:
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                seen += m.get("type") == "data"
            await ws.send(json.dumps({"op": "cancel", "id": jid}))
            return await collect(ws, [jid])
    per, ops = run(go())
    assert {"op": "cancelled", "id": jid} in ops
    assert per[jid][-1]["type"] == "end"
    assert per[jid][-1]["data"]["state"] == "cancelled"
    st = json.loads(subprocess.run(["curl", "-sS", "--max-time", "5",
                                    "http://127.0.0.1:%d/jobs/%s" % (srv.h2c_port, jid)],
                                   capture_output=True, timeout=10).stdout)
    assert st["state"] == "cancelled"
    assert st["last_seq"] < 200


def test_errors_and_bounds(srv):
    ids = [submit(srv, "n=1000&size=16&interval_ms=100") for _ in range(5)]

    async def go():
        out = []
        async with websockets.connect(ws_url(srv)) as ws:
            for msg in ["not json", json.dumps({"op": "subscribe"}),
                        json.dumps({"op": "fly", "id": ids[0]}),
                        json.dumps({"op": "subscribe", "id": "0" * 26}),
                        json.dumps({"op": "subscribe", "id": ids[0], "from": -1}),
                        json.dumps({"op": "unsubscribe", "id": ids[0]})]:
                await ws.send(msg)
                out.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            for i in ids:   # ws_max_jobs is 4: the fifth is refused
                await ws.send(json.dumps({"op": "subscribe", "id": i}))
            acks = []
            while len(acks) < 5:
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if "op" in m:
                    acks.append(m)
            await ws.send(json.dumps({"op": "subscribe", "id": ids[0]}))
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if "op" in m:
                    acks.append(m)
                    break
            await ws.send(json.dumps({"op": "unsubscribe", "id": ids[1]}))
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if "op" in m:
                    acks.append(m)
                    break
            for i in ids:
                await ws.send(json.dumps({"op": "cancel", "id": i}))
            return out, acks
    out, acks = run(go())
    assert [m["status"] for m in out] == [400, 400, 400, 404, 400, 404]
    assert all(m["op"] == "error" for m in out)
    assert [a["op"] for a in acks[:5]].count("subscribed") == 4
    assert [a.get("status") for a in acks[:5]].count(429) == 1
    assert acks[5]["status"] == 409
    assert acks[6] == {"op": "unsubscribed", "id": ids[1]}


def test_slow_reader_gets_everything(srv):
    """2 MB of output through a 64 KiB send queue while the client does
    not read for a while: the subscription pulls at the reader's pace and
    nothing is lost or repeated."""
    require("curl")
    jid = submit(srv, "n=500&size=4000&interval_ms=0")

    async def go():
        async with websockets.connect(ws_url(srv), max_size=None, max_queue=1,
                                      read_limit=4096) as ws:
            await ws.send(json.dumps({"op": "subscribe", "id": jid}))
            await asyncio.sleep(1.5)
            return await collect(ws, [jid], timeout=40)
    per, _ = run(go())
    data = check_stream(per[jid])
    assert len(data) == 500 * 4000
    assert data == result(srv, jid)


h2conn = pytest.importorskip("h2.connection")


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2-tls"])
def test_three_jobs_over_h2_extended_connect(srv, tls):
    from test_45_ws_h2 import Client
    from wsraw import TEXT, frame
    require("curl")
    ids = [submit(srv, "n=%d&size=32&interval_ms=5" % (10 + k)) for k in range(3)]
    for i in ids:
        wait_events(srv, i, 2)  # subscribed "from": 2 below
    c = Client(srv.tls_port if tls else srv.h2c_port, tls)
    try:
        c.pump(2.0, lambda: 8 in c.remote_settings)
        sid = c.connect_ws(path="/jobs/ws")
        c.pump(5, lambda: c.st(sid)["headers"] is not None)
        assert c.st(sid)["headers"][":status"] == "200"
        for i in ids:
            c.send(sid, frame(TEXT, json.dumps({"op": "subscribe", "id": i,
                                                "from": 2}).encode()))
        per = {i: [] for i in ids}
        left = set(ids)
        deadline = time.monotonic() + 20
        while left and time.monotonic() < deadline:
            f = c.frame(sid, timeout=deadline - time.monotonic())
            assert f.op == TEXT
            m = json.loads(f.payload)
            if "op" in m:
                assert m["op"] == "subscribed", m
                continue
            per[m["id"]].append(m)
            if m["type"] == "end":
                left.discard(m["id"])
        assert not left
        for k, i in enumerate(ids):
            data = check_stream(per[i], 3)
            # seq 1 is started, 2 is the first tick: from=2 skips exactly it
            assert data == result(srv, i)[32:]
    finally:
        c.close()
