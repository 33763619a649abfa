"""Jobs shared through Redis (issue 12): two sluice instances on one real
redis-server (started here on a free port in a temp dir). A job made on
A is found, read, resumed with Last-Event-ID, subscribed over /jobs/ws
and cancelled on B; owners hold on B as on A; with Redis gone job routes
answer 503 + Retry-After while everything else is served, and sluice
reconnects by itself when Redis is back. Clients: python http.client,
python3-websockets, redis-py (to look at what sluice wrote)."""

import asyncio
import concurrent.futures
import hashlib
import http.client
import json

import pytest

from conftest import ROUTES, SLOW, wait_for
from redisserver import RedisServer
from test_76_jobs_bounds import h1

websockets = pytest.importorskip("websockets")


def config(redis_url, **jobs):
    return {
        "executors": {"tick": {"type": "builtin", "kind": "ticker", "max_events": 10000}},
        "jobs": dict({"heartbeat_s": 1, "store": {"type": "redis", "url": redis_url,
                                                  "prefix": "t90:", "timeout_ms": 1000}},
                     **jobs),
        "routes": [
            {"path": "/v1/tick", "handler": "job", "executor": "tick", "reply": "async"},
            {"path": "/v1/mine", "handler": "job", "executor": "tick", "reply": "async",
             "owner": "header:x-user"},
            {"path": "/v1/raw", "handler": "job", "executor": "tick", "owner": "header:x-user"},
            {"path": "/mine", "handler": "jobs_api", "owner": "header:x-user"},
            {"path": "/jobs", "handler": "jobs_api"},
            {"path": "/metrics", "handler": "metrics"},
        ] + ROUTES,
    }


@pytest.fixture
def pair(tmp_path, sluice_factory):
    r = RedisServer(str(tmp_path)).start()
    key = tmp_path / "owner.key"
    key.write_text("k" * 32)
    cfg = config(r.url, owner_key_file=str(key))
    a, b = sluice_factory(**cfg), sluice_factory(**cfg)
    yield r, a, b
    a.stop()
    b.stop()
    r.stop()


def submit(srv, query, path="/v1/tick", headers=None):
    st, hdrs, body = h1(srv, "POST", path + "?" + query, headers)
    assert st == 202, (st, body)
    return json.loads(body)["id"]


def sse(srv, jid, last=None, stop_at=None, prefix="/jobs"):
    """The event blocks of /events (heartbeat comments left out), up to
    and including id stop_at, or to the end of the stream."""
    c = http.client.HTTPConnection("127.0.0.1", srv.h2c_port, timeout=20 * SLOW)
    headers = {"accept": "text/event-stream"}
    if last is not None:
        headers["last-event-id"] = str(last)
    c.request("GET", "%s/%s/events" % (prefix, jid), headers=headers)
    r = c.getresponse()
    assert r.status == 200, r.read()
    blocks, cur = [], []
    while True:
        line = r.readline()
        if not line:
            break
        if line.startswith(b":"):
            continue
        if line == b"\n":
            if cur:
                blocks.append(b"".join(cur))
                if stop_at is not None and cur[0] == b"id: %d\n" % stop_at:
                    break
            cur = []
            continue
        cur.append(line)
    c.close()
    return blocks


def wait_state(srv, jid, states, timeout=20):
    got = {}

    def done():
        st, _, body = h1(srv, "GET", "/jobs/" + jid)
        got["st"], got["body"] = st, body
        return st == 200 and json.loads(body)["state"] in states
    assert wait_for(done, timeout * SLOW), got
    return json.loads(got["body"])


def test_resume_on_the_other_instance_is_exact(pair):
    r, a, b = pair
    jid = submit(a, "n=60&interval_ms=20&size=48")
    first = sse(a, jid, stop_at=20)  # A, then the client moves
    rest = sse(b, jid, last=20)      # B, live from Redis
    wait_state(a, jid, ("succeeded",))
    whole = sse(a, jid)              # one uninterrupted read
    assert len(whole) == 62  # started + 60 data + end
    joined = hashlib.sha256(b"".join(first + rest)).hexdigest()
    assert joined == hashlib.sha256(b"".join(whole)).hexdigest()
    # what sluice wrote: a hash and a stream whose ids are the sequence numbers
    rc = r.client()
    assert rc.hget("t90:job:" + jid, "state") == b"succeeded"
    ids = [e[0] for e in rc.xrange("t90:ev:" + jid)]
    assert ids[:3] == [b"0-1", b"0-2", b"0-3"] and ids[-1] == b"0-62"


def test_status_and_result_on_the_other_instance(pair):
    _, a, b = pair
    jid = submit(a, "n=5&interval_ms=0&size=100")
    sa = wait_state(a, jid, ("succeeded",))
    sb = wait_state(b, jid, ("succeeded",))
    for k in ("id", "route", "executor", "method", "path", "data_bytes", "last_seq", "exit_code"):
        assert sa[k] == sb[k], k
    ra, rb = h1(a, "GET", "/jobs/%s/result" % jid), h1(b, "GET", "/jobs/%s/result" % jid)
    assert ra[0] == rb[0] == 200 and ra[2] == rb[2] and len(rb[2]) == 500


def test_unknown_ids_and_owners_on_the_other_instance(pair):
    _, a, b = pair
    st, _, _ = h1(b, "GET", "/jobs/01HZZZZZZZZZZZZZZZZZZZZZZZ")
    assert st == 404
    jid = submit(a, "n=3&interval_ms=0", path="/v1/mine", headers={"x-user": "alice"})
    assert h1(b, "GET", "/mine/" + jid, {"x-user": "bob"})[0] == 404
    assert h1(b, "GET", "/mine/" + jid)[0] == 404
    st, _, body = h1(b, "GET", "/mine/" + jid, {"x-user": "alice"})
    assert st == 200 and json.loads(body)["id"] == jid


def test_cancel_from_the_other_instance(pair):
    _, a, b = pair
    jid = submit(a, "n=2000&interval_ms=20")
    wait_state(a, jid, ("running",))
    wait_state(b, jid, ("running",))
    st, _, _ = h1(b, "DELETE", "/jobs/" + jid)
    assert st == 202
    assert wait_state(a, jid, ("cancelled",), timeout=10)["state"] == "cancelled"
    tail = sse(b, jid)  # B's mirror saw the end too
    assert tail[-1].startswith(b"id: ") and b"event: end" in tail[-1] and b"cancelled" in tail[-1]
    assert b"cancelled from another instance" in open(a.stderr_path, "rb").read()


def test_websocket_subscription_on_the_other_instance(pair):
    _, a, b = pair
    jid = submit(a, "n=30&interval_ms=10&size=20")

    async def follow():
        url = "ws://127.0.0.1:%d/jobs/ws" % b.h2c_port
        async with websockets.connect(url, open_timeout=10 * SLOW) as ws:
            await ws.send(json.dumps({"op": "subscribe", "id": jid, "from": 0}))
            seen = []
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 20 * SLOW))
                seen.append(m)
                if m.get("type") == "end" or m.get("op") == "error":
                    return seen
    seen = asyncio.run(follow())
    assert seen[0]["op"] == "subscribed", seen[0]
    seqs = [m["seq"] for m in seen[1:]]
    assert seqs == list(range(1, 33)), seqs
    assert seen[-1]["data"]["state"] == "succeeded"


def test_redis_down_answers_503_and_comes_back(pair):
    r, a, b = pair
    r.stop()
    # the command connection notices at once (its socket closes)
    assert wait_for(lambda: h1(a, "POST", "/v1/tick?n=1")[0] == 503, 10 * SLOW)
    st, hdrs, body = h1(a, "POST", "/v1/tick?n=1")
    assert st == 503 and hdrs.get("retry-after") and b"job store unavailable" in body
    st, hdrs, _ = h1(b, "GET", "/jobs/01HZZZZZZZZZZZZZZZZZZZZZZZ")
    assert st == 503 and hdrs.get("retry-after")
    assert h1(a, "GET", "/")[0] == 200  # everything else goes on
    assert b"redis (commands)" in open(a.stderr_path, "rb").read()
    m = h1(a, "GET", "/metrics")[2].decode()
    assert "\nsluice_jobs_store_up 0\n" in m
    errors = [ln for ln in m.splitlines() if ln.startswith("sluice_jobs_store_errors_total ")]
    assert errors  # the series is there while Redis is away
    r.start()  # same port: sluice redials with back-off, no restart
    assert wait_for(lambda: h1(a, "POST", "/v1/tick?n=1")[0] == 202, 15 * SLOW)
    jid = submit(a, "n=3&interval_ms=0")
    assert wait_state(b, jid, ("succeeded",))["data_bytes"] > 0
    assert "\nsluice_jobs_store_up 1\n" in h1(a, "GET", "/metrics")[2].decode()
    # B's lookup while Redis was down could not be answered: counted
    m = h1(b, "GET", "/metrics")[2].decode()
    assert int(m.split("\nsluice_jobs_store_errors_total ")[1].split()[0]) >= 1


def test_acknowledged_jobs_survive_a_redis_restart_with_aof(tmp_path, sluice_factory):
    r = RedisServer(str(tmp_path), aof=True).start()
    try:
        a = sluice_factory(**config(r.url))
        jid = submit(a, "n=20&interval_ms=0&size=32")
        wait_state(a, jid, ("succeeded",))
        whole = sse(a, jid)
        r.stop()
        r.start()  # same port and directory: the AOF is replayed
        b = sluice_factory(**config(r.url))  # never saw the job
        assert wait_for(lambda: h1(b, "GET", "/jobs/" + jid)[0] == 200, 15 * SLOW)
        assert sse(b, jid, last=5) == whole[5:]
    finally:
        r.stop()


def test_a_full_redis_is_a_clear_503(pair):
    r, a, _ = pair
    rc = r.client()
    rc.config_set("maxmemory-policy", "noeviction")
    rc.config_set("maxmemory", "1")  # every write is refused with OOM
    try:
        st, hdrs, body = h1(a, "POST", "/v1/tick?n=3")
        assert st == 503 and hdrs.get("retry-after") and b"job store unavailable" in body
        assert b"OOM" in open(a.stderr_path, "rb").read()
        assert h1(a, "GET", "/")[0] == 200
    finally:
        rc.config_set("maxmemory", "0")
    assert h1(a, "POST", "/v1/tick?n=3")[0] == 202


def test_owner_share_holds_across_instances(tmp_path, sluice_factory):
    r = RedisServer(str(tmp_path)).start()
    try:
        key = tmp_path / "owner.key"
        key.write_text("k" * 32)
        cfg = config(r.url, owner_key_file=str(key), max_jobs_per_owner=2, ttl_s=1)
        a, b = sluice_factory(**cfg), sluice_factory(**cfg)
        alice, bob = {"x-user": "alice"}, {"x-user": "bob"}
        j1 = submit(a, "n=1000&interval_ms=50", path="/v1/mine", headers=alice)
        submit(b, "n=1000&interval_ms=50", path="/v1/mine", headers=alice)
        # A holds one of alice's jobs: only the shared count says no
        st, hdrs, body = h1(a, "POST", "/v1/mine?n=1", alice)
        assert st == 429 and hdrs.get("retry-after") and b"too many live jobs" in body, (st, body)
        submit(a, "n=1", path="/v1/mine", headers=bob)  # another owner is not held back
        assert h1(a, "DELETE", "/mine/" + j1, alice)[0] == 202
        # the cancelled job counts until it expires (ttl_s), then frees the share
        assert wait_for(lambda: h1(a, "POST", "/v1/mine?n=1", alice)[0] == 202, 10 * SLOW)
    finally:
        r.stop()


def test_listing_spans_instances(pair):
    _, a, b = pair
    alice, bob = {"x-user": "alice"}, {"x-user": "bob"}
    mine = [submit(a, "n=1&interval_ms=0", path="/v1/mine", headers=alice),
            submit(a, "n=500&interval_ms=50", path="/v1/mine", headers=alice),
            submit(b, "n=1&interval_ms=0", path="/v1/mine", headers=alice)]
    theirs = submit(a, "n=1", path="/v1/mine", headers=bob)
    assert wait_for(lambda: json.loads(h1(a, "GET", "/mine/" + mine[0], alice)[2])["state"]
                    == "succeeded", 10 * SLOW)

    def page(srv, query, who=alice):
        st, _, body = h1(srv, "GET", "/mine?" + query, who)
        assert st == 200, body
        o = json.loads(body)
        return [j["id"] for j in o["jobs"]], o["next"]
    for srv in (a, b):
        ids, nxt = page(srv, "limit=10")
        assert ids == sorted(mine) and nxt is None
        first, nxt = page(srv, "limit=2")
        rest, last = page(srv, "limit=2&after=" + nxt)
        assert first + rest == sorted(mine) and last is None
        assert page(srv, "state=running")[0] == [mine[1]]
        assert page(srv, "limit=10", bob)[0] == [theirs]


def post(srv, path, headers, body=None):
    c = http.client.HTTPConnection("127.0.0.1", srv.h2c_port, timeout=20 * SLOW)
    c.request("POST", path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def job_keys(r, kind):
    return set(k.decode() for k in r.client().scan_iter("t90:%s:*" % kind))


def test_idempotency_key_holds_across_instances(pair):
    r, a, b = pair
    alice = {"x-user": "alice", "idempotency-key": "order-1"}
    st, ha, body = post(a, "/v1/mine?n=3&interval_ms=0", alice)
    assert st == 202 and "idempotent-replay" not in ha, (st, body)
    jid = json.loads(body)["id"]
    # B never made this job: Redis holds the key, so B answers with A's
    st, hb, body = post(b, "/v1/mine?n=3&interval_ms=0", alice)
    assert st == 202 and json.loads(body)["id"] == jid, body
    assert hb["idempotent-replay"] == "?1" and hb["location"].endswith(jid)
    # the same key for another request (the query differs): 422, anywhere
    for srv in (a, b):
        st, _, body = post(srv, "/v1/mine?n=4&interval_ms=0", alice)
        assert st == 422 and b"different request" in body, (st, body)
    # the key is the owner's: bob's use of it makes bob's own job
    st, _, body = post(b, "/v1/mine?n=3&interval_ms=0", dict(alice, **{"x-user": "bob"}))
    assert st == 202 and json.loads(body)["id"] != jid
    assert len(job_keys(r, "job")) == 2 and len(job_keys(r, "idem")) == 2


def test_idempotency_key_compares_bodies_across_instances(pair):
    _, a, b = pair
    h = {"x-user": "alice", "idempotency-key": "upload-1", "content-type": "text/plain"}
    st, _, body = post(a, "/v1/mine?n=1", h, b"the first body")
    assert st == 202, body
    jid = json.loads(body)["id"]
    got = {}

    def replayed():  # 409 until A has told Redis the body's digest
        got["r"] = post(b, "/v1/mine?n=1", h, b"the first body")
        return got["r"][0] != 409
    assert wait_for(replayed, 10 * SLOW), got
    st, hdrs, body = got["r"]
    assert st == 202 and json.loads(body)["id"] == jid and hdrs["idempotent-replay"] == "?1"
    st, _, body = post(b, "/v1/mine?n=1", h, b"another  body")  # same length
    assert st == 422 and b"different request" in body, (st, body)


def test_concurrent_first_uses_make_one_job(pair):
    r, a, b = pair
    before = job_keys(r, "job")
    h = {"x-user": "carol", "idempotency-key": "race-1"}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda srv: post(srv, "/v1/raw?n=5&interval_ms=10&size=8", h),
                            [a, b] * 6))
    assert all(st == 200 for st, _, _ in got), [g[:1] for g in got]
    ids = {hdrs["job-id"] for _, hdrs, _ in got}
    assert len(ids) == 1, ids
    # every answer streamed the one job's output; only it was ever stored
    assert len({body for _, _, body in got}) == 1 and len(got[0][2]) == 40
    assert job_keys(r, "job") - before == {"t90:job:" + ids.pop()}
    assert sum(hdrs.get("idempotent-replay") == "?1" for _, hdrs, _ in got) == len(got) - 1


def test_expiry_is_the_same_on_every_instance(tmp_path, sluice_factory):
    """An ended job answers 410 everywhere from ttl_s after its end (the
    hash says when: nothing is written at expiry), 404 once Redis has
    dropped the hash."""
    r = RedisServer(str(tmp_path)).start()
    try:
        cfg = config(r.url, ttl_s=1)
        a, b = sluice_factory(**cfg), sluice_factory(**cfg)
        jid = submit(a, "n=2&interval_ms=0")
        wait_state(a, jid, ("succeeded",))
        assert int(r.client().hget("t90:job:" + jid, "expires_ms")) > 0
        assert wait_for(lambda: h1(b, "GET", "/jobs/" + jid)[0] == 410, 10 * SLOW)
        assert h1(a, "GET", "/jobs/" + jid)[0] in (200, 410)  # A's sweep is on its own clock
        assert wait_for(lambda: h1(a, "GET", "/jobs/" + jid)[0] == 410, 5 * SLOW)
        assert r.client().ttl("t90:job:" + jid) <= 2
    finally:
        r.stop()
