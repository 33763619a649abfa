"""The broadcast app: /_h/ws/broadcast/{channel}. Messages reach every
subscriber on the channel on every worker (workers: 2, ~20 clients), other
channels stay quiet, the channel/subscriber bounds answer 503, and a
subscriber that stops reading is closed (1013) while the others keep
receiving everything."""

import asyncio
import time

import pytest

from conftest import module_server

import wsraw
from wsraw import WSConn

websockets = pytest.importorskip("websockets")

ROUTES = [
    {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
    {"path": "/_h/ws/broadcast/", "handler": "ws", "app": "broadcast",
     "send_queue_bytes": 65536, "max_channels": 4, "max_subscribers": 30},
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    with module_server(tmp_path_factory, certs, "wsb", routes=ROUTES, workers=2) as s:
        yield s


def url(srv, chan):
    return "ws://127.0.0.1:%d/_h/ws/broadcast/%s" % (srv.h2c_port, chan)


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_fanout_across_workers(srv):
    n = 20

    async def go():
        clients = [await websockets.connect(url(srv, "room"), compression=None) for _ in range(n)]
        other = await websockets.connect(url(srv, "elsewhere"), compression=None)
        await asyncio.sleep(0.2)  # subscriptions on the other worker are counted
        for i, c in enumerate(clients):
            await c.send("from %d" % i)
            # everybody (the sender too) sees it before the next one goes
            got = await asyncio.gather(*[asyncio.wait_for(x.recv(), 10) for x in clients])
            assert got == ["from %d" % i] * n
        await clients[0].send(b"\x00binary\xff")
        got = await asyncio.gather(*[asyncio.wait_for(x.recv(), 10) for x in clients])
        assert got == [b"\x00binary\xff"] * n
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(other.recv(), 0.5)
        for c in clients + [other]:
            await c.close()
    run(go())
    lines = srv.wait_access(
        lambda ls: len([x for x in ls if x.get("path") == "/_h/ws/broadcast/room"]) >= n)
    workers = {x.get("worker") for x in lines if x.get("path") == "/_h/ws/broadcast/room"}
    assert len(workers) == 2, "subscribers all landed on one worker: %r" % workers


def test_channel_and_subscriber_limits(srv):
    async def go():
        held = [await websockets.connect(url(srv, "c%d" % i), compression=None)
                for i in range(4)]
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await websockets.connect(url(srv, "c-one-too-many"), compression=None)
        assert e.value.status_code == 503
        subs = [await websockets.connect(url(srv, "c0"), compression=None) for _ in range(29)]
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await websockets.connect(url(srv, "c0"), compression=None)
        assert e.value.status_code == 503
        for c in held + subs:
            await c.close()
        # the channels are gone with their subscribers: room for new ones
        await asyncio.sleep(0.2)
        c = await websockets.connect(url(srv, "fresh"), compression=None)
        await c.close()
    run(go())


def test_slow_subscriber_closed_others_keep_receiving(srv):
    msg = "m" * 16384
    count = 400  # 6.5 MB: far past socket buffers + send_queue_bytes
    slow = WSConn(srv.h2c_port, "/_h/ws/broadcast/slowroom", rcvbuf=4096)
    assert slow.status == 101

    async def go():
        pub = await websockets.connect(url(srv, "slowroom"), compression=None, max_size=None)
        fast = [await websockets.connect(url(srv, "slowroom"), compression=None, max_size=None,
                                        max_queue=None)
                for _ in range(3)]
        await asyncio.sleep(0.2)
        for i in range(count):
            # lock step: every reader has message i before i+1 goes out,
            # so only the stalled one falls behind
            await pub.send(msg)
            got = await asyncio.gather(*[asyncio.wait_for(x.recv(), 10) for x in [pub] + fast])
            assert got == [msg] * (1 + len(fast))
        for c in [pub] + fast:
            await c.close()
    try:
        run(go(), timeout=60)
        deadline = time.monotonic() + 15
        while "too slowly" not in srv.stderr() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "too slowly" in srv.stderr()
        # the slow one is cut off: reading what is left ends in EOF, well
        # short of all 400 messages
        frames, code = 0, None
        try:
            while True:
                f = slow.recv_frame(timeout=15)
                if f.op == wsraw.CLOSE:
                    code = f.code
                    break
                frames += 1
        except wsraw.Closed:
            pass
        assert frames < count
        assert code == 1013, "slow subscriber not told why (close code %r)" % code
    finally:
        slow.close()


def test_inbox_bound_by_bytes(sluice_factory):
    """A worker's inbox holds at most inbox_bytes of messages (not a count
    of messages that may each be 1 MiB). A burst that overflows it closes
    that worker's subscribers of the channel with 1013: every subscriber
    gets an unbroken prefix of the messages, and one that misses any is
    told so, never left with a silent gap."""
    s = sluice_factory(workers=2, routes=[
        ROUTES[0],
        {"path": "/_h/ws/broadcast/", "handler": "ws", "app": "broadcast",
         "send_queue_bytes": 64 << 20, "max_message_bytes": 65536, "inbox_bytes": 65536}])
    count, size = 300, 30000
    msgs = [i.to_bytes(4, "big") + bytes([i % 251]) * (size - 4) for i in range(count)]

    async def reader(c):
        got, code = 0, None
        try:
            while got < count:
                m = await asyncio.wait_for(c.recv(), 20)
                assert m == msgs[got], "message %d out of order or changed" % got
                got += 1
        except websockets.exceptions.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
        return got, code

    async def go():
        subs = [await websockets.connect(url(s, "burst"), compression=None, max_size=None,
                                        max_queue=None) for _ in range(8)]
        await asyncio.sleep(0.3)
        pub = WSConn(s.h2c_port, "/_h/ws/broadcast/burst")
        assert pub.status == 101
        pub.send(b"".join(wsraw.frame(wsraw.BINARY, m) for m in msgs))
        res = await asyncio.gather(*[reader(c) for c in subs])
        pub.close()
        for c in subs:
            await c.close()
        return res
    res = run(go(), timeout=90)
    for got, code in res:
        assert got == count or code == 1013, (got, code)
    if any(got < count for got, _ in res):
        assert "inbox over 65536 bytes" in s.stderr()
    print("subscribers cut by the inbox bound:", sum(got < count for got, _ in res))
