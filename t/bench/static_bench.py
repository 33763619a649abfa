#!/usr/bin/python3
"""Static files side by side (issue 6): sluice's static handler, h2o's
file.dir and nginx's root, one worker each pinned to CPU 1, load generators
on CPU 0, all serving the same root. Measures server CPU (utime + stime from
/proc) per request for a 13-byte /small.txt over h2c, h2 + TLS and HTTP/1.1
keep-alive, and per MiB for a 1 MiB /large.bin over h2 + TLS, then prints
the ratios sluice/h2o and sluice/nginx (below 1 = sluice spends less).
nginx cannot speak h2c on a port that also takes HTTP/1.1 and has no
prior-knowledge h2c worth comparing here, so its h2c cell is "-".
Each cell is a fresh server process; the default run takes about 90 s.

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

SECS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
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
    elif kind in ("h2c", "tls"):
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


def nginx_argv(d, tls, h1, cert, key, root):
    """nginx 1.22, one process (master_process off: the PID measured is the
    one serving), sendfile and an open-file cache as in t/bench/conf."""
    work = os.path.join(d, "nginx")
    os.makedirs(work, exist_ok=True)
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write("daemon off; master_process off; worker_processes 1;\n"
                "pid %(w)s/nginx.pid; error_log %(w)s/nginx.err warn;\n"
                "events { worker_connections 4096; multi_accept on; }\n"
                "http { access_log off; default_type application/octet-stream;\n"
                " types { text/plain txt; application/octet-stream bin; }\n"
                " sendfile on; tcp_nopush on; open_file_cache max=1000 inactive=60s;\n"
                " open_file_cache_valid 60s; keepalive_requests 100000000;\n"
                " http2_max_concurrent_streams 100;\n"
                " client_body_temp_path %(w)s/b; proxy_temp_path %(w)s/p;\n"
                " fastcgi_temp_path %(w)s/f; uwsgi_temp_path %(w)s/u; scgi_temp_path %(w)s/s;\n"
                " server { listen 127.0.0.1:%(tls)d ssl http2; ssl_certificate %(cert)s;\n"
                "   ssl_certificate_key %(key)s; root %(root)s; }\n"
                " server { listen 127.0.0.1:%(h1)d; root %(root)s; } }\n"
                % {"w": work, "tls": tls, "h1": h1, "cert": cert, "key": key, "root": root})
    return ["nginx", "-p", work + "/", "-c", conf, "-e", os.path.join(work, "nginx.err")]


def report(rows):
    cpu = {(s, k): per for s, k, n, per, unit in rows}
    print("%-7s %-6s %10s %12s %12s %12s" % ("server", "load", "units", "cpu", "sluice/h2o",
                                             "sluice/nginx"))
    for server, kind, n, per, unit in rows:
        ratios = []
        for peer in ("h2o", "nginx"):
            mine, theirs = cpu.get(("sluice", kind)), cpu.get((peer, kind))
            ok = server == "sluice" and mine and theirs
            ratios.append("%.2f" % (mine / theirs) if ok else "-")
        val = "%8.2f %s" % (per, unit) if per is not None else "-"
        print("%-7s %-6s %10d %12s %12s %12s" % (server, kind, n, val, ratios[0], ratios[1]))


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
        for server in ("sluice", "h2o", "nginx"):
            if server != "sluice" and not shutil.which(server):
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
            elif server == "nginx":
                argv = nginx_argv(d, tls, h1, cert, key, root)
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
            ports = [tls, h1] if server == "nginx" else [tls, h2c, h1]
            for kind, p, url_path in (("h2c", h2c, "/small.txt"), ("tls", tls, "/small.txt"),
                                      ("h1", h1, "/small.txt"), ("large", tls, "/large.bin")):
                if server == "nginx" and kind == "h2c":
                    rows.append((server, kind, 0, None, "us/req"))
                    continue
                proc = start(argv, ports)
                try:
                    scheme = "https" if kind in ("tls", "large") else "http"
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
                per = (c1 - c0) * 1e6 / n if n else None
                rows.append((server, kind, n, per, unit))
        report(rows)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
