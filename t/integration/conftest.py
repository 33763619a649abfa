"""pytest fixtures: start the real sluice binary on free loopback ports with
a temporary config, drive it with independent clients, and check on
teardown that it exits 0 on SIGTERM without sanitizer reports.

Environment:
  SLUICE_BIN       the daemon (default /work/main/build/sluice)
  SLUICE_SANITIZE  1 under `make check SANITIZE=1`: longer timeouts
  CI               set (true/1/yes): a missing client program FAILS instead
                   of skipping
"""

import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import h1raw  # noqa: E402
from rawsock import client_ssl  # noqa: E402,F401 (one TLS client context for every test)

SLUICE_BIN = os.environ.get("SLUICE_BIN", "/work/main/build/sluice")
SANITIZE = os.environ.get("SLUICE_SANITIZE", "0") not in ("", "0")
CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
# sanitizers make everything slower: scale waits, never the asserted bounds
# the daemon itself must meet (those come from config and stay as set)
SLOW = 3.0 if SANITIZE else 1.0
SANITIZER_MARKS = ("AddressSanitizer", "runtime error:", "LeakSanitizer", "assertion failed",
                   "Assertion `", "ThreadSanitizer")

ROUTES = [
    {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
    {"path": "/readyz", "match": "exact", "handler": "health", "check": "ready"},
    {"path": "/_h/", "handler": "harness"},
    {"path": "/", "handler": "return", "status": 200,
     "headers": {"content-type": "text/plain; charset=utf-8"},
     "body": "sluice test root\n"},
]


def require(prog):
    """Path of prog; a missing client skips locally but fails under CI."""
    p = shutil.which(prog)
    if p is None:
        msg = "required client program %r not installed" % prog
        if CI:
            pytest.fail(msg + " (CI is set: a skip is a failure)")
        pytest.skip(msg)
    return p


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=5.0, step=0.05):
    """Poll pred until it is true or timeout (scaled by SLOW) passes;
    returns its last value."""
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def run(argv, timeout=30, check=False, **kw):
    """subprocess.run bounded in time, text output captured."""
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout * SLOW, check=check, **kw)


# --------------------------------------------------------------------------
# certificates (once per session)
# --------------------------------------------------------------------------
class Certs:
    def __init__(self, d):
        self.dir = d
        self.cert, self.key = self._make("localhost", ["DNS:localhost", "IP:127.0.0.1"])
        self.alt_cert, self.alt_key = self._make("alt.test", ["DNS:alt.test"])

    def _make(self, cn, sans):
        cert = os.path.join(self.dir, cn + ".crt")
        key = os.path.join(self.dir, cn + ".key")
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + cn,
             "-addext", "subjectAltName=" + ",".join(sans)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        assert r.returncode == 0, r.stderr.decode()
        return cert, key

    @staticmethod
    def der(path):
        import ssl
        with open(path) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    require("openssl")
    return Certs(str(tmp_path_factory.mktemp("certs")))


# --------------------------------------------------------------------------
# the daemon
# --------------------------------------------------------------------------
def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class Sluice:
    """One running daemon. Config = defaults deep-merged with overrides;
    "routes" and "listen" in overrides replace the defaults (a callable
    "listen" gets (tls_port, h2c_port, certs) and returns the list)."""

    def __init__(self, workdir, certs, overrides=None, name="sluice"):
        self.dir = tempfile.mkdtemp(prefix=name + "-", dir=workdir)
        self.certs = certs
        self.tls_port = free_port()
        self.h2c_port = free_port()
        while self.h2c_port == self.tls_port:  # the kernel may hand the same one out twice
            self.h2c_port = free_port()
        overrides = dict(overrides or {})
        listen = overrides.pop("listen", None)
        if callable(listen):
            listen = listen(self.tls_port, self.h2c_port, certs)
        if listen is None:
            listen = [
                {"addr": "127.0.0.1:%d" % self.tls_port,
                 "tls": {"cert": certs.cert, "key": certs.key}},
                # the upgrade is off by default (h2c smuggling); the
                # suite's h2c-upgrade mode needs it on
                {"addr": "127.0.0.1:%d" % self.h2c_port, "h2c": True, "h2c_upgrade": True},
            ]
        base = {
            "workers": 2,
            "access_log": True,
            "log_level": "info",
            "drain_timeout_s": 5,
            "listen": listen,
            "limits": {},
            "timeouts": {},
            "routes": ROUTES,
        }
        self.config = deep_merge(base, overrides)
        self.config["listen"] = listen
        self.cfg_path = os.path.join(self.dir, "sluice.json")
        with open(self.cfg_path, "w") as f:
            json.dump(self.config, f, indent=1)
        self.stdout_path = os.path.join(self.dir, "stdout.log")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.log = self.stdout_path
        self.env = {}  # extra environment for the daemon
        self.wrap = []  # argv before sluice's (a launcher such as activate.py)
        self.proc = None
        self.pid = None
        self.returncode = None

    # ---- process -------------------------------------------------------
    def start(self, wait=True):
        if not os.access(SLUICE_BIN, os.X_OK):
            pytest.fail("SLUICE_BIN %s is not an executable (build it first)" % SLUICE_BIN)
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        env.update(self.env)
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.wrap + [SLUICE_BIN, "-c", self.cfg_path], stdout=self._out,
                                     stderr=self._err, stdin=subprocess.DEVNULL, env=env,
                                     cwd=self.dir)
        self.pid = self.proc.pid
        if wait:
            self.wait_healthy(10 * SLOW)
        return self

    def wait_healthy(self, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("sluice exited %s during start-up; stderr:\n%s" %
                            (self.proc.returncode, self.stderr()[-3000:]))
            try:
                if self.healthz(timeout=1.0) == 200:
                    return
            except Exception as e:  # noqa: BLE001 - still starting
                last = e
            time.sleep(0.05)
        pytest.fail("sluice did not answer /healthz within %.0fs (%r); stderr:\n%s" %
                    (timeout, last, self.stderr()[-3000:]))

    def healthz(self, timeout=5.0, tls=False):
        """Status of GET /healthz on a fresh HTTP/1.1 connection."""
        port = self.tls_port if tls else self.h2c_port
        with h1raw.H1Conn(port, tls=tls, timeout=timeout) as c:
            c.send(h1raw.request("GET", "/healthz", [("Connection", "close")]))
            return c.read_response().status

    def assert_up(self):
        assert self.proc.poll() is None, "sluice died (rc %s); stderr:\n%s" % (
            self.proc.returncode, self.stderr()[-3000:])
        assert self.healthz() == 200
        assert self.healthz(tls=True) == 200

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self):
        """SIGTERM, bounded wait, then the checks. Returns failure text."""
        problems = []
        if self.proc is None or self._out.closed:
            return problems  # never started, or already stopped and checked
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                problems.append("sluice did not exit within %.0fs of SIGTERM (killed)" %
                                (20 * SLOW))
        self.returncode = self.proc.returncode
        self._out.close()
        self._err.close()
        if self.returncode != 0 and not any("did not exit" in p for p in problems):
            problems.append("sluice exited with %s, expected 0" % self.returncode)
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            if mark in err:
                problems.append("stderr contains %r" % mark)
        if problems:
            problems.append("stderr tail:\n" + err[-4000:])
        return problems

    # ---- helpers -------------------------------------------------------
    def url(self, path="/", tls=False, host=None):
        if tls:
            return "https://%s:%d%s" % (host or "localhost", self.tls_port, path)
        return "http://%s:%d%s" % (host or "127.0.0.1", self.h2c_port, path)

    def resolve(self):
        """curl --resolve so https://localhost:PORT reaches 127.0.0.1."""
        return ["--resolve", "localhost:%d:127.0.0.1" % self.tls_port]

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def access_log(self):
        """Parsed JSON access lines (a non-JSON line on stdout fails)."""
        out = []
        for line in self.stdout().splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                pytest.fail("stdout line is not JSON: %r" % line[:300])
        return out

    def wait_access(self, pred, timeout=5.0):
        """Access lines once pred(lines) holds (the log is flushed per loop
        iteration, so give it a moment)."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            lines = self.access_log()
            if pred(lines) or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def rss_kb(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except FileNotFoundError:
            return None
        return None


class Factory:
    def __init__(self, tmp_path, certs):
        self.tmp = str(tmp_path)
        self.certs = certs
        self.servers = []

    def __call__(self, start=True, **overrides):
        s = Sluice(self.tmp, self.certs, overrides)
        self.servers.append(s)
        if start:
            s.start()
        return s

    def stop_all(self):
        problems = []
        for s in self.servers:
            problems += s.stop()
        return problems


@contextlib.contextmanager
def module_server(tmp_path_factory, certs, name, config=None, **overrides):
    """One daemon for a module-scoped fixture: `with module_server(tpf,
    certs, "ws", routes=...) as s: yield s`. Started with overrides (and
    with config(tmp), for a config that names files in the module's temp
    dir, s.tmp); at the end stopped by PID and checked (exit 0, no
    sanitizer report)."""
    tmp = str(tmp_path_factory.mktemp(name))
    f = Factory(tmp, certs)
    if config:
        overrides = dict(config(tmp), **overrides)
    try:
        s = f(**overrides)
        s.tmp = tmp
        yield s
    finally:
        problems = f.stop_all()
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def sluice_factory(tmp_path, certs):
    """sluice_factory(limits={...}, timeouts={...}, routes=[...]) starts a
    daemon with those overrides; all are stopped and checked at teardown."""
    f = Factory(tmp_path, certs)
    yield f
    problems = f.stop_all()
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture(scope="module")
def sluice(tmp_path_factory, certs):
    """A daemon with the default test config, shared by a test module."""
    f = Factory(tmp_path_factory.mktemp("sluice"), certs)
    s = f()
    yield s
    problems = f.stop_all()
    if problems:
        pytest.fail("\n".join(problems))


# --------------------------------------------------------------------------
# curl in the four ways a client reaches sluice
# --------------------------------------------------------------------------
# mode -> (curl args, tls?, expected http_version)
CURL_MODES = {
    "h1": (["--http1.1"], False, "1.1"),
    "h1-tls": (["--http1.1", "-k"], True, "1.1"),
    "h2c": (["--http2-prior-knowledge"], False, "2"),
    "h2c-upgrade": (["--http2"], False, "2"),
    "h2-tls": (["--http2", "-k"], True, "2"),
}
PROTO_MODES = ["h1", "h2c", "h2c-upgrade", "h2-tls"]


class CurlResult:
    def __init__(self, rc, info, headers, body, stderr):
        self.rc = rc
        self.info = info
        self.status = info.get("http_code") if info else None
        self.http_version = info.get("http_version") if info else None
        self.headers = headers
        self.body = body
        self.stderr = stderr

    def header(self, name):
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<curl rc=%s status=%s v=%s len=%d stderr=%r>" % (
            self.rc, self.status, self.http_version, len(self.body), self.stderr[-300:])


def curl(server, mode, path, *extra, timeout=30, upload=None):
    """Run curl against server in mode; returns CurlResult (body bytes,
    final response headers, -w %{json} info)."""
    require("curl")
    args, tls, _ = CURL_MODES[mode]
    d = tempfile.mkdtemp(prefix="curl-")
    body_f, head_f = os.path.join(d, "body"), os.path.join(d, "head")
    argv = ["curl", "-sS", "--max-time", str(timeout * SLOW), "-o", body_f, "-D", head_f,
            "-w", "%{json}"] + args
    if tls:
        argv += server.resolve()
    if upload is not None:
        up = os.path.join(d, "upload")
        with open(up, "wb") as f:
            f.write(upload)
        argv += ["--data-binary", "@" + up]
    argv += list(extra) + [server.url(path, tls=tls)]
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout * SLOW + 10)
    try:
        info = json.loads(r.stdout.decode() or "{}")
    except ValueError:
        info = {}
    body = open(body_f, "rb").read() if os.path.exists(body_f) else b""
    headers = []
    if os.path.exists(head_f):
        # -D keeps every response head (1xx, upgrade 101); keep the last one
        blocks = open(head_f, "rb").read().decode("latin-1").split("\r\n\r\n")
        blocks = [b for b in blocks if b.strip()]
        if blocks:
            for line in blocks[-1].split("\r\n")[1:]:
                if ":" in line:
                    n, v = line.split(":", 1)
                    headers.append((n.strip().lower(), v.strip()))
    shutil.rmtree(d, ignore_errors=True)
    return CurlResult(r.returncode, info, headers, body, r.stderr.decode("utf-8", "replace"))


@pytest.fixture(params=PROTO_MODES)
def proto(request):
    """Parametrize a test over h1, h2c, h2c upgrade and h2 over TLS."""
    return request.param
