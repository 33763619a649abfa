#!/usr/bin/python3
"""A job for the "exec" executor tests: writes its pid to --pidfile, copies
stdin to stdout with --echo-stdin, then prints --lines lines --interval
seconds apart (each also as a JSON progress line on fd 3 when open), one
line on stderr, sleeps --sleep seconds and exits with --exit."""
import argparse
import json
import os
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--pidfile")
ap.add_argument("--echo-stdin", action="store_true")
ap.add_argument("--lines", type=int, default=0)
ap.add_argument("--interval", type=float, default=0.0)
ap.add_argument("--sleep", type=float, default=0.0)
ap.add_argument("--exit", type=int, default=0)
a = ap.parse_args()

if a.pidfile:
    with open(a.pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(a.pidfile + ".tmp", a.pidfile)
out = sys.stdout.buffer
if a.echo_stdin:
    while True:
        b = sys.stdin.buffer.read1(65536)
        if not b:
            break
        out.write(b)
        out.flush()
try:
    prog = os.fdopen(3, "w")
except OSError:
    prog = None
for i in range(1, a.lines + 1):
    out.write(b"line %d\n" % i)
    out.flush()
    if prog:
        prog.write(json.dumps({"done": i, "of": a.lines}) + "\n")
        prog.flush()
    if a.interval:
        time.sleep(a.interval)
sys.stderr.write("job_app: finished %d lines\n" % a.lines)
sys.stderr.flush()
if a.sleep:
    time.sleep(a.sleep)
sys.exit(a.exit)
