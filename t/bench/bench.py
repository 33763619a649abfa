#!/usr/bin/python3
# sluice - SPDX-License-Identifier: MIT
#
# `make bench`: sluice against h2o and nginx (Debian packages) on one
# machine, in one run, alternating, several rounds. Each server gets CPU 1
# and one worker; the load generators (h2load, wrk, idle_h2.py) get CPU 0.
# Everything binds 127.0.0.1 ephemeral ports, every process started here is
# stopped by PID, every wait is bounded.
#
# The main figure is server CPU per unit of work (sum of the schedstat
# run time of every thread of the server's process tree, after minus
# before, divided by requests, MiB or handshakes): on two cores the client
# saturates before a fast server does, so req/s cannot rank servers
# (see docs/bench.md). req/s is secondary.
# Memory: VmRSS of the tree before and after opening N idle h2 TLS
# connections, divided by N.
#
# HTTP/3: Debian 12's h2o, nginx and nghttpx have none, so the h3 row sets
# sluice against ngtcp2's example server (gtlsserver, ngtcp2-server) and
# against sluice's own h2 TLS row; the load is h3load.py (gtlsclient).
#
# Environment: SLUICE_BIN, BENCH_ROUNDS (3), BENCH_DURATION (4 s per load
# run), BENCH_IDLE_CONNS (4000), BENCH_HANDSHAKES (2000), BENCH_SERVERS
# ("sluice,h2o,nginx,nghttpx,gtlsserver"), BENCH_WORKLOADS (all), BENCH_CALLGRIND (0),
# BENCH_OUT (t/bench/out), BENCH_KEEP (0: keep the temp dir).
import json
import os
import re
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER_CPU, CLIENT_CPU = "1", "0"
SMALL_BODY = b"hello world\n!"
LARGE_PATH = "/_h/bytes/1048576"
LARGE_LEN = 1048576
# The same 1 MiB as a file every server serves from the same docroot
# (sluice: its static handler), to tell the cost of moving a MiB apart from
# the harness's cost of generating it.
STATIC_PATH = "/large.bin"
STATIC_BODY = (b"".join(b"%063d\n" % i for i in range(LARGE_LEN // 64)))
# The same TLS 1.3 suite for every server, so crypto cost is equal and the
# comparison is about the server; AES-128-GCM is also what sluice prefers.
TLS_OPTS = ["--tls13-ciphers=TLS_AES_128_GCM_SHA256",
            "--ciphers=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"]


def env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        sys.exit("bench: %s must be an integer" % name)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

def proc_children(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(d))
    return kids


def proc_tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(proc_children(p))
    return out


def tree_cpu_ns(pid):
    """Run time of every live thread in the tree (schedstat, ns)."""
    total = 0
    for p in proc_tree(pid):
        try:
            tids = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for t in tids:
            try:
                with open("/proc/%d/task/%s/schedstat" % (p, t)) as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def tree_rss_kib(pid):
    total = 0
    for p in proc_tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def run_client(cmd, timeout):
    """Load generator on the client CPU; killed by PID if it overruns."""
    full = ["taskset", "-c", CLIENT_CPU] + cmd
    p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        out += "\n(bench: killed after %ss)" % timeout
        return 124, out
    except BaseException:
        p.kill()
        p.wait()
        raise
    return p.returncode, out


# ------------------------------------------------------------------ servers

# nghttpx is a proxy: it only takes part where no backend is involved.
# h2c_return is an extra line, not a comparison: sluice's fixed-body
# `return` route, against which its static path can be read.
RELEVANT = {"nghttpx": ("hs_ec", "hs_rsa", "idle"), "h2o": "tcp", "nginx": "tcp",
            "gtlsserver": ("h3", "h3_large")}
RETURN_PATH = "/return/small.txt"
ALL_PORTS = ("tls", "tls_rsa", "h2c", "h1")
LISTENS = {"nghttpx": ("tls", "tls_rsa"), "gtlsserver": ()}  # gtlsserver: UDP only


def relevant(name, w):
    rel = RELEVANT.get(name, (w,))
    if rel == "tcp":  # h2o and nginx: every equal-work row but HTTP/3
        return w not in ("h2c_return", "h3", "h3_large")
    return w in rel


class Server:
    """One fresh server process per measurement, pinned to SERVER_CPU."""

    def __init__(self, name, ctx, callgrind=None, workload=None):
        self.name, self.ctx, self.callgrind = name, ctx, callgrind
        self.one = "rsa" if workload == "hs_rsa" else "ec"
        self.proc, self.pids = None, []
        p = free_ports(4)
        self.ports = {"tls": p[0], "tls_rsa": p[1], "h2c": p[2], "h1": p[3]}
        self.work = tempfile.mkdtemp(prefix=name + ".", dir=ctx["work"])

    def subst(self, template, out):
        with open(os.path.join(HERE, "conf", template)) as f:
            text = string.Template(f.read()).substitute(
                WORK=self.work, DOCROOT=self.ctx["docroot"], RUN_USER=self.ctx["user"],
                CERT_EC=self.ctx["cert_ec"], KEY_EC=self.ctx["key_ec"],
                CERT_RSA=self.ctx["cert_rsa"], KEY_RSA=self.ctx["key_rsa"],
                CERT_ONE=self.ctx["cert_" + self.one], KEY_ONE=self.ctx["key_" + self.one],
                STATIC_BODY=json.dumps(STATIC_BODY.decode()),
                PORT_TLS=self.ports["tls"], PORT_TLS_RSA=self.ports["tls_rsa"],
                PORT_H2C=self.ports["h2c"], PORT_H1=self.ports["h1"],
                METRICS_ROUTE='\n    {"path": "/metrics", "handler": "metrics"},'
                if self.name == "sluice+metrics" else "")
        path = os.path.join(self.work, out)
        with open(path, "w") as f:
            f.write(text)
        return path

    def command(self):
        if self.name in ("sluice", "sluice+metrics"):
            return [self.ctx["sluice_bin"], "-c", self.subst("sluice.json.in", "sluice.json")]
        if self.name == "h2o":
            return ["h2o", "-c", self.subst("h2o.yaml.in", "h2o.yaml")]
        if self.name == "nginx":
            for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                os.makedirs(os.path.join(self.work, "nginx-" + d), exist_ok=True)
            conf = self.subst("nginx.conf.in", "nginx.conf")
            return ["nginx", "-p", self.work + "/", "-c", conf,
                    "-e", os.path.join(self.work, "nginx.err")]
        if self.name == "nghttpx":
            return ["nghttpx", "--conf=" + self.subst("nghttpx.conf.in", "nghttpx.conf")]
        if self.name == "gtlsserver":
            return ["gtlsserver", "-q", "-d", self.ctx["docroot"], "127.0.0.1",
                    str(self.ports["tls"]), self.ctx["key_ec"], self.ctx["cert_ec"]]
        raise ValueError(self.name)

    def start(self):
        cmd = self.command()
        if self.callgrind:
            cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + self.callgrind] + cmd
        self.outf = open(os.path.join(self.work, "server.out"), "w")
        try:
            self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd,
                                         stdin=subprocess.DEVNULL, stdout=self.outf,
                                         stderr=subprocess.STDOUT, cwd=self.work)
        except OSError as e:
            self.outf.close()
            raise RuntimeError("%s: %s" % (self.name, e))
        limit = time.time() + (90 if self.callgrind else 15)
        while time.time() < limit:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s at start-up:\n%s"
                                   % (self.name, self.proc.returncode, self.output_tail()))
            if all(port_open(self.ports[k]) for k in LISTENS.get(self.name, ALL_PORTS)):
                if not LISTENS.get(self.name, ALL_PORTS):
                    time.sleep(0.5)  # a UDP socket cannot be probed; give it time to bind
                self.pids = proc_tree(self.proc.pid)
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("%s did not listen within the limit:\n%s"
                           % (self.name, self.output_tail()))

    def output_tail(self, n=15):
        try:
            with open(os.path.join(self.work, "server.out")) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def cpu_ns(self):
        return tree_cpu_ns(self.proc.pid)

    def rss_kib(self):
        return tree_rss_kib(self.proc.pid)

    def stop(self):
        """SIGTERM, bounded wait, SIGKILL; then any helper child left over."""
        if self.proc is None:
            return
        kids = [(p, start_time(p)) for p in proc_tree(self.proc.pid) if p != self.proc.pid]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60 if self.callgrind else 5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid, st in kids:
            if st is not None and start_time(pid) == st:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.outf.close()
        self.proc = None

    def url(self, kind, path):
        scheme = "https" if kind.startswith("tls") else "http"
        return "%s://127.0.0.1:%d%s" % (scheme, self.ports[kind], path)


def start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return st[st.rindex(")") + 2:].split()[19]
    except (OSError, IndexError):
        return None


# ---------------------------------------------------------------- parsing

def parse_h2load(out):
    r = {}
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    if m:
        secs = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
        r["secs"], r["rps"] = secs, float(m.group(3))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    if m:
        r["done"], r["ok"], r["failed"] = int(m.group(3)), int(m.group(4)), int(m.group(5))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if m:
        r["2xx"] = int(m.group(1))
        r["non2xx"] = sum(int(m.group(i)) for i in (2, 3, 4))
    for key, pat in (("tls", r"TLS Protocol: (\S+)"), ("cipher", r"Cipher: (\S+)"),
                     ("alpn", r"Application protocol: (\S+)")):
        m = re.search(pat, out)
        if m:
            r[key] = m.group(1)
    return r


def parse_wrk(out):
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    if m:
        unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}.get(m.group(3), 1.0)
        r["2xx"] = r["ok"] = r["done"] = int(m.group(1))
        r["secs"] = float(m.group(2)) * unit
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    if "ok" in r:
        r["ok"] -= r["non2xx"]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["failed"] = sum(int(m.group(i)) for i in (1, 2, 3, 4)) if m else 0
    return r


# ---------------------------------------------------------------- workloads
#
# Each workload: a warm-up command (not measured), a measured command, the
# unit its CPU is divided by, and how to get that count from the result.

def h2load(url, extra, tls):
    return ["h2load"] + (TLS_OPTS if tls else []) + extra + [url]


def wl_cmds(w, s, cfg):
    dur = str(cfg["duration"])
    hs = str(cfg["handshakes"])
    small = "/small.txt"
    if w in ("h2c", "h2c_return"):
        u = s.url("h2c", small if w == "h2c" else RETURN_PATH)
        return (h2load(u, ["-n", "5000", "-c16", "-m32"], False),
                h2load(u, ["-c16", "-m32", "-D", dur], False))
    if w == "h2tls":
        u = s.url("tls", small)
        return (h2load(u, ["-n", "5000", "-c16", "-m100"], True),
                h2load(u, ["-c16", "-m100", "-D", dur], True))
    if w == "h1":
        u = s.url("h1", small)
        return (h2load(u, ["--h1", "-n", "5000", "-c64"], False),
                ["wrk", "-t1", "-c64", "-d" + dur + "s", u])
    if w in ("large", "large_static"):
        u = s.url("tls", LARGE_PATH if w == "large" else STATIC_PATH)
        return (h2load(u, ["-n", "16", "-c4"], True),
                h2load(u, ["-c4", "-m1", "-D", dur], True))
    if w in ("h3", "h3_large"):
        h3load = [sys.executable, os.path.join(HERE, "h3load.py")]
        if w == "h3_large":
            u = "https://localhost:%d%s" % (s.ports["tls"], STATIC_PATH)
            big = ["--bytes", str(LARGE_LEN)]
            return (h3load + big + ["-c", "1", "-n", "8", u],
                    h3load + big + ["-c", "4", "-n", "64", u])
        u = "https://localhost:%d%s" % (s.ports["tls"], small)
        return (h3load + ["-c", "1", "-n", "2000", u],
                h3load + ["-c", "4", "-n", str(cfg["h3_requests"]), u])
    if w in ("hs_ec", "hs_rsa"):
        u = s.url("tls" if w == "hs_ec" else "tls_rsa", small)
        # One request per connection: -c N -n N, connections opened at a
        # bounded rate so the accept queue never overflows.
        return (h2load(u, ["-n", "50", "-c", "50"], True),
                h2load(u, ["-n", hs, "-c", hs, "-r", "100", "--rate-period", "50ms"], True))
    raise ValueError(w)


WORKLOADS = {
    # key: (label, unit, metric name)
    "h2c": ("h2c GET 13 B file (h2load -c16 -m32)", "req", "µs/req"),
    "h2tls": ("h2 TLS GET 13 B file (h2load -c16 -m100)", "req", "µs/req"),
    "h1": ("HTTP/1.1 keep-alive GET 13 B file (wrk -c64)", "req", "µs/req"),
    "h3": ("HTTP/3 GET 13 B file (4 gtlsclient conns, 100 streams each)", "req", "µs/req"),
    "h3_large": ("1 MiB file over HTTP/3 (4 gtlsclient conns)", "MiB", "µs/MiB"),
    "h2c_return": ("extra, not equal work: h2c GET 13 B from sluice's return route", "req",
                   "µs/req"),
    "large": ("extra, not equal work: 1 MiB over h2 TLS, sluice generates it (/_h/bytes)",
              "MiB", "µs/MiB"),
    "large_static": ("1 MiB file over h2 TLS (h2load -c4 -m1)", "MiB", "µs/MiB"),
    "hs_ec": ("new TLS 1.3 conn + 1 GET, ECDSA P-256", "conn", "µs/conn"),
    "hs_rsa": ("new TLS 1.3 conn + 1 GET, RSA-2048", "conn", "µs/conn"),
    "idle": ("idle h2 TLS connections", "conn", "KiB/conn"),
}


def measure_load(w, s, cfg):
    warm, cmd = wl_cmds(w, s, cfg)
    run_client(warm, 60)
    timeout = cfg["duration"] + 60
    cpu0 = s.cpu_ns()
    rc, out = run_client(cmd, timeout)
    cpu1 = s.cpu_ns()
    r = parse_wrk(out) if cmd[0] == "wrk" else parse_h2load(out)
    r["rc"] = rc
    units = r.get("ok", 0)  # one MiB per successful large request
    r["units"] = units
    r["cpu_s"] = (cpu1 - cpu0) / 1e9
    problems = []
    if rc != 0:
        problems.append("exit %d" % rc)
    if not units:
        problems.append("no successful requests")
    if r.get("failed") or r.get("non2xx"):
        problems.append("%d failed, %d non-2xx" % (r.get("failed", 0), r.get("non2xx", 0)))
    if problems:
        r["error"] = "; ".join(problems) + " | " + " ".join(out.split("\n")[-6:])[:300]
    if units:
        r["value"] = (cpu1 - cpu0) / 1e3 / units
    return r


def measure_idle(s, cfg):
    warm, _ = wl_cmds("hs_ec", s, cfg)
    run_client(warm, 60)
    time.sleep(0.3)
    before = s.rss_kib()
    n = cfg["idle_conns"]
    cmd = ["taskset", "-c", CLIENT_CPU, sys.executable, os.path.join(HERE, "idle_h2.py"),
           "--port", str(s.ports["tls"]), "-n", str(n), "--parallel", "256", "--hold-s", "300"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    r = {}
    try:
        line = read_line_bounded(p, 240)
        m = re.match(r"READY (\d+) (\d+)", line or "")
        if not m:
            r["error"] = "idle client: %r" % line
            return r
        opened, failed = int(m.group(1)), int(m.group(2))
        time.sleep(1.0)
        after = s.rss_kib()
        r.update(units=opened, failed=failed, rss_before=before, rss_after=after)
        if opened:
            r["value"] = (after - before) / opened
        p.stdin.close()
        line = read_line_bounded(p, 30)
        m = re.match(r"ALIVE (\d+)", line or "")
        alive = int(m.group(1)) if m else -1
        r["alive"] = alive
        if failed or alive != opened:
            r["error"] = "opened %d, failed %d, still open at the end %d" % (opened, failed, alive)
    finally:
        if not p.stdin.closed:
            p.stdin.close()  # the client exits when stdin closes
        if p.poll() is None:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return r


def read_line_bounded(p, timeout):
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    ok = sel.select(timeout)
    sel.close()
    return p.stdout.readline().strip() if ok else None


def measure(w, name, ctx, cfg):
    s = Server(name, ctx, workload=w)
    try:
        s.start()
    except RuntimeError as e:
        s.stop()
        return {"error": str(e).split("\n")[0]}
    try:
        return measure_idle(s, cfg) if w == "idle" else measure_load(w, s, cfg)
    finally:
        s.stop()


# ---------------------------------------------------------------- callgrind

# The small-request rows callgrind counts, with the h2load flags of each.
CG_ROWS = (("h2c", "h2c GET 13 B file", "h2c", "/small.txt", ["-c16", "-m32"]),
           ("h2tls", "h2 TLS GET 13 B file", "tls", "/small.txt", ["-c16", "-m32"]),
           ("h1", "HTTP/1.1 GET 13 B file", "h1", "/small.txt", ["--h1", "-c16"]),
           ("h2c_return", "extra: h2c GET 13 B, sluice's return route", "h2c", RETURN_PATH,
            ["-c16", "-m32"]))


# The libraries that do the HTTP/2 and TLS work for sluice (and nghttpx):
# what a server spends outside them is its own share (h2o and nginx bring
# their own HTTP/2, so for them that is all but OpenSSL).
SHARED_WORK = re.compile(r"lib(nghttp2|ssl|crypto)\.so")


def self_by_object(path):
    """{object file: its own instructions} from a callgrind profile. Call
    lines carry the callee's inclusive cost and are skipped; "ob=" and
    "cob=" share one table of compressed names."""
    names, cur, skip, d = {}, None, False, {}
    with open(path) as f:
        for line in f:
            if line.startswith(("ob=", "cob=")):
                m = re.match(r"c?ob=\((\d+)\)(?: (.*))?", line.strip())
                if m and m.group(2):
                    names[m.group(1)] = m.group(2)
                if line.startswith("ob="):
                    cur = names.get(m.group(1)) if m else line[3:].strip()
                continue
            if line.startswith("calls="):
                skip = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if not skip and len(parts) >= 2:
                    d[cur] = d.get(cur, 0) + int(parts[1])
                skip = False
    return d


def callgrind_ir(name, ctx, n, row):
    """(total instructions, those outside SHARED_WORK) or (None, error)."""
    # %p: h2o forks a helper that would overwrite the server's profile.
    pattern = os.path.join(ctx["work"], "cg.%s.%d.%%p.out" % (name, n))
    s = Server(name, ctx, callgrind=pattern)
    try:
        s.start()
    except RuntimeError as e:
        s.stop()
        return None, str(e).split("\n")[0]
    out = pattern.replace("%p", str(s.proc.pid))  # taskset execs valgrind: same PID
    try:
        _, _, port, path, flags = row
        u = s.url(port, path)
        rc, text = run_client(h2load(u, ["-n", str(n)] + flags, port == "tls"), 600)
        r = parse_h2load(text)
    finally:
        s.stop()
    if rc or r.get("ok") != n:
        return None, "h2load: rc %d, %s ok" % (rc, r.get("ok"))
    try:
        objs = self_by_object(out)
    except (OSError, ValueError) as e:
        return None, str(e)
    if not objs:
        return None, "no costs in " + out
    total = sum(objs.values())
    return (total, total - sum(v for k, v in objs.items() if k and SHARED_WORK.search(k))), None


def run_callgrind(servers, ctx, workloads):
    """{row key: {server: {"value": instructions per request} or {"error"}}}.
    TLS handshakes happen in both runs (16 connections each) and cancel."""
    res = {}
    n1, n2 = 2000, 22000
    # sluice counts requests for the metrics handler only when a config has
    # a metrics route: the same work with one shows what counting costs
    extra = ["sluice+metrics"] if "sluice" in servers else []
    for row in CG_ROWS:
        key = row[0]
        if key not in workloads:
            continue
        res[key] = {}
        for name in servers + (extra if key == "h2c" else []):
            if not relevant(name.split("+")[0], key) or name == "nghttpx":
                continue
            a, err = callgrind_ir(name, ctx, n1, row)
            b, err2 = (None, None) if a is None else callgrind_ir(name, ctx, n2, row)
            if a is None or b is None:
                res[key][name] = {"error": err or err2}
                log("  callgrind %-10s %-6s failed: %s" % (key, name, err or err2))
            else:
                res[key][name] = {"value": (b[0] - a[0]) / float(n2 - n1),
                                  "own": (b[1] - a[1]) / float(n2 - n1)}
                log("  callgrind %-10s %-6s %.0f instructions/request (%.0f outside nghttp2 and "
                    "OpenSSL)" % (key, name, res[key][name]["value"], res[key][name]["own"]))
    return res


# ---------------------------------------------------------------- set-up

def make_certs(work):
    c = {}
    for kind, args in (("ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                       ("rsa", ["-newkey", "rsa:2048"])):
        cert, key = os.path.join(work, kind + ".crt"), os.path.join(work, kind + ".key")
        subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "7", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", key, "-out", cert] + args,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c["cert_" + kind], c["key_" + kind] = cert, key
    return c


def curl(args):
    p = subprocess.run(["curl", "-sk", "--max-time", "10", "-o", "/dev/null",
                        "-w", "%{http_code} %{http_version} %{size_download}"] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return p.stdout.strip()


def preflight(name, ctx):
    """Start once, check every URL answers the right body on the right
    protocol; for sluice, save its 1 MiB body so the peers serve the same
    bytes. Returns None when usable, else the reason."""
    s = Server(name, ctx)
    try:
        s.start()
    except RuntimeError as e:
        s.stop()
        return str(e).replace("\n", " | ")[:400]
    try:
        checks = [
            (["--http2", s.url("tls", "/small.txt")], "200 2 13"),
            (["--http2", s.url("tls_rsa", "/small.txt")], "200 2 13"),
            (["--http2-prior-knowledge", s.url("h2c", "/small.txt")], "200 2 13"),
            (["--http1.1", s.url("h1", "/small.txt")], "200 1.1 13"),
            (["--http2", s.url("tls", LARGE_PATH)], "200 2 %d" % LARGE_LEN),
            (["--http2", s.url("tls", STATIC_PATH)], "200 2 %d" % LARGE_LEN),
        ]
        if name == "nghttpx":  # healthmon: 200 with no body, TLS only
            checks = [(a, "200 2 0") for a, _ in checks[:2]]
        if name == "gtlsserver":  # HTTP/3 only
            checks = []
        if name in ("sluice", "gtlsserver"):
            why = h3_check(s.ports["tls"])
            if why:
                return why
        for args, want in checks:
            got = curl(args)
            if got != want:
                return "curl %s gave %r, want %r" % (" ".join(args), got, want)
        if name == "sluice":
            body = subprocess.run(["curl", "-sk", "--max-time", "10", s.url("tls", LARGE_PATH)],
                                  stdout=subprocess.PIPE).stdout
            if len(body) == LARGE_LEN:
                with open(os.path.join(ctx["docroot"], LARGE_PATH.lstrip("/")), "wb") as f:
                    f.write(body)
        return None
    finally:
        s.stop()


def h3_check(port):
    """One HTTP/3 GET of the small file, or why it failed."""
    out = subprocess.run(["gtlsclient", "--no-quic-dump", "--exit-on-all-streams-close",
                          "--timeout=5s", "localhost", str(port),
                          "https://localhost:%d/small.txt" % port],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30).stdout
    if b"[:status: 200]" not in out or b"body 13 bytes" not in out:
        return "HTTP/3 GET /small.txt failed: %r" % out[-300:]
    return None


def make_docroot(work):
    root = os.path.join(work, "docroot")
    os.makedirs(os.path.join(root, os.path.dirname(LARGE_PATH.lstrip("/"))))
    with open(os.path.join(root, "small.txt"), "wb") as f:
        f.write(SMALL_BODY)
    with open(os.path.join(root, STATIC_PATH.lstrip("/")), "wb") as f:
        f.write(STATIC_BODY)
    # Placeholder bytes until sluice's own /_h/bytes body replaces them.
    with open(os.path.join(root, LARGE_PATH.lstrip("/")), "wb") as f:
        f.write(bytes(i * 7 & 0xFF for i in range(LARGE_LEN)))
    return root


def tool_version(cmd):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=10)
        return p.stdout.strip().split("\n")[0]
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# ---------------------------------------------------------------- report

def fmt(v):
    if v is None:
        return "-"
    if v >= 100:
        return "{:,.0f}".format(v)
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def summarize(results, servers, workloads, rounds):
    """Median over rounds of each value and of each per-round ratio."""
    rows = []
    for w in workloads:
        label, unit, metric = WORKLOADS[w]
        metrics = [(metric, "value")] + ([("req/s", "rps")] if w != "idle" else [])
        for mname, key in metrics:
            per = {}
            for name in servers:
                per[name] = [results[r][w].get(name, {}) for r in range(rounds)]
            med = {}
            for name in servers:
                vals = [x[key] for x in per[name] if key in x and "error" not in x]
                med[name] = statistics.median(vals) if vals else None
            ratios = {}
            for peer in servers:
                if peer == "sluice" or "sluice" not in servers:
                    continue
                rs = []
                for r in range(rounds):
                    a, b = per["sluice"][r], per[peer][r]
                    if key in a and key in b and b[key] and "error" not in a and "error" not in b:
                        rs.append(a[key] / b[key])
                ratios[peer] = rs
            errs = {n: [x["error"] for x in per[n] if "error" in x] for n in servers}
            rows.append({"w": w, "label": label, "metric": mname, "key": key, "med": med,
                         "ratios": ratios, "errors": errs,
                         "per_round": {n: [x.get(key) for x in per[n]] for n in servers}})
    return rows


def render(rows, servers, cg, meta):
    peers = [p for p in servers if p != "sluice"]
    head = ["workload", "metric"] + servers
    if "sluice" in servers:
        head += ["sluice/%s" % p for p in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["label"] if row["key"] != "rps" else "", row["metric"]]
        for n in servers:
            c = fmt(row["med"][n])
            if row["errors"][n]:
                c += " (!%d)" % len(row["errors"][n])
            cells.append(c)
        if "sluice" in servers:
            for p in peers:
                rs = row["ratios"].get(p, [])
                cells.append("%.2f" % statistics.median(rs) if rs else "-")
        lines.append("| " + " | ".join(cells) + " |")
    for key, label, _, _, _ in CG_ROWS if cg else ():
        row = cg.get(key)
        if not row:
            continue
        cells = [label + " (callgrind, 22k-2k req)", "instr/req"]
        for n in servers:
            cells.append(fmt(row.get(n, {}).get("value")))
        if "sluice" in servers:
            for p in peers:
                a, b = row.get("sluice", {}).get("value"), row.get(p, {}).get("value")
                cells.append("%.2f" % (a / b) if a and b else "-")
        lines.append("| " + " | ".join(cells) + " |")
        cells = ["the same, outside libnghttp2, libssl and libcrypto (own share)", "instr/req"]
        cells += [fmt(row.get(n, {}).get("own")) for n in servers]
        if "sluice" in servers:
            for p in peers:
                a, b = row.get("sluice", {}).get("own"), row.get(p, {}).get("own")
                cells.append("%.2f" % (a / b) if a and b else "-")
        lines.append("| " + " | ".join(cells) + " |")
        a, b = row.get("sluice+metrics", {}).get("value"), row.get("sluice", {}).get("value")
        if a and b:  # an extra line, not a peer comparison: sluice against itself
            cells = ["the same, sluice with a metrics route (counting on: %+.0f, %.3fx)" % (a - b, a / b),
                     "instr/req"] + [fmt(a) if n == "sluice" else "-" for n in servers]
            cells += ["-"] * (len(head) - len(cells))
            lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)

    nr = meta["rounds"]
    detail = ["| workload | metric | server | " + " | ".join("round %d" % (i + 1)
                                                          for i in range(nr)) + " |",
              "|" + "---|" * (3 + nr)]
    for row in rows:
        for n in servers:
            vals = ["-" if v is None else fmt(v) for v in row["per_round"][n]]
            if any(v != "-" for v in vals):
                detail.append("| %s | %s | %s | %s |" % (row["w"], row["metric"], n,
                                                         " | ".join(vals)))
        for p, rs in row["ratios"].items():
            if rs:
                detail.append("| %s | %s | sluice/%s | %s |" % (
                    row["w"], row["metric"], p, " | ".join("%.2f" % x for x in rs)))
    errors = []
    for row in rows:
        if row["key"] == "rps":
            continue
        for n, es in row["errors"].items():
            for e in es:
                errors.append("- %s / %s: %s" % (row["w"], n, e))

    md = ["# sluice benchmark", "",
          "%s; %s rounds of %ss load per server and workload; servers alternate each round." % (
              meta["date"], meta["rounds"], meta["duration"]),
          "Server on CPU %s (one worker), load generator on CPU %s, loopback only." % (
              SERVER_CPU, CLIENT_CPU),
          "Medians over rounds; ratio columns are the median of per-round ratios.",
          "µs/unit and KiB/conn: server CPU (all threads) or RSS; lower is better;"
          " req/s: higher is better. (!N) = N rounds failed, see below.", "",
          table, "", "## Versions", ""]
    md += ["- %s: %s" % kv for kv in meta["versions"].items()]
    md += ["- TLS: %s" % meta.get("tls", "?")]
    md += ["", "## Per round", ""] + detail
    if errors:
        md += ["", "## Failures", ""] + errors
    if meta.get("skipped"):
        md += ["", "## Skipped servers", ""] + ["- %s: %s" % kv for kv in meta["skipped"].items()]
    return table, "\n".join(md) + "\n"


def h3_against_h2(rows):
    """Issue 15's comparison of sluice with itself: an HTTP/3 request
    against an HTTP/2-over-TLS one, CPU per request, same run."""
    med = {r["w"]: r["med"].get("sluice") for r in rows if r["key"] == "value"}
    out = []
    for h3, h2, unit in (("h3", "h2tls", "µs/req"), ("h3_large", "large_static", "µs/MiB")):
        a, b = med.get(h3), med.get(h2)
        if a and b:
            out.append("%s %s against %s %s (%.2fx)" % (h3, fmt(a), fmt(b), unit, a / b))
    if not out:
        return None
    return ("sluice HTTP/3 against its own h2 TLS rows: " + "; ".join(out) +
            " (QUIC encrypts, paces and acknowledges per packet in user space)")


def check_targets(rows, cg):
    """Issue 14's goals (equal work, ratios from the same run), as a short
    verdict under the table."""
    out = []
    find = {(r["w"], r["key"]): r for r in rows}

    def ratio(w, key, peer):
        r = find.get((w, key))
        rs = r["ratios"].get(peer) if r else None
        return statistics.median(rs) if rs else None

    def verdict(what, x, bar):
        if x is not None:
            out.append("%s: %s (%.2f, goal <= %.2f)" % (what, "yes" if x <= bar else "NO", x, bar))

    for w in ("h2c", "h2tls"):
        verdict("%s CPU/req vs h2o" % w, ratio(w, "value", "h2o"), 1.0)
    verdict("1 MiB file over h2 TLS CPU/MiB vs h2o", ratio("large_static", "value", "h2o"), 1.0)
    verdict("h1 CPU/req vs nginx", ratio("h1", "value", "nginx"), 0.9)
    r = find.get(("idle", "value"))
    kib = r["med"].get("sluice") if r else None
    if kib is not None:
        out.append("idle h2 TLS KiB/conn: %s (%.1f, goal <= 16)" % ("yes" if kib <= 16 else "NO", kib))
    for key in ("h2c", "h2tls"):
        v = ((cg or {}).get(key) or {}).get("sluice", {}).get("value")
        if v:
            out.append("%s instructions/request: %s (%.0f, goal <= 10,500)" % (
                key, "yes" if v <= 10500 else "NO", v))
    return out


# ---------------------------------------------------------------- main

def on_term(signum, frame):
    # SystemExit unwinds through the finally blocks that stop our servers.
    sys.exit(128 + signum)


def main():
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    cfg = {"rounds": env_int("BENCH_ROUNDS", 3), "duration": env_int("BENCH_DURATION", 4),
           "idle_conns": env_int("BENCH_IDLE_CONNS", 4000),
           "handshakes": env_int("BENCH_HANDSHAKES", 2000),
           "h3_requests": env_int("BENCH_H3_REQUESTS", 25000)}
    if cfg["idle_conns"] > 9000:
        sys.exit("bench: BENCH_IDLE_CONNS above 9000 would exhaust file descriptors")
    known = ("sluice", "h2o", "nginx", "nghttpx", "gtlsserver")
    servers = [s for s in os.environ.get("BENCH_SERVERS", ",".join(known)).split(",") if s]
    for name in servers:
        if name not in known:
            sys.exit("bench: unknown server %r (known: %s)" % (name, ",".join(known)))
    workloads = [w for w in os.environ.get("BENCH_WORKLOADS", ",".join(WORKLOADS)).split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            sys.exit("bench: unknown workload %r (known: %s)" % (w, ",".join(WORKLOADS)))
    out_dir = os.environ.get("BENCH_OUT", os.path.join(HERE, "out"))
    sluice_bin = os.environ.get("SLUICE_BIN", "")

    work = tempfile.mkdtemp(prefix="sluice-bench.")
    ctx = {"work": work, "user": subprocess.run(["id", "-un"], stdout=subprocess.PIPE,
                                                text=True).stdout.strip(),
           "sluice_bin": os.path.abspath(sluice_bin) if sluice_bin else ""}
    ctx.update(make_certs(work))
    ctx["docroot"] = make_docroot(work)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "rounds": cfg["rounds"],
            "duration": cfg["duration"], "skipped": {}, "versions": {}}
    try:
        skipped = meta["skipped"]
        if "sluice" in servers and not (sluice_bin and os.access(ctx["sluice_bin"], os.X_OK)):
            skipped["sluice"] = "SLUICE_BIN not set or not executable"
        for name in servers:
            if name in skipped:
                continue
            why = preflight(name, ctx)
            if why:
                skipped[name] = why
        for name, why in skipped.items():
            log("bench: skipping %s: %s" % (name, why))
        # Keep the sluice column (as "-") so the table shape never changes.
        active = [s for s in servers if s not in skipped]
        vers = {"sluice": [ctx["sluice_bin"], "--version"], "h2o": ["h2o", "--version"],
                "nginx": ["nginx", "-v"], "nghttpx": ["nghttpx", "--version"],
                "gtlsserver": ["dpkg-query", "-W", "-f", "ngtcp2-server ${Version}", "ngtcp2-server"]}
        for k in active:
            meta["versions"][k] = tool_version(vers[k])
        meta["versions"]["h2load"] = tool_version(["h2load", "--version"])
        meta["versions"]["wrk"] = tool_version(["wrk", "-v"])

        results = [{w: {} for w in workloads} for _ in range(cfg["rounds"])]
        t0 = time.time()
        for r in range(cfg["rounds"]):
            order = active[r % len(active):] + active[:r % len(active)] if active else []
            for w in workloads:
                for name in order:
                    if not relevant(name, w):
                        continue
                    res = measure(w, name, ctx, cfg)
                    results[r][w][name] = res
                    if "tls" in res:
                        meta["tls"] = "%s %s (ALPN %s)" % (res["tls"], res.get("cipher"),
                                                          res.get("alpn"))
                    log("round %d %-6s %-6s %s %s%s" % (
                        r + 1, w, name,
                        fmt(res.get("value")) + " " + WORKLOADS[w][2],
                        ("%s req/s" % fmt(res["rps"])) if "rps" in res else "",
                        ("  ERROR " + res["error"]) if "error" in res else ""))
        log("bench: load runs took %.0f s" % (time.time() - t0))
        cg = (run_callgrind(active, ctx, workloads)
              if os.environ.get("BENCH_CALLGRIND") == "1" else None)

        rows = summarize(results, servers, workloads, cfg["rounds"])
        table, md = render(rows, servers, cg, meta)
        targets = check_targets(rows, cg) if "sluice" in active else []
        if targets:
            md += "\n## Issue 14 goals\n\n" + "\n".join("- " + t for t in targets) + "\n"
        h3line = h3_against_h2(rows)
        if h3line:
            md += "\n" + h3line + "\n"
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "latest.md"), "w") as f:
            f.write(md)
        with open(os.path.join(out_dir, "latest.json"), "w") as f:
            json.dump({"meta": meta, "config": cfg, "results": results, "callgrind": cg}, f,
                      indent=1, default=str)
        print()
        print(table)
        for t in targets:
            print("target: " + t)
        if h3line:
            print(h3line)
        for name, why in skipped.items():
            print("skipped %s: %s" % (name, why))
        print("\nwritten: %s" % os.path.join(out_dir, "latest.md"))
    finally:
        if os.environ.get("BENCH_KEEP") == "1":
            log("bench: kept %s" % work)
        else:
            subprocess.run(["rm", "-rf", work])
    return 0


if __name__ == "__main__":
    sys.exit(main())
