"""Jobs are private (issue 9): every job has an owner taken from the
submitting request (a header or a cookie, stored only as a keyed hash);
status, events, result, cancel, listing and /jobs/ws answer 404 to anyone
else, over HTTP/1.1, HTTP/2 and WebSockets; the admin token sees all;
without owners listing is off; one owner's share of live jobs is bounded
(429). Clients: curl (h1, h2c, h2 over TLS) and python3-websockets."""

import asyncio
import json
import os

import pytest

from conftest import ROUTES, curl, module_server

websockets = pytest.importorskip("websockets")

TOKEN = "owners-admin-token-abcdefghijklmnop"
MODES = ["h1", "h2c", "h2-tls"]


def config(tmp, per_owner=100):
    token = os.path.join(tmp, "admin.token")
    with open(token, "w") as f:
        f.write(TOKEN + "\n")
    return {
        "executors": {"tick": {"type": "builtin", "kind": "ticker", "max_events": 10000}},
        "jobs": {"admin_token_file": token, "max_jobs_per_owner": per_owner},
        "routes": [
            {"path": "/v1/tick", "handler": "job", "executor": "tick", "reply": "async",
             "owner": "header:X-User"},
            {"path": "/v1/ctick", "handler": "job", "executor": "tick", "reply": "async",
             "owner": "cookie:session"},
            {"path": "/v1/open", "handler": "job", "executor": "tick", "reply": "async"},
            {"path": "/jobs", "handler": "jobs_api", "owner": "header:X-User"},
            {"path": "/cjobs", "handler": "jobs_api", "owner": "cookie:session"},
            {"path": "/open-jobs", "handler": "jobs_api"},
        ] + ROUTES,
    }


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    with module_server(tmp_path_factory, certs, "owners", config=config) as s:
        yield s


def user(name):
    return ["-H", "X-User: " + name]


ADMIN = ["-H", "Authorization: Bearer " + TOKEN]


def submit(srv, mode, who, path="/v1/tick?n=1000&interval_ms=50", extra=()):
    r = curl(srv, mode, path, *(user(who) if who else []), *extra)
    assert r.status == 202, r
    return r.json()["id"]


@pytest.mark.parametrize("mode", MODES)
def test_other_owner_gets_404_everywhere(srv, mode):
    jid = submit(srv, mode, "alice")
    for path in ["/jobs/" + jid, "/jobs/" + jid + "/events", "/jobs/" + jid + "/result"]:
        r = curl(srv, mode, path, *user("bob"), timeout=10)
        assert r.status == 404, (path, r)
        assert r.json()["error"] == "no such job"  # the same words as an unknown id
        r = curl(srv, mode, path, timeout=10)  # no credential at all
        assert r.status == 404, (path, r)
    r = curl(srv, mode, "/jobs/" + jid, *user("bob"), "-X", "DELETE")
    assert r.status == 404, r
    # alice still sees it running: bob's DELETE did nothing
    r = curl(srv, mode, "/jobs/" + jid, *user("alice"))
    assert r.status == 200 and r.json()["state"] in ("queued", "running"), r
    # the credential is not in the status
    assert "alice" not in r.body.decode()
    r = curl(srv, mode, "/jobs/" + jid, *user("alice"), "-X", "DELETE")
    assert r.status == 202, r


@pytest.mark.parametrize("mode", MODES)
def test_listing_shows_own_jobs_only(srv, mode):
    a = submit(srv, mode, "carol", "/v1/tick?n=2&interval_ms=1")
    b = submit(srv, mode, "dave", "/v1/tick?n=2&interval_ms=1")
    mine = [j["id"] for j in curl(srv, mode, "/jobs?limit=1000", *user("carol")).json()["jobs"]]
    assert a in mine and b not in mine
    theirs = [j["id"] for j in curl(srv, mode, "/jobs?limit=1000", *user("dave")).json()["jobs"]]
    assert b in theirs and a not in theirs
    r = curl(srv, mode, "/jobs")  # no owner credential: no listing
    assert r.status == 404, r
    every = [j["id"] for j in curl(srv, mode, "/jobs?limit=1000", *ADMIN).json()["jobs"]]
    assert a in every and b in every


def test_admin_reads_and_cancels_everything(srv):
    jid = submit(srv, "h1", "erin")
    r = curl(srv, "h2c", "/jobs/" + jid, *ADMIN)
    assert r.status == 200, r
    r = curl(srv, "h2c", "/jobs/" + jid, "-H", "Authorization: Bearer " + TOKEN[:-1] + "X")
    assert r.status == 404, r  # a wrong token is nobody
    r = curl(srv, "h2c", "/jobs/" + jid, *ADMIN, "-X", "DELETE")
    assert r.status == 202, r
    r = curl(srv, "h1", "/jobs/" + jid + "/result", *user("erin"), "-H", "Prefer: wait=10")
    assert r.status == 409 and r.header("job-state") == "cancelled", r


def test_job_route_needs_the_credential(srv):
    r = curl(srv, "h1", "/v1/tick?n=1")
    assert r.status == 401, r
    assert "owner credential" in srv.stderr()


def test_cookie_owner(srv):
    r = curl(srv, "h2c", "/v1/ctick?n=1000&interval_ms=50", "-H", "Cookie: theme=dark; session=s1")
    assert r.status == 202, r
    jid = r.json()["id"]
    assert curl(srv, "h2c", "/cjobs/" + jid, "-H", "Cookie: session=s1").status == 200
    assert curl(srv, "h2c", "/cjobs/" + jid, "-H", "Cookie: session=s2").status == 404
    assert curl(srv, "h2c", "/cjobs/" + jid, "-H", "Cookie: xsession=s1").status == 404
    # the same value under another rule is another owner
    assert curl(srv, "h2c", "/jobs/" + jid, *user("s1")).status == 404
    curl(srv, "h2c", "/cjobs/" + jid, "-H", "Cookie: session=s1", "-X", "DELETE")


def test_ownerless_jobs_id_is_the_capability(srv):
    jid = submit(srv, "h1", None, "/v1/open?n=1")
    assert curl(srv, "h1", "/open-jobs/" + jid).status == 200
    assert curl(srv, "h1", "/jobs/" + jid, *user("anyone")).status == 200
    assert curl(srv, "h1", "/open-jobs").status == 404  # listing off
    assert curl(srv, "h1", "/open-jobs", *ADMIN).status == 200


def ws_url(srv, prefix="/jobs"):
    return "ws://127.0.0.1:%d%s/ws" % (srv.h2c_port, prefix)


def test_jobs_ws_follows_the_same_rules(srv):
    jid = submit(srv, "h1", "frank", "/v1/tick?n=3&interval_ms=20")

    async def ask(headers, op):
        async with websockets.connect(ws_url(srv), extra_headers=headers) as ws:
            await ws.send(json.dumps({"op": op, "id": jid}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    async def go():
        m = await ask({"X-User": "grace"}, "subscribe")
        assert m["op"] == "error" and m["status"] == 404, m
        m = await ask({"X-User": "grace"}, "cancel")
        assert m["op"] == "error" and m["status"] == 404, m
        m = await ask({}, "subscribe")
        assert m["op"] == "error" and m["status"] == 404, m
        m = await ask({"X-User": "frank"}, "subscribe")
        assert m["op"] == "subscribed", m
        m = await ask({"Authorization": "Bearer " + TOKEN}, "subscribe")
        assert m["op"] == "subscribed", m
    asyncio.run(asyncio.wait_for(go(), 30))


def test_per_owner_live_job_limit(sluice_factory, tmp_path):
    s = sluice_factory(**config(str(tmp_path), per_owner=3))
    for _ in range(3):
        submit(s, "h1", "heidi")
    r = curl(s, "h1", "/v1/tick?n=1000&interval_ms=50", *user("heidi"))
    assert r.status == 429, r
    assert r.header("retry-after") == "10"
    assert "for this owner" in r.json()["error"]
    submit(s, "h1", "ivan")  # another owner is not affected
    assert "too many live jobs for this owner" in s.stderr()


# ---- Idempotency-Key: scoped to (owner, route), bound to the request ----

def key():
    import time
    return "k-%d" % time.monotonic_ns()


@pytest.mark.parametrize("mode", MODES)
def test_idempotency_replay_and_mismatch(srv, mode):
    k = key()
    args = user("judy") + ["-H", "Idempotency-Key: " + k]
    a = curl(srv, mode, "/v1/tick?n=3", *args)
    b = curl(srv, mode, "/v1/tick?n=3", *args)
    assert a.status == b.status == 202, (a, b)
    assert a.json()["id"] == b.json()["id"]
    assert b.header("idempotent-replay") == "?1" and a.header("idempotent-replay") is None
    # the same key with another request: 422, no job
    c = curl(srv, mode, "/v1/tick?n=4", *args)
    assert c.status == 422, c
    assert "different request" in c.json()["error"]
    d = curl(srv, mode, "/v1/tick?n=3", *args, "-X", "PUT")
    assert d.status == 422, d


def test_idempotency_key_is_per_owner_and_route(srv):
    k = key()
    a = curl(srv, "h1", "/v1/tick?n=1", *user("ken"), "-H", "Idempotency-Key: " + k)
    b = curl(srv, "h1", "/v1/tick?n=1", *user("liz"), "-H", "Idempotency-Key: " + k)
    assert a.status == b.status == 202
    assert a.json()["id"] != b.json()["id"]  # another owner: another job
    c = curl(srv, "h1", "/v1/open?n=1", "-H", "Idempotency-Key: " + k)
    assert c.status == 202 and c.json()["id"] not in (a.json()["id"], b.json()["id"])


def test_idempotency_concurrent_first_use(srv):
    """20 clients race with one new key: exactly one job is made."""
    import concurrent.futures
    k = key()

    def one(_):
        r = curl(srv, "h2c", "/v1/tick?n=2", *user("mike"), "-H", "Idempotency-Key: " + k)
        assert r.status == 202, r
        return r.json()["id"]
    with concurrent.futures.ThreadPoolExecutor(20) as ex:
        ids = set(ex.map(one, range(20)))
    assert len(ids) == 1, ids


def test_idempotency_compares_the_body(srv):
    """Bodies stream to the job, hashed on the way: a replay is answered
    once its body is in, with the job if the bytes match, 422 if not."""
    k = key()
    args = user("nina") + ["-H", "Idempotency-Key: " + k, "-H", "Content-Type: text/plain"]
    a = curl(srv, "h1", "/v1/tick?n=2", *args, upload=b"payload-one")
    assert a.status == 202, a
    b = curl(srv, "h2c", "/v1/tick?n=2", *args, upload=b"payload-one")
    assert b.status == 202 and b.json()["id"] == a.json()["id"], b
    assert b.header("idempotent-replay") == "?1"
    c = curl(srv, "h2c", "/v1/tick?n=2", *args, upload=b"payload-two")  # same length
    assert c.status == 422, c
    d = curl(srv, "h1", "/v1/tick?n=2", *args)  # no body at all
    assert d.status == 422, d


def test_idempotency_409_while_the_first_body_is_arriving(srv):
    import socket
    import time
    k = key()
    s = socket.create_connection(("127.0.0.1", srv.h2c_port), timeout=10)
    s.sendall(("POST /v1/tick?n=2 HTTP/1.1\r\nHost: x\r\nX-User: olga\r\n"
               "Content-Type: text/plain\r\nIdempotency-Key: %s\r\nContent-Length: 10\r\n\r\n"
               "12345" % k).encode())
    time.sleep(0.3)  # the job exists; its body is half in
    r = curl(srv, "h1", "/v1/tick?n=2", *user("olga"), "-H", "Idempotency-Key: " + k,
             "-H", "Content-Type: text/plain", upload=b"1234567890")
    assert r.status == 409, r
    s.sendall(b"67890")
    time.sleep(0.3)
    s.close()
    r = curl(srv, "h1", "/v1/tick?n=2", *user("olga"), "-H", "Idempotency-Key: " + k,
             "-H", "Content-Type: text/plain", upload=b"1234567890")
    assert r.status == 202 and r.header("idempotent-replay") == "?1", r
