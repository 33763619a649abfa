#!/usr/bin/python3
"""Standalone static-file check: server CPU per request (13-byte file over
h2c and HTTP/1.1 keep-alive) and per MiB (1 MiB file over h2 + TLS) for
sluice's static handler and h2o's file.dir, one worker each pinned to CPU 1,
load generators on CPU 0. A short sanity run, not `make bench` (which owns
the full method: t/bench/run.sh, docs/bench.md).

  SLUICE_BIN=build/sluice /usr/bin/python3 t/bench/static_bench.py [seconds]
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SECS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
SLUICE = os.environ.get("SLUICE_BIN", "build/sluice")
TICK = os.sysconf("SC_CLK_TCK")


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / TICK


def wait_port(p):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", p), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not listen on %d" % p)


def start(argv, ports):
    proc = subprocess.Popen(["taskset", "-c", "1"] + argv, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for p in ports:
        wait_port(p)
    return proc


def load(kind, url):
    base = ["taskset", "-c", "0"]
    if kind == "h1":
        argv = base + ["wrk", "-t1", "-c64", "-d%ds" % SECS, url]
    elif kind == "h2c":
        argv = base + ["h2load", "-c16", "-m32", "-D", str(SECS), url]
    else:
        argv = base + ["h2load", "-c4", "-m1", "-D", str(SECS), url]
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=SECS + 30).stdout.decode()
    if kind == "h1":
        if "Non-2xx" in out:
            sys.stderr.write(out[-800:])
        line = [x for x in out.splitlines() if "requests in" in x][0]
        return int(line.split()[0])
    line = [x for x in out.splitlines() if x.startswith("requests:")][0]
    n = int(line.split()[7])  # succeeded
    if n == 0:
        sys.stderr.write(out[-1500:])
    return n


def main():
    d = tempfile.mkdtemp(prefix="static-bench-")
    os.chmod(d, 0o755)  # h2o started as root serves as "nobody"
    try:
        root = os.path.join(d, "root")
        os.mkdir(root)
        with open(os.path.join(root, "small.txt"), "wb") as f:
            f.write(b"hello world\n!")
        with open(os.path.join(root, "large.bin"), "wb") as f:
            f.write(os.urandom(1 << 20))
        cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=localhost"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = []
        for server in ("sluice", "h2o"):
            if server == "h2o" and not shutil.which("h2o"):
                continue
            tls, h2c, h1 = port(), port(), port()
            if server == "sluice":
                cfg = {"workers": 1, "access_log": False, "log_level": "warn",
                       "listen": [{"addr": "127.0.0.1:%d" % tls,
                                   "tls": {"cert": cert, "key": key}},
                                  {"addr": "127.0.0.1:%d" % h2c}, {"addr": "127.0.0.1:%d" % h1}],
                       "routes": [{"path": "/", "handler": "static", "root": root}]}
                path = os.path.join(d, "sluice.json")
                with open(path, "w") as f:
                    json.dump(cfg, f)
                argv = [SLUICE, "-c", path]
            else:
                path = os.path.join(d, "h2o.yaml")
                with open(path, "w") as f:
                    f.write("num-threads: 1\naccess-log: /dev/null\nerror-log: %s/h2o.err\n"
                            "listen:\n  port: %d\n  host: 127.0.0.1\n  ssl:\n"
                            "    certificate-file: %s\n    key-file: %s\n"
                            "listen:\n  host: 127.0.0.1\n  port: %d\n"
                            "listen:\n  host: 127.0.0.1\n  port: %d\n"
                            "hosts:\n  default:\n    paths:\n      /:\n        file.dir: %s\n"
                            % (d, tls, cert, key, h2c, h1, root))
                argv = ["h2o", "-c", path]
            for kind, p, url_path in (("h2c", h2c, "/small.txt"), ("h1", h1, "/small.txt"),
                                      ("large", tls, "/large.bin")):
                proc = start(argv, [tls, h2c, h1])
                try:
                    scheme = "https" if kind == "large" else "http"
                    url = "%s://127.0.0.1:%d%s" % (scheme, p, url_path)
                    c0 = cpu_s(proc.pid)
                    n = load(kind, url)
                    c1 = cpu_s(proc.pid)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                unit = "us/MiB" if kind == "large" else "us/req"
                per = (c1 - c0) * 1e6 / n if n else float("nan")
                rows.append((server, kind, n, per, unit))
        print("%-7s %-6s %10s %10s" % ("server", "load", "units", "cpu"))
        for server, kind, n, per, unit in rows:
            print("%-7s %-6s %10d %8.2f %s" % (server, kind, n, per, unit))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
