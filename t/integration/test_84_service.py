"""Container and service-manager duties, each with the real binary: the
access log in a file reopened on SIGUSR1 (logrotate), with job and trace
ids and without cutting long lines; pid_file and `sluice -s`; the
sd_notify protocol (READY=1, RELOADING=1, STOPPING=1) to a NOTIFY_SOCKET this test
listens on; socket activation (LISTEN_FDS) through a launcher that binds
the ports itself; and PID 1 in a new PID namespace (unshare), where
orphans must be reaped and SIGTERM must end the daemon with 0."""

import json
import os
import signal
import socket
import sys
import time

import pytest

from conftest import ROUTES, SLOW, SLUICE_BIN, run, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


def curl(url, *extra):
    r = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}"] + list(extra) + [url],
            timeout=20, text=True)
    return r.stdout


def lines(path):
    try:
        with open(path) as f:
            return [json.loads(x) for x in f if x.strip()]
    except FileNotFoundError:
        return []


def paths(path):
    """Requested paths in the log, without the fixture's readiness probes."""
    return [x["path"] for x in lines(path) if x["path"] != "/healthz"]


def test_access_log_file_reopened_on_sigusr1(sluice_factory, tmp_path):
    log = str(tmp_path / "access.log")
    s = sluice_factory(access_log=log)
    assert curl(s.url("/one")) == "200"
    assert wait_for(lambda: "/one" in paths(log))
    os.rename(log, log + ".1")  # what logrotate does
    assert curl(s.url("/two")) == "200"
    assert wait_for(lambda: "/two" in paths(log + ".1"))
    s.signal(signal.SIGUSR1)
    assert wait_for(lambda: "reopened " + log in s.stderr())
    assert curl(s.url("/three")) == "200"
    assert wait_for(lambda: "/three" in paths(log))
    assert paths(log) == ["/three"] and paths(log + ".1") == ["/one", "/two"]
    assert s.stdout() == ""  # nothing went to stdout


def test_access_log_never_cuts_a_long_line(sluice_factory, tmp_path):
    log = str(tmp_path / "access.log")
    s = sluice_factory(access_log=log, limits={"h1_uri_bytes": 60000})
    target = "/" + "a" * 30000 + "?q=" + "b" * 20000  # far beyond the old 3 KiB line
    assert curl(s.url(target)) == "200"
    assert curl(s.url("/after")) == "200"
    assert wait_for(lambda: "/after" in paths(log))
    got = paths(log)
    assert got == [target, "/after"]


def test_access_log_has_job_and_trace_ids(sluice_factory, tmp_path):
    log = str(tmp_path / "access.log")
    s = sluice_factory(access_log=log,
                       executors={"tick": {"type": "builtin", "kind": "ticker"}},
                       routes=[{"path": "/v1/tick", "handler": "job", "executor": "tick"},
                               {"path": "/jobs", "handler": "jobs_api"}] + ROUTES)
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = run(["curl", "-sS", "-D", "-", "-o", "/dev/null", "-X", "POST",
             "-H", "Prefer: respond-async", "-H", "traceparent: " + tp,
             s.url("/v1/tick?n=1&interval_ms=1")], timeout=20, text=True)
    jid = [h.split(":", 1)[1].strip() for h in r.stdout.splitlines()
           if h.lower().startswith("job-id:")][0]
    assert curl(s.url("/jobs/" + jid)) == "200"
    got = wait_for(lambda: [x for x in lines(log) if x.get("job_id") == jid and
                            x["path"].startswith("/jobs/")])
    sub = [x for x in lines(log) if x["path"].startswith("/v1/tick")][0]
    assert sub["job_id"] == jid
    assert sub["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert got[0]["status"] == 200


def test_access_log_has_proxy_request_id(sluice_factory, tmp_path):
    from testservers import TcpServer

    class App(TcpServer):
        def handle(self, c, n):
            c.recv(65536)
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")

    app = App()
    try:
        log = str(tmp_path / "access.log")
        s = sluice_factory(access_log=log,
                           upstreams={"app": {"servers": [{"addr": "127.0.0.1:%d" % app.port}]}},
                           routes=[{"path": "/p/", "handler": "proxy", "upstream": "app"}] + ROUTES)
        assert curl(s.url("/p/x"), "-H", "x-request-id: req-12345") == "200"
        got = wait_for(lambda: [x for x in lines(log) if x["path"] == "/p/x"])
        assert got[0]["request_id"] == "req-12345"
        assert len(got[0]["trace_id"]) == 32
    finally:
        app.stop()


def test_pid_file_and_signal_option(sluice_factory, tmp_path):
    pidf = str(tmp_path / "sluice.pid")
    s = sluice_factory(pid_file=pidf)
    with open(pidf) as f:
        assert int(f.read()) == s.pid
    r = run([SLUICE_BIN, "-c", s.cfg_path, "-s", "bogus"], timeout=15, text=True)
    assert r.returncode == 1 and "expected reload, reopen or stop" in r.stderr
    r = run([SLUICE_BIN, "-c", s.cfg_path, "-s", "stop"], timeout=15, text=True)
    assert r.returncode == 0, r.stderr
    assert s.wait_exit(20 * SLOW) == 0
    assert not os.path.exists(pidf)  # removed on the way out
    r = run([SLUICE_BIN, "-c", s.cfg_path, "-s", "stop"], timeout=15, text=True)
    assert r.returncode == 1 and "no pid in" in r.stderr


def test_systemd_notify(sluice_factory, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15 * SLOW)
    try:
        s = sluice_factory(start=False)
        s.env = {"NOTIFY_SOCKET": path}
        s.start()
        ready = sock.recv(4096).decode()
        assert ready.split("\n") == ["READY=1", "MAINPID=%d" % s.pid]
        # a reload: RELOADING=1 with the monotonic clock (Type=notify-reload), then READY=1
        t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        s.signal(signal.SIGHUP)
        reloading = sock.recv(4096).decode().split("\n")
        assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
        t1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert t0 <= int(reloading[1].split("=")[1]) <= t1
        assert sock.recv(4096).decode() == "READY=1"
        s.signal(signal.SIGTERM)
        assert sock.recv(4096).decode() == "STOPPING=1"
        assert s.wait_exit(20 * SLOW) == 0
    finally:
        sock.close()


def test_socket_activation(sluice_factory):
    s = sluice_factory(start=False)
    # bound by the launcher without SO_REUSEPORT: sluice could not bind
    # these ports itself, so serving on them proves it took the sockets
    s.wrap = [sys.executable, os.path.join(HERE, "activate.py"),
              "127.0.0.1:%d" % s.h2c_port, "127.0.0.1:%d" % s.tls_port, "--"]
    s.start()
    assert "from the service manager" in s.stderr()
    assert curl(s.url("/healthz")) == "200"
    assert curl(s.url("/healthz", tls=True), "-k", *s.resolve()) == "200"
    for _ in range(20):  # every worker accepts from the shared socket
        assert curl(s.url("/")) == "200"


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


@pytest.mark.skipif(os.geteuid() != 0, reason="a PID namespace needs root")
def test_pid1_reaps_orphans_and_exits_0(sluice_factory):
    s = sluice_factory(start=False,
                       executors={"orphan": {"type": "exec", "argv": [
                           "/bin/sh", "-c", "sleep 0.3 </dev/null >/dev/null 2>&1 & echo started"]}},
                       routes=[{"path": "/v1/orphan", "handler": "job", "executor": "orphan"}]
                       + ROUTES)
    s.wrap = ["unshare", "--pid", "--fork", "--mount-proc"]
    s.start()
    inner = wait_for(lambda: children(s.pid))
    assert len(inner) == 1
    pid1 = inner[0]
    r = run(["curl", "-sS", "-X", "POST", s.url("/v1/orphan")], timeout=20, text=True)
    assert r.stdout == "started\n"
    # the sleep was re-parented to sluice (PID 1 inside) and must not stay a zombie
    time.sleep(0.6 * SLOW)
    zombies = wait_for(lambda: not [c for c in children(pid1) if state(c) == "Z"], timeout=5)
    assert zombies, "zombies left under PID 1: %r" % children(pid1)
    os.kill(pid1, signal.SIGTERM)
    assert s.wait_exit(20 * SLOW) == 0  # unshare exits with sluice's status
