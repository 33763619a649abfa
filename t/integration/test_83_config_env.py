"""Configuration for containers: every key from the environment
(SLUICE_A__B=value, validated like the file, errors naming the variable),
`--print-config` (defaults, file and environment applied, secrets
redacted), and `workers: "auto"` honouring the CPU affinity mask. Checked
over the network where the key changes behaviour: an HTTP/2 client reads
the SETTINGS a variable set, curl reads a route body a variable set."""

import json
import os
import shutil
import socket

import h2.connection
import h2.events
import pytest

from conftest import SLOW, SLUICE_BIN, run


def write_cfg(tmp_path, cfg):
    p = str(tmp_path / "c.json")
    with open(p, "w") as f:
        json.dump(cfg, f)
    return p


BASE = {"listen": [{"addr": "127.0.0.1:0"}],
        "routes": [{"path": "/", "handler": "return", "status": 200, "body": "file\n"}]}


def sluice_env(**env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    e.update(env)
    return e


@pytest.mark.parametrize("var,value,want", [
    ("SLUICE_LIMITS__H2_MAX_CONCURRENT_STREAMS", "0",
     ["limits.h2_max_concurrent_streams: must be between 1",
      "SLUICE_LIMITS__H2_MAX_CONCURRENT_STREAMS"]),
    ("SLUICE_LIMITS__H2_MAX_CONCURENT_STREAMS", "5",
     ['did you mean "h2_max_concurrent_streams"', "SLUICE_LIMITS__H2_MAX_CONCURENT_STREAMS"]),
    ("SLUICE_NOPE__X", "1", ['SLUICE_NOPE__X: "nope" is not a configuration key']),
    ("SLUICE_LISTEN__5__ADDR", "127.0.0.1:0",
     ["index 5 past the end of listen[5] (1 items)"]),
])
def test_env_error_names_variable_and_path(tmp_path, var, value, want):
    p = write_cfg(tmp_path, BASE)
    r = run([SLUICE_BIN, "-t", "-c", p], timeout=15, text=True, env=sluice_env(**{var: value}))
    assert r.returncode == 1
    for w in want:
        assert w in r.stderr


def test_env_unrelated_variable_is_ignored(tmp_path):
    p = write_cfg(tmp_path, BASE)
    r = run([SLUICE_BIN, "-t", "-c", p], timeout=15, text=True,
            env=sluice_env(SLUICE_SOMETHING_ELSE="x"))
    assert r.returncode == 0, r.stderr


def print_config(tmp_path, cfg, **env):
    p = write_cfg(tmp_path, cfg)
    r = run([SLUICE_BIN, "--print-config", "-c", p], timeout=15, env=sluice_env(**env), text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_print_config_applies_defaults_file_and_env(tmp_path):
    cfg = dict(BASE, limits={"h1_max_headers": 50})
    doc = print_config(tmp_path, cfg, SLUICE_TIMEOUTS__DRAIN_S="7.5",
                       SLUICE_LIMITS='{"h2_reset_rate": 40}', SLUICE_WORKERS="3")
    assert doc["workers"] == 3
    assert doc["timeouts"]["drain_s"] == 7.5
    assert doc["timeouts"]["h1_header_s"] == 10  # a default
    # SLUICE_LIMITS replaces the file's object as a whole
    assert doc["limits"]["h2_reset_rate"] == 40
    assert doc["limits"]["h1_max_headers"] == 100
    assert doc["listen"][0]["backlog"] == 511
    assert doc["access_log"] == "stdout"
    assert doc["routes"][0]["body"] == "file\n"


def test_print_config_redacts_secrets(tmp_path):
    cfg = dict(BASE)
    cfg["upstreams"] = {"app": {"servers": [{"addr": "127.0.0.1:1"}]}}
    cfg["routes"] = [{"path": "/", "handler": "proxy", "upstream": "app",
                      "set_headers": {"authorization": "Bearer s3cr3t-value",
                                      "x-plain": "visible"}}]
    doc = print_config(tmp_path, cfg)
    text = json.dumps(doc)
    assert "s3cr3t-value" not in text
    sh = doc["routes"][0]["set_headers"]
    assert sh["authorization"] == "(redacted)"
    assert sh["x-plain"] == "visible"


@pytest.mark.skipif(os.cpu_count() is None or os.cpu_count() < 2, reason="needs 2 CPUs")
def test_workers_auto_honours_affinity(tmp_path):
    taskset = shutil.which("taskset")
    if not taskset:
        pytest.skip("taskset not installed")
    p = write_cfg(tmp_path, dict(BASE, workers="auto"))
    r = run([taskset, "-c", "0", SLUICE_BIN, "--print-config", "-c", p], timeout=15, text=True,
            env=sluice_env())
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["workers"] == 1
    r = run([SLUICE_BIN, "--print-config", "-c", p], timeout=15, text=True, env=sluice_env())
    assert json.loads(r.stdout)["workers"] == min(len(os.sched_getaffinity(0)), 256)


def remote_settings(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    c = h2.connection.H2Connection()
    c.initiate_connection()
    s.sendall(c.data_to_send())
    try:
        while True:
            data = s.recv(65536)
            assert data, "connection closed before SETTINGS"
            for e in c.receive_data(data):
                if isinstance(e, h2.events.RemoteSettingsChanged):
                    return {k: v.new_value for k, v in e.changed_settings.items()}
    finally:
        s.close()


def test_env_reaches_the_running_daemon(sluice_factory):
    s = sluice_factory(start=False)
    s.env = {"SLUICE_LIMITS__H2_MAX_CONCURRENT_STREAMS": "7",
             "SLUICE_ROUTES__3__BODY": "from the environment\n"}
    s.start()
    settings = remote_settings(s.h2c_port)
    assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    r = run(["curl", "-sS", "--http2-prior-knowledge", s.url("/")], timeout=15, text=True)
    assert r.stdout == "from the environment\n"


def test_legacy_listen_shorthand_still_works(sluice_factory):
    s = sluice_factory(start=False)
    s.env = {"SLUICE_LISTEN": "127.0.0.1:%d" % s.h2c_port}
    s.start()
    r = run(["curl", "-sS", s.url("/healthz")], timeout=15, text=True)
    assert r.returncode == 0
    # the file's TLS listener is gone
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.tls_port), timeout=2).close()
