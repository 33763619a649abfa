"""Command line and configuration checking: -t, --version, -h, errors that
name the JSON path (or the line of a syntax error) and exit 1."""

import json
import os
import re
import socket

import pytest

from conftest import SLUICE_BIN, run


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def check(path):
    return run([SLUICE_BIN, "-t", "-c", path], timeout=15)


def test_check_good_config(sluice_factory):
    s = sluice_factory(start=False)
    r = check(s.cfg_path)
    assert r.returncode == 0, r.stderr.decode()
    # -t must not start listening
    with socket.socket() as c:
        c.settimeout(1)
        assert c.connect_ex(("127.0.0.1", s.h2c_port)) != 0


def test_check_dev_default_config():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = run([SLUICE_BIN, "-t", "-c", os.path.join(root, "etc", "sluice.json")], timeout=15,
            cwd=root)
    assert r.returncode == 0, r.stderr.decode()


def test_version():
    r = run([SLUICE_BIN, "--version"], timeout=10)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0, out
    assert "sluice" in out.lower()
    assert re.search(r"\d+\.\d+", out), out


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag):
    r = run([SLUICE_BIN, flag], timeout=10)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0, out
    assert "-c" in out and "-t" in out, out


def test_unknown_option():
    r = run([SLUICE_BIN, "--no-such-option"], timeout=10)
    assert r.returncode != 0


def test_missing_file(tmp_path):
    r = check(str(tmp_path / "nope.json"))
    assert r.returncode == 1
    assert b"nope.json" in r.stderr


def bad_config(sluice_factory, tmp_path, mutate):
    s = sluice_factory(start=False)
    cfg = json.loads(json.dumps(s.config))
    mutate(cfg)
    return write(tmp_path, "bad.json", json.dumps(cfg, indent=1)), s


BAD = [
    # (id, mutation, JSON path that must be named)
    ("streams-type", lambda c: c["limits"].update(h2_max_concurrent_streams="many"),
     r"limits\.h2_max_concurrent_streams"),
    ("streams-negative", lambda c: c["limits"].update(h2_max_concurrent_streams=-1),
     r"limits\.h2_max_concurrent_streams"),
    ("frame-size-range", lambda c: c["limits"].update(h2_max_frame_size=100),
     r"limits\.h2_max_frame_size"),
    ("window-range", lambda c: c["limits"].update(h2_initial_window=2 ** 31),
     r"limits\.h2_initial_window"),
    ("timeout-type", lambda c: c["timeouts"].update(h1_header_s="soon"),
     r"timeouts\.h1_header_s"),
    ("workers", lambda c: c.update(workers="lots"), r"workers"),
    ("listen-addr", lambda c: c["listen"][1].update(addr="127.0.0.1:notaport"),
     r"listen(\[1\]|\.1)\.addr"),
    ("handler", lambda c: c["routes"][2].update(handler="no-such-handler"),
     r"routes(\[2\]|\.2)"),
    ("return-status", lambda c: c["routes"][3].update(status=42),
     r"routes(\[3\]|\.3)\.status"),
    ("harness-bound", lambda c: c["routes"][2].update(max_bytes="big"),
     r"routes(\[2\]|\.2)\.max_bytes"),
    ("cert-missing", lambda c: c["listen"][0]["tls"].update(cert="/nonexistent/cert.pem"),
     r"(listen(\[0\]|\.0)\.tls|/nonexistent/cert\.pem)"),
]


@pytest.mark.parametrize("mutate,path", [(m, p) for _, m, p in BAD], ids=[b[0] for b in BAD])
def test_bad_config_names_path(sluice_factory, tmp_path, mutate, path):
    p, s = bad_config(sluice_factory, tmp_path, mutate)
    r = check(p)
    err = r.stderr.decode()
    assert r.returncode == 1, "exit %s; stderr %r" % (r.returncode, err)
    assert re.search(path, err), "stderr does not name %s: %r" % (path, err)


def test_bad_config_refuses_to_start(sluice_factory, tmp_path):
    p, s = bad_config(sluice_factory, tmp_path,
                      lambda c: c["limits"].update(h2_max_concurrent_streams="x"))
    r = run([SLUICE_BIN, "-c", p], timeout=15)
    assert r.returncode == 1
    assert b"limits.h2_max_concurrent_streams" in r.stderr
    with socket.socket() as c:
        c.settimeout(1)
        assert c.connect_ex(("127.0.0.1", s.h2c_port)) != 0


def test_syntax_error_names_line(tmp_path):
    text = '{\n  "workers": 1,\n  "listen": [\n    {"addr": "127.0.0.1:1",, }\n  ]\n}\n'
    r = check(write(tmp_path, "syntax.json", text))
    err = r.stderr.decode()
    assert r.returncode == 1
    assert re.search(r"(line\s*4\b|:4:|\b4:\d+)", err), err


def test_not_an_object(tmp_path):
    r = check(write(tmp_path, "arr.json", "[1, 2, 3]\n"))
    assert r.returncode == 1
    assert r.stderr.strip()


def test_missing_cert_refuses_to_start(sluice_factory, tmp_path):
    p, s = bad_config(sluice_factory, tmp_path,
                      lambda c: c["listen"][0]["tls"].update(cert="/nonexistent/cert.pem"))
    r = run([SLUICE_BIN, "-c", p], timeout=15)
    assert r.returncode == 1
    assert b"/nonexistent/cert.pem" in r.stderr


def test_self_signed_created(sluice_factory, tmp_path):
    """"self_signed": true and no certificate yet: sluice makes one for
    localhost, says where, and serves TLS with it."""
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    s = sluice_factory(start=False, listen=lambda tp, hp, certs: [
        {"addr": "127.0.0.1:%d" % tp, "tls": {"cert": cert, "key": key, "self_signed": True}},
        {"addr": "127.0.0.1:%d" % hp}])
    s.start()
    assert os.path.exists(cert) and os.path.exists(key)
    assert "c.pem" in s.stderr()
    assert s.healthz(tls=True) == 200


# A smallest valid route for every handler (besides path and handler).
HANDLER_ROUTES = {
    "health": {},
    "return": {"status": 204},
    "metrics": {},
    "harness": {},
    "ws": {"app": "echo"},
    "job": {"executor": "tick"},
    "jobs_api": {},
    "proxy": {"upstream": "app"},
    "static": {"root": "."},
    "cache_purge": {"zone": "main", "admin_token_file": "TOKEN_FILE"},
}


def handler_names(tmp_path):
    """The handlers this binary knows, from its own error message."""
    p = write(tmp_path, "h.json", json.dumps({"routes": [{"path": "/", "handler": "?"}]}))
    r = check(p)
    m = re.search(r"one of: ([a-z_ ]+)\)", r.stderr.decode())
    assert r.returncode == 1 and m, r.stderr.decode()
    return m.group(1).split()


def walk_config(tmp_path, name, extra):
    route = dict({"path": "/r", "handler": name}, **HANDLER_ROUTES[name], **extra)
    if route.get("admin_token_file") == "TOKEN_FILE":
        route["admin_token_file"] = write(tmp_path, "token", "0123456789abcdef0123")
    cfg = {"listen": [{"addr": "127.0.0.1:0"}],
           "executors": {"tick": {"type": "builtin", "kind": "ticker"}},
           "upstreams": {"app": {"servers": ["127.0.0.1:9"]}},
           "caches": {"main": {"memory_bytes": 1048576}},
           "routes": [route]}
    return write(tmp_path, name + ".json", json.dumps(cfg))


def test_every_handler_refuses_unknown_keys(tmp_path):
    names = handler_names(tmp_path)
    assert set(names) == set(HANDLER_ROUTES), "a handler without a test route: %s" % names
    for name in names:
        r = check(walk_config(tmp_path, name, {}))
        assert r.returncode == 0, (name, r.stderr.decode())
        r = check(walk_config(tmp_path, name, {"comment": "every route may say why"}))
        assert r.returncode == 0, (name, r.stderr.decode())
        r = check(walk_config(tmp_path, name, {"bogus": 1}))
        err = r.stderr.decode()
        assert r.returncode == 1 and "routes[0].bogus: unknown key" in err, (name, err)
        r = check(walk_config(tmp_path, name, {"hots": "example.com"}))  # a typo of "host"
        err = r.stderr.decode()
        assert r.returncode == 1 and 'did you mean "host"' in err, (name, err)
