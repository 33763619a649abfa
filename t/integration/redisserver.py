"""A real redis-server for the tests that share jobs through Redis: its own
temporary directory, a free loopback port, no persistence unless asked
(aof=True turns appendonly on with fsync always), stopped by PID. start()
again after stop() reuses the port and the directory, so an AOF restart
finds its file."""

import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import SLOW, free_port

redis = pytest.importorskip("redis")


class RedisServer:
    def __init__(self, workdir, aof=False, extra=()):
        if not shutil.which("redis-server"):
            pytest.fail("redis-server is missing (make deps installs it)")
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=workdir)
        self.port = free_port()
        self.aof = aof
        self.extra = list(extra)
        self.proc = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--daemonize", "no",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if self.aof:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen(argv + self.extra, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10 * SLOW
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        pytest.fail("redis-server did not start on port %d" % self.port)

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10 * SLOW)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
