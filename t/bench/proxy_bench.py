#!/usr/bin/python3
"""Proxy benchmark on equal work: h2load (h2c, prior knowledge) -> proxy ->
upstream, where the proxy is sluice, nghttpx and nginx in turn, all in
front of the same upstream serving the same 1 KiB file:

  - an HTTP/1.1 upstream (nginx, static file, keep-alive): all three proxies;
  - an h2c upstream (nghttpd, static file): sluice ("protocol": "h2c") and
    nghttpx (backend proto=h2); nginx cannot proxy HTTP/2 to a plain
    upstream, so it has no row there;
  - cached: the HTTP/1.1 upstream says Cache-Control: max-age=3600
    (nginx "expires 1h"), and sluice (a "cache" zone on the proxy route)
    and nginx (proxy_cache, with proxy_cache_lock) answer every measured
    request from their caches (the warm-up fills them). The extra row
    "sluice-static" is sluice's static handler serving the same file from
    a document root: the hit path against the file path. sluice adds Age
    and Cache-Status to every hit, nginx neither.

Equal work: every proxy adds the forwarding fields (X-Forwarded-For,
X-Forwarded-Proto, Forwarded, Via; sluice and nginx also X-Forwarded-Host),
and sluice runs with its request ids off ("request_id"/"traceparent":
false), which neither peer makes. The row "sluice+ids" is sluice's default
(X-Request-Id and a traceparent made per request), for what that costs.

Each proxy runs one worker pinned to CPU 1; h2load and the upstream share
CPU 0. The proxies run alternately, several rounds; per row the median and
the min-max over rounds of req/s and of the proxy's own CPU time per request
(schedstat run time of every thread of the proxy's process tree, over
the run: bench.py's tree_cpu_ns). The
sluice/nghttpx ratio of medians closes each block. Everything binds
127.0.0.1 on free ports and is stopped by PID.

    t/bench/proxy_bench.py BUILD/sluice [--rounds 3] [-n 30000] [-c 20] [-m 10]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from bench import free_ports, tree_cpu_ns  # one copy of the /proc and port helpers


def free_port():
    return free_ports(1)[0]


def wait_port(port, proc, what):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("proxy_bench: %s exited (%s)" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("proxy_bench: %s: nothing on port %d" % (what, port))


def nginx_conf(d, body):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write("pid %s/nginx.pid; error_log %s/error.log warn; worker_processes 1;\n"
                "daemon off; events { worker_connections 4096; }\n"
                "http { access_log off; client_body_temp_path %s/cb; proxy_temp_path %s/pt;\n"
                "fastcgi_temp_path %s/ft; uwsgi_temp_path %s/ut; scgi_temp_path %s/st;\n%s }\n"
                % ((d,) * 7 + (body,)))
    return ["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf")]


class Bench:
    def __init__(self, args):
        self.a = args
        self.d = tempfile.mkdtemp(prefix="sluice-proxy-bench.")
        os.chmod(self.d, 0o755)  # nginx workers (www-data under root) read the file
        self.procs = []
        www = os.path.join(self.d, "www")
        os.makedirs(www)
        with open(os.path.join(www, "small.txt"), "wb") as f:
            f.write(b"a" * 1024)
        os.chmod(www, 0o755)
        self.www = www

    def start(self, argv, port, what, cpu):
        p = subprocess.Popen(["taskset", "-c", str(cpu)] + argv, stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(self.d, what + ".err"), "wb"),
                             stdin=subprocess.DEVNULL)
        self.procs.append(p)
        wait_port(port, p, what)
        return p

    def upstreams(self):
        self.h1_port, self.h2_port, self.c_port = free_port(), free_port(), free_port()
        self.start(nginx_conf(os.path.join(self.d, "up"),
                              "server { listen 127.0.0.1:%d; root %s; keepalive_requests 1000000; }\n"
                              "server { listen 127.0.0.1:%d; root %s; keepalive_requests 1000000;"
                              " expires 1h; }"
                              % (self.h1_port, self.www, self.c_port, self.www)),
                   self.h1_port, "nginx-upstream", 0)
        self.start(["nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", self.www, str(self.h2_port)],
                   self.h2_port, "nghttpd-upstream", 0)

    def sluice(self, h2, ids=False, cache=False, static=False):
        port = free_port()
        cfg = os.path.join(self.d, "sluice-%d.json" % port)
        up = {"servers": ["127.0.0.1:%d" % (self.h2_port if h2 else
                                            self.c_port if cache else self.h1_port)],
              "keepalive": 64}
        if h2:
            up["protocol"] = "h2c"
        route = {"path": "/", "handler": "proxy", "upstream": "app",
                 "request_id": ids, "traceparent": ids}
        if cache:
            route["cache"] = {"zone": "main"}
        if static:
            route = {"path": "/", "handler": "static", "root": self.www}
        with open(cfg, "w") as f:
            json.dump({"workers": 1, "access_log": False, "log_level": "warn",
                       "listen": [{"addr": "127.0.0.1:%d" % port}],
                       "upstreams": {"app": up},
                       "caches": {"main": {"memory_bytes": 64 << 20}},
                       "routes": [route]}, f)
        return self.start([self.a.sluice, "-c", cfg], port, "sluice", 1), port

    def nghttpx(self, h2):
        port = free_port()
        backend = "127.0.0.1,%d" % (self.h2_port if h2 else self.h1_port)
        if h2:
            backend += ";;proto=h2"
        return self.start(["nghttpx", "--frontend=127.0.0.1,%d;no-tls" % port,
                           "--backend=" + backend, "--workers=1", "--no-ocsp",
                           "--add-x-forwarded-for", "--add-forwarded=for,proto,host",
                           "--log-level=WARN", "--accesslog-file=/dev/null",
                           "--errorlog-file=" + os.path.join(self.d, "nghttpx.log"),
                           "--pid-file=" + os.path.join(self.d, "nghttpx-%d.pid" % port)],
                          port, "nghttpx", 1), port

    def nginx(self, cache=False):
        port = free_port()
        d = os.path.join(self.d, "ngx-%d" % port)
        cache_conf = ("proxy_cache_path %s/cache levels=1:2 keys_zone=main:16m max_size=64m "
                      "inactive=1h use_temp_path=off;\n" % d if cache else "")
        body = (cache_conf
                + "upstream app { server 127.0.0.1:%d; keepalive 64; }\n"
                  "server { listen 127.0.0.1:%d http2; http2_max_concurrent_streams 128;\n"
                  "  keepalive_requests 1000000; location / { proxy_pass http://app;\n"
                  % (self.c_port if cache else self.h1_port, port)
                + ("  proxy_cache main; proxy_cache_lock on;\n" if cache else "")
                + "  proxy_http_version 1.1; proxy_set_header Connection \"\";\n"
                  "  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
                  "  proxy_set_header X-Forwarded-Proto $scheme;\n"
                  "  proxy_set_header X-Forwarded-Host $http_host;\n"
                  "  proxy_set_header Forwarded \"for=$remote_addr;proto=$scheme;host=\\\"$http_host\\\"\";\n"
                  "  proxy_set_header Via \"2 nginx\"; } }")
        return self.start(nginx_conf(d, body), port, "nginx", 1), port

    def load(self, port, n):
        r = subprocess.run(["taskset", "-c", "0", "h2load", "-n", str(n), "-c", str(self.a.c),
                            "-m", str(self.a.m), "http://127.0.0.1:%d/small.txt" % port],
                           capture_output=True, text=True, timeout=600)
        rps = ok = 0
        for line in r.stdout.splitlines():
            if line.startswith("finished in"):
                rps = float(line.split(",")[1].split()[0])
            if line.startswith("status codes:"):
                ok = int(line.split()[2])
        return rps, ok

    def measure(self, proc, port):
        self.load(port, 2000)  # warm up: connections, pools
        before = tree_cpu_ns(proc.pid)
        rps, ok = self.load(port, self.a.n)
        used = tree_cpu_ns(proc.pid) - before
        if ok != self.a.n:
            print("  warning: %d of %d requests succeeded" % (ok, self.a.n))
        return rps, used / max(ok, 1) / 1e3

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.d, ignore_errors=True)


def summary(vals):
    return statistics.median(vals), min(vals), max(vals)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sluice")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", type=int, default=30000)
    ap.add_argument("-c", type=int, default=20)
    ap.add_argument("-m", type=int, default=10)
    a = ap.parse_args()
    for tool in ("h2load", "nginx", "nghttpx", "nghttpd", "taskset"):
        if not shutil.which(tool):
            sys.exit("proxy_bench: %s not installed (make deps)" % tool)
    b = Bench(a)
    try:
        b.upstreams()
        blocks = [("http/1.1 upstream (nginx)", False, ("sluice", "nghttpx", "nginx", "sluice+ids")),
                  ("h2c upstream (nghttpd)", True, ("sluice", "nghttpx", "sluice+ids")),
                  ("cached (max-age=3600 from the http/1.1 upstream)", "cache",
                   ("sluice", "nginx", "sluice-static"))]
        print("proxy benchmark: h2load -n %d -c %d -m %d over h2c, a 1 KiB file; each proxy 1 "
              "worker on CPU 1, upstream and h2load on CPU 0; %d rounds: median [min-max]"
              % (a.n, a.c, a.m, a.rounds))
        for title, h2, names in blocks:
            if h2 == "cache":
                servers = {"sluice": b.sluice(False, cache=True), "nginx": b.nginx(cache=True),
                           "sluice-static": b.sluice(False, static=True)}
            else:
                servers = {"sluice": b.sluice(h2), "nghttpx": b.nghttpx(h2),
                           "sluice+ids": b.sluice(h2, ids=True)}
            if "nginx" in names and "nginx" not in servers:
                servers["nginx"] = b.nginx()
            res = {k: ([], []) for k in names}
            for _ in range(a.rounds):
                for k in names:
                    rps, us = b.measure(*servers[k])
                    res[k][0].append(rps)
                    res[k][1].append(us)
            print("\n  %s" % title)
            print("  %-10s %26s %30s" % ("proxy", "req/s", "proxy CPU us/request"))
            for k in names:
                r, u = summary(res[k][0]), summary(res[k][1])
                print("  %-10s %8.0f [%7.0f-%7.0f] %12.2f [%5.2f-%5.2f]" % ((k,) + r + u))
            s_r, s_u = statistics.median(res["sluice"][0]), statistics.median(res["sluice"][1])
            for k in [n for n in names if n != "sluice"]:
                print("  sluice / %-13s req/s %.2fx, CPU per request %.2fx"
                      % (k, s_r / statistics.median(res[k][0]),
                         s_u / statistics.median(res[k][1])))
            for p, _ in servers.values():
                p.send_signal(signal.SIGTERM)
    finally:
        b.stop_all()


if __name__ == "__main__":
    main()
