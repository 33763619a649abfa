"""Jobs (issue 5): reply_to (the status JSON POSTed to a configured upstream
when a job ends, with bounded retries) and timeout_s for the builtin ticker
and the upstream executor. The upstream is uvicorn running
t/integration/apps/asgi_app.py (/hooks records, /hooks/last reads back);
clients: curl."""

import base64
import json
import subprocess
import time

import pytest

from conftest import ROUTES, SLOW, SLUICE_BIN, free_port, module_server, require, run
from test_72_jobs_upstream import app  # noqa: F401  (uvicorn fixture)

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs, app):  # noqa: F811
    dead = free_port()
    hook = {"upstream": "app", "path": "/hooks/done"}
    with module_server(
            tmp_path_factory, certs, "jobsrt",
            upstreams={"app": {"servers": ["127.0.0.1:%d" % app]},
                       "dead": {"servers": ["127.0.0.1:%d" % dead]}},
            executors={
                "hook": {"type": "builtin", "reply_to": hook},
                "hookres": {"type": "builtin",
                            "reply_to": dict(hook, include_result=True)},
                "hooksmall": {"type": "builtin",
                              "reply_to": dict(hook, include_result=True, max_result_bytes=40)},
                "flaky": {"type": "builtin",
                          "reply_to": {"upstream": "app", "path": "/hooks/flaky"}},
                "nohook": {"type": "builtin",
                           "reply_to": {"upstream": "dead", "path": "/hooks/done"}},
                "tickto": {"type": "builtin", "timeout_s": 1},
                "upto": {"type": "upstream", "upstream": "app", "path": "/slow",
                         "timeout_s": 1, "reply_to": hook},
            },
            routes=[
                {"path": "/v1/hook", "match": "exact", "handler": "job", "executor": "hook"},
                {"path": "/v1/hookres", "match": "exact", "handler": "job", "executor": "hookres"},
                {"path": "/v1/hooksmall", "match": "exact", "handler": "job", "executor": "hooksmall"},
                {"path": "/v1/flaky", "match": "exact", "handler": "job", "executor": "flaky"},
                {"path": "/v1/nohook", "match": "exact", "handler": "job", "executor": "nohook"},
                {"path": "/v1/tickto", "match": "exact", "handler": "job", "executor": "tickto"},
                {"path": "/v1/upto", "match": "exact", "handler": "job", "executor": "upto"},
                {"path": "/jobs", "handler": "jobs_api"},
            ] + ROUTES) as s:
        yield s


def get(port, path, *args, timeout=20):
    out = subprocess.run(["curl", "-sS", "--max-time", str(timeout)] + list(args)
                         + ["http://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, timeout=timeout + 5)
    return out.stdout


def submit(srv, path, *args):
    return json.loads(get(srv.h2c_port, path, "-H", "Prefer: respond-async", *args))["id"]


def status(srv, jid):
    return json.loads(get(srv.h2c_port, "/jobs/" + jid))


def wait_reply(srv, jid, attempts=1, secs=10):
    """The job's status once its reply_to outcome has `attempts` tries and
    no retry is pending."""
    deadline = time.monotonic() + secs * SLOW
    while time.monotonic() < deadline:
        st = status(srv, jid)
        rt = st.get("reply_to")
        if rt and rt["attempts"] >= attempts and (rt["status"] == 200 or attempts == rt["attempts"]):
            return st
        time.sleep(0.05)
    return status(srv, jid)


def hooks(app_port, jid):  # noqa: F811
    return json.loads(get(app_port, "/hooks/last?job=" + jid))


def test_reply_to_posts_the_status(srv, app):  # noqa: F811
    require("curl")
    jid = submit(srv, "/v1/hook?n=3&size=8&interval_ms=10", "-H", "traceparent: " + TP)
    st = wait_reply(srv, jid)
    assert st["state"] == "succeeded"
    assert st["reply_to"] == {"status": 200, "attempts": 1}, st
    recs = hooks(app, jid)
    assert len(recs) == 1
    r = recs[0]
    assert r["path"] == "/hooks/done"
    assert r["headers"]["job-id"] == jid
    assert r["headers"]["traceparent"] == TP
    assert r["headers"]["content-type"] == "application/json"
    body = json.loads(r["body"])
    assert body["id"] == jid and body["state"] == "succeeded"
    assert body["data_bytes"] == 24 and body["location"] == "/jobs/" + jid
    assert "result" not in body


def test_reply_to_includes_the_result(srv, app):  # noqa: F811
    require("curl")
    jid = submit(srv, "/v1/hookres?n=4&size=10&interval_ms=0")
    wait_reply(srv, jid)
    body = json.loads(hooks(app, jid)[0]["body"])
    want = get(srv.h2c_port, "/jobs/%s/result" % jid)
    assert len(want) == 40
    assert base64.b64decode(body["result"]) == want
    assert "result_truncated" not in body


def test_reply_to_result_past_the_bound_is_truncated(srv, app):  # noqa: F811
    require("curl")
    jid = submit(srv, "/v1/hooksmall?n=5&size=10&interval_ms=0")
    wait_reply(srv, jid)
    body = json.loads(hooks(app, jid)[0]["body"])
    assert body.get("result_truncated") is True and "result" not in body
    ok = submit(srv, "/v1/hooksmall?n=4&size=10&interval_ms=0")
    wait_reply(srv, ok)
    assert len(base64.b64decode(json.loads(hooks(app, ok)[0]["body"])["result"])) == 40


def test_reply_to_retries_until_2xx(srv, app):  # noqa: F811
    require("curl")
    jid = submit(srv, "/v1/flaky?n=1&interval_ms=0")
    st = wait_reply(srv, jid, attempts=3)
    assert st["reply_to"] == {"status": 200, "attempts": 3}, st
    assert len(hooks(app, jid)) == 3


def test_reply_to_gives_up_after_three_tries(srv):
    require("curl")
    jid = submit(srv, "/v1/nohook?n=1&interval_ms=0")
    st = wait_reply(srv, jid, attempts=3)
    rt = st["reply_to"]
    assert rt["attempts"] == 3 and rt["status"] is None and "connect" in rt["error"], st
    assert st["state"] == "succeeded"   # the job itself is unaffected
    logs = ""
    for path in (srv.stdout_path, srv.stderr_path):
        with open(path, errors="replace") as f:
            logs += f.read()
    assert "job %s: reply_to app" % jid not in logs
    assert "job %s: reply_to dead/hooks/done failed after 3 tries" % jid in logs


def test_reply_to_after_cancel(srv, app):  # noqa: F811
    require("curl")
    jid = submit(srv, "/v1/hook?n=100&interval_ms=100")
    get(srv.h2c_port, "/jobs/" + jid, "-X", "DELETE")
    wait_reply(srv, jid)
    body = json.loads(hooks(app, jid)[0]["body"])
    assert body["state"] == "cancelled"


def test_ticker_times_out(srv):
    require("curl")
    t0 = time.monotonic()
    jid = submit(srv, "/v1/tickto?n=50&interval_ms=100")
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                        "15", "-H", "Prefer: wait=10",
                        "http://127.0.0.1:%d/jobs/%s/result" % (srv.h2c_port, jid)],
                       capture_output=True, timeout=20)
    took = time.monotonic() - t0
    assert r.stdout == b"504"
    st = status(srv, jid)
    assert st["state"] == "timed_out" and st["exit_code"] is None
    assert 0 < st["data_bytes"] < 50 * 16
    assert took < 4 * SLOW


def test_ticker_within_its_timeout_succeeds(srv):
    require("curl")
    jid = submit(srv, "/v1/tickto?n=3&interval_ms=10")
    get(srv.h2c_port, "/jobs/%s/result" % jid, "-H", "Prefer: wait=5")
    assert status(srv, jid)["state"] == "succeeded"


def test_upstream_executor_times_out(srv, app):  # noqa: F811
    require("curl")
    jid = submit(srv, "/v1/upto?delay=5")
    st = wait_reply(srv, jid, secs=10)
    assert st["state"] == "timed_out", st
    assert st["ended_ms"] - st["started_ms"] < 3000
    body = json.loads(hooks(app, jid)[0]["body"])
    assert body["state"] == "timed_out"
    fast = submit(srv, "/v1/upto?delay=0.1")
    st = wait_reply(srv, fast)
    assert st["state"] == "succeeded" and st["exit_code"] == 200


def test_reply_to_config_errors(tmp_path):
    """reply_to is reply/'s key on every executor: checked as strictly as
    the executor's own (misspelt: the hint; bad fields: the JSON path)."""
    base = {"listen": [{"addr": "127.0.0.1:0"}], "routes": [],
            "upstreams": {"hooks": {"servers": ["127.0.0.1:1"]}}}
    cases = [({"reply_too": {"upstream": "hooks"}}, 'unknown key (did you mean "reply_to"?)'),
             ({"reply_to": {"upstream": "nope"}}, "reply_to.upstream: must name a group"),
             ({"reply_to": {"upstream": "hooks", "path": "x"}}, "reply_to.path: must start"),
             ({"reply_to": {"upstream": "hooks", "bogus": 1}}, "reply_to.bogus: unknown key"),
             ({"reply_to": {"upstream": "hooks", "path": "/done"}}, None)]
    for extra, want in cases:
        cfg = dict(base, executors={"e": dict({"type": "builtin"}, **extra)})
        p = tmp_path / "c.json"
        p.write_text(json.dumps(cfg))
        r = run([SLUICE_BIN, "-t", "-c", str(p)])
        if want is None:
            assert r.returncode == 0, r.stderr
        else:
            assert r.returncode == 1 and want in r.stderr.decode(), (extra, r.stderr)
