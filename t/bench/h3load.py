#!/usr/bin/python3
"""HTTP/3 load for `make bench`: -c connections, each one gtlsclient
process (ngtcp2's example client; Debian's h2load has no HTTP/3) making
-n requests on one QUIC connection, as many at a time as the server
allows. Statuses are read from the client's header dump; with --bytes N
(large bodies) the client runs quiet, since even its per-frame log lines
would make it the bottleneck, and a connection counts its n requests as
done when it exits 0 with the last body N bytes long. Prints an
h2load-shaped summary that bench.py parses:

  finished in 1.23s, 45678.90 req/s
  requests: N total, N started, D done, S succeeded, F failed, 0 errored, 0 timeout
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", type=int, default=4)
    ap.add_argument("-n", type=int, default=20000, help="requests per connection")
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("--bytes", type=int, default=0, help="quiet mode: each body's length")
    ap.add_argument("url")
    a = ap.parse_args()
    m = re.match(r"https://([^:/]+):(\d+)(/.*)", a.url)
    if not m:
        sys.exit("h3load: url must be https://host:port/path")
    host, port, path = m.groups()
    argv = ["gtlsclient", "--no-quic-dump", "--no-http-dump", "--exit-on-all-streams-close",
            "--timeout=30s", "-n", str(a.n)]
    dirs = [tempfile.mkdtemp(prefix="h3load.") for _ in range(a.c)] if a.bytes else []
    tail = [host, port, "https://%s:%s%s" % (host, port, path)]
    t0 = time.monotonic()
    procs = [subprocess.Popen(argv + (["-q", "--download=" + dirs[i]] if a.bytes else []) + tail,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(a.c)]
    ok = bad = 0
    for i, p in enumerate(procs):
        out, _ = p.communicate(timeout=a.timeout)
        if a.bytes:
            got = [os.path.getsize(os.path.join(dirs[i], f)) for f in os.listdir(dirs[i])]
            if p.returncode == 0 and got == [a.bytes]:
                ok += a.n
            shutil.rmtree(dirs[i], ignore_errors=True)
            continue
        for st in re.findall(rb"\[:status: (\d+)\]", out):
            if st.startswith(b"2"):
                ok += 1
            else:
                bad += 1
    secs = time.monotonic() - t0
    total = a.c * a.n
    print("finished in %.2fs, %.2f req/s" % (secs, ok / secs if secs else 0))
    print("requests: %d total, %d started, %d done, %d succeeded, %d failed, 0 errored, "
          "0 timeout" % (total, total, ok + bad, ok, total - ok))
    print("status codes: %d 2xx, 0 3xx, %d 4xx, 0 5xx" % (ok, bad))


if __name__ == "__main__":
    main()
