"""Static files (docs/static.md) over HTTP/1.1, h2c (prior knowledge and
Upgrade) and h2 over TLS, with curl, python3-h2 and raw sockets: byte-exact
bodies by sha256, traversal refusals, conditionals, ranges, pre-compressed
variants, HEAD/405, dotfiles, the open-file cache TTL and flat memory for
a slow reader of a 1 GiB file."""

import gzip
import hashlib
import os
import socket
import subprocess
import time

import pytest

import h1raw
from conftest import CURL_MODES, PROTO_MODES, SLOW, SLUICE_BIN, curl, module_server, require
from h2raw import H2Client

SIZES = [0, 1, 16383, 16384, 16385, 1048576]
SMALL = b"hello world\n!"
CSS = b"body { color: red; }\n" * 50
JS = b"console.log('static');\n" * 40
OUTSIDE_SECRET = b"outside-the-root secret\n"


def sha(b):
    return hashlib.sha256(b).hexdigest()


def blob(n, seed):
    """Deterministic bytes that are not all one value (catches offset bugs)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d-%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("static")
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "dotok").mkdir()
    files = {}
    for n in SIZES:
        files["f%d.bin" % n] = blob(n, n)
    files["small.txt"] = SMALL
    files["a.css"] = CSS
    files["sub/index.html"] = b"<h1>sub</h1>\n"
    files[".hidden"] = b"dotfile\n"
    files["sub/.env"] = b"SECRET=1\n"
    files["data.mine"] = b"custom type\n"
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "a.css.gz").write_bytes(gzip.compress(CSS))
    (root / "a.css.br").write_bytes(b"pretend-brotli")
    (root / "g.js").write_bytes(JS)
    (root / "g.js.gz").write_bytes(gzip.compress(JS))
    (base / "outside.txt").write_bytes(OUTSIDE_SECRET)
    os.symlink(str(base / "outside.txt"), str(root / "escape"))
    os.symlink("../outside.txt", str(root / "escape-rel"))
    os.symlink(str(base), str(root / "escape-dir"))
    os.symlink("small.txt", str(root / "inlink"))
    os.symlink("sub", str(root / "sublink"))
    os.mkfifo(str(root / "fifo"))
    u = socket.socket(socket.AF_UNIX)
    u.bind(str(root / "sock"))
    u.close()
    return {"base": str(base), "root": str(root), "files": files}


def routes(root, **extra):
    st = {"path": "/s/", "handler": "static", "root": root,
          "cache_control": "public, max-age=60", "mime": {"mine": "text/x-mine"}}
    st.update(extra)
    return [
        {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
        {"path": "/dot/", "handler": "static", "root": root, "dotfiles": True},
        {"path": "/plain/", "handler": "static", "root": root, "precompressed": False,
         "index": []},
        {"path": "/exact.txt", "match": "exact", "handler": "static", "root": root + "/sub"},
        {"path": "/nosf/", "handler": "static", "root": root, "sendfile": False,
         "open_file_cache": {"content_bytes": 0}},
        st,
    ]


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs, tree):
    with module_server(tmp_path_factory, certs, "sluice-static", routes=routes(tree["root"])) as s:
        yield s


# ---------------------------------------------------------------------------
# bodies
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", PROTO_MODES)
def test_sizes_byte_exact(srv, tree, mode):
    for n in SIZES:
        r = curl(srv, mode, "/s/f%d.bin" % n)
        assert r.rc == 0, r
        assert r.status == 200, r
        assert r.http_version == CURL_MODES[mode][2]
        assert r.header("content-length") == str(n)
        assert sha(r.body) == sha(tree["files"]["f%d.bin" % n]), (n, len(r.body))


@pytest.mark.parametrize("mode", ["h1", "h2c", "h2-tls"])
def test_100mib_byte_exact(srv, tree, mode, tmp_path):
    require("curl")
    big = os.path.join(tree["root"], "big100.bin")
    if not os.path.exists(big):
        with open(big, "wb") as f:
            chunk = os.urandom(1 << 20)
            for i in range(100):
                f.write(chunk[i:] + chunk[:i])
    h = hashlib.sha256()
    with open(big, "rb") as f:
        for part in iter(lambda: f.read(1 << 20), b""):
            h.update(part)
    args, tls, _ = CURL_MODES[mode]
    out = str(tmp_path / "out.bin")
    argv = ["curl", "-sS", "--max-time", str(60 * SLOW), "-o", out, "-w", "%{http_code}"] + args
    if tls:
        argv += srv.resolve()
    r = subprocess.run(argv + [srv.url("/s/big100.bin", tls=tls)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=90 * SLOW)
    assert r.returncode == 0 and r.stdout == b"200", r.stderr
    g = hashlib.sha256()
    with open(out, "rb") as f:
        for part in iter(lambda: f.read(1 << 20), b""):
            g.update(part)
    os.unlink(out)
    assert g.hexdigest() == h.hexdigest()


@pytest.mark.parametrize("mode", ["h1", "h1-tls"])
def test_h1_sendfile_and_fallback(srv, tree, mode):
    """Cleartext h1 goes through sendfile, TLS and "sendfile": false through
    read slices: the same bytes either way, ranges included."""
    data = tree["files"]["f1048576.bin"]
    for prefix in ("/s/", "/nosf/"):
        r = curl(srv, mode, prefix + "f1048576.bin")
        assert r.status == 200 and sha(r.body) == sha(data), (prefix, r)
        r = curl(srv, mode, prefix + "f1048576.bin", "-H", "Range: bytes=70000-900000")
        assert r.status == 206 and r.body == data[70000:900001], prefix


def test_h1_pipelined_and_http10(srv, tree):
    a, b = tree["files"]["f1048576.bin"], tree["files"]["f16385.bin"]
    with h1raw.H1Conn(srv.h2c_port, timeout=20 * SLOW) as c:
        c.send(b"GET /s/f1048576.bin HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /s/f16385.bin HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /s/f1048576.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=5-9\r\n"
               b"Connection: close\r\n\r\n")
        r1, r2, r3 = c.read_response(), c.read_response(), c.read_response()
    assert r1.status == 200 and sha(r1.body) == sha(a)
    assert r2.status == 200 and r2.body == b
    assert r3.status == 206 and r3.body == a[5:10]
    with h1raw.H1Conn(srv.h2c_port, timeout=20 * SLOW) as c:
        c.send(b"GET /s/f1048576.bin HTTP/1.0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200 and r.header("content-length") == str(len(a))
    assert sha(r.body) == sha(a)


@pytest.mark.parametrize("tls", [False, True])
def test_h2_many_streams_one_connection(srv, tree, tls):
    """python3-h2: several files interleaved on one connection; over TLS
    the DATA frames are encrypted straight from the handler's buffer."""
    with H2Client(srv.tls_port if tls else srv.h2c_port, tls=tls) as c:
        sids = {c.request("/s/f%d.bin" % n): n for n in SIZES}
        for sid, n in sids.items():
            st = c.wait_stream(sid, timeout=20 * SLOW)
            assert st.status == 200 and st.ended, st
            assert sha(bytes(st.data)) == sha(tree["files"]["f%d.bin" % n])


def test_h2_tls_frames_fill_records(srv, tree):
    """Over TLS a DATA frame and its header make one full TLS record
    (16,384 bytes of plaintext): payloads of at most 16,375 bytes, and the
    bytes exact, also with several streams sharing the connection."""
    data = tree["files"]["f1048576.bin"]
    with H2Client(srv.tls_port, tls=True, timeout=20 * SLOW) as c:
        st = c.get("/s/f1048576.bin")
        assert st.status == 200 and st.ended, st
        assert sha(bytes(st.data)) == sha(data)
        # the first frames come before any window runs out
        assert st.data_frames[:3] == [16384 - 9] * 3, st.data_frames[:10]
        assert max(st.data_frames) <= 16384 - 9
        sids = [c.request("/s/f1048576.bin") for _ in range(4)]
        for sid in sids:
            st = c.wait_stream(sid)
            assert st.status == 200 and st.ended, st
            assert sha(bytes(st.data)) == sha(data)
            assert max(st.data_frames) <= 16384 - 9, max(st.data_frames)


def test_h2_tls_small_window_frames(srv, tree):
    """A 1,000-byte stream window: many small frames, each header written
    over bytes already sent; the body still arrives exact."""
    import h2.settings
    data = tree["files"]["f1048576.bin"]
    with H2Client(srv.tls_port, tls=True, timeout=30 * SLOW,
                  settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000}) as c:
        st = c.wait_stream(c.request("/s/f1048576.bin"))
        assert st.status == 200 and st.ended, st
        assert max(st.data_frames) <= 1000
        assert sha(bytes(st.data)) == sha(data)
        r = c.get("/s/f1048576.bin", headers=[("range", "bytes=1000-250000")])
        assert r.status == 206 and bytes(r.data) == data[1000:250001]


def test_h2_tls_slow_socket_reader(srv, tree):
    """A TLS client with wide-open windows that reads its socket slowly:
    the frames wait for the socket (no copy piles up in memory), and the
    whole body still arrives exact once it reads quickly."""
    import h2.settings
    path = os.path.join(tree["root"], "slow24.bin")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(os.urandom(24 << 20))
    with open(path, "rb") as f:
        want = sha(f.read())
    before = srv.rss_kb()
    with H2Client(srv.tls_port, tls=True, timeout=60 * SLOW,
                  settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1}) as c:
        c.conn.increment_flow_control_window((1 << 31) - 1 - 65535)
        c.flush()
        sid = c.request("/s/slow24.bin")
        st = c.streams[sid]
        t_end = time.monotonic() + 2 * SLOW
        while time.monotonic() < t_end:
            c.read_some(0.05)
            time.sleep(0.05)
        assert not st.done and len(st.data) < (24 << 20), len(st.data)
        peak = srv.rss_kb()
        c.wait_stream(sid)
    assert st.status == 200 and st.ended
    assert sha(bytes(st.data)) == want
    # the socket's buffers hold what waits, not sluice: well under the body
    assert peak - before < 8 * 1024, (before, peak)


# ---------------------------------------------------------------------------
# mapping and refusals
# ---------------------------------------------------------------------------
TRAVERSAL = [
    "/s/../outside.txt",
    "/s/sub/../../outside.txt",
    "/s/%2e%2e/outside.txt",
    "/s/%2E%2E/outside.txt",
    "/s/.%2e/outside.txt",
    "/s/sub/..%2f..%2foutside.txt",
    "/s/..%2foutside.txt",
    "/s/%2e%2e%2foutside.txt",
    "/s/..%5coutside.txt",
    "/s/escape",
    "/s/escape-rel",
    "/s/escape-dir/outside.txt",
    "/s/small.txt%00.png",
    "/s/%00",
    "/s/%",
    "/s/%zz",
]


@pytest.mark.parametrize("mode", ["h1", "h2c"])
def test_cached_paths_still_decoded(srv, tree, mode):
    """A path that matches a cached name as it came skips normalising, but
    only without '%': the file named a%20b (asked for as a%2520b, so cached
    under that name) must not answer a%20b, which is the file "a b"."""
    root = tree["root"]
    with open(os.path.join(root, "a%20b"), "wb") as f:
        f.write(b"percent\n")
    with open(os.path.join(root, "a b"), "wb") as f:
        f.write(b"space\n")
    for _ in range(2):  # the second round is answered from the cache
        assert curl(srv, mode, "/s/a%2520b").body == b"percent\n"
        assert curl(srv, mode, "/s/a%20b").body == b"space\n"
        assert curl(srv, mode, "/s/small.txt").body == SMALL
        assert curl(srv, mode, "/s//small.txt").body == SMALL
        assert curl(srv, mode, "/s/sm%61ll.txt").body == SMALL
        assert curl(srv, mode, "/s/.hidden").status == 404


@pytest.mark.parametrize("mode", ["h1", "h2c"])
def test_traversal_refused(srv, mode):
    for path in TRAVERSAL:
        r = curl(srv, mode, path, "--path-as-is")
        assert r.rc == 0, (path, r)
        assert r.status in (400, 404), (path, r.status)
        assert OUTSIDE_SECRET not in r.body, path
    log = srv.stderr()
    assert "client sent" in log
    assert "leaves the root through a symlink" in log


def test_traversal_raw_h1(srv):
    """Bytes curl would never send: a raw backslash and a raw NUL-less
    "..\\" climb, absolute-form and dot segments, straight on the socket."""
    for target in ["/s/..\\outside.txt", "/s/sub/..\\..\\outside.txt", "/s/./../outside.txt",
                   "/s//../outside.txt"]:
        with h1raw.H1Conn(srv.h2c_port) as c:
            c.send(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target).encode())
            resp = c.read_response()
            assert resp.status in (400, 404), (target, resp.status)
            assert OUTSIDE_SECRET not in resp.body


def test_h2_traversal_python_h2(srv):
    with H2Client(srv.h2c_port) as c:
        for path in ["/s/../outside.txt", "/s/%2e%2e/outside.txt", "/s/escape"]:
            st = c.get(path, timeout=5 * SLOW)
            assert st.status in (400, 404), (path, st)
            assert OUTSIDE_SECRET not in bytes(st.data)


def test_symlinks_inside_root_served(srv):
    r = curl(srv, "h1", "/s/inlink")
    assert r.status == 200 and r.body == SMALL
    r = curl(srv, "h1", "/s/sublink/index.html")
    assert r.status == 200 and r.body == b"<h1>sub</h1>\n"


def test_dotfiles_hidden_unless_enabled(srv):
    for path in ["/s/.hidden", "/s/sub/.env", "/s/%2ehidden"]:
        r = curl(srv, "h1", path)
        assert r.status == 404, (path, r)
        assert b"dotfile" not in r.body and b"SECRET" not in r.body
    r = curl(srv, "h2c", "/dot/.hidden")
    assert r.status == 200 and r.body == b"dotfile\n"


def test_directories(srv):
    r = curl(srv, "h1", "/s/sub?x=1")
    assert r.status == 301
    assert r.header("location") == "/s/sub/?x=1"
    r = curl(srv, "h2c", "/s/sub/")
    assert r.status == 200 and r.body == b"<h1>sub</h1>\n"
    assert r.header("content-type") == "text/html; charset=utf-8"
    r = curl(srv, "h1", "/s/empty/")  # no index, listings off
    assert r.status == 403
    r = curl(srv, "h1", "/plain/sub/")  # "index": []
    assert r.status == 403
    r = curl(srv, "h1", "/s/nothere/")
    assert r.status == 404
    for special in ("/s/fifo", "/s/sock"):  # neither regular file nor directory
        r = curl(srv, "h1", special, timeout=5)
        assert r.status == 403, (special, r)
    r = curl(srv, "h1", "/s/small.txt/")  # a file named as a directory
    assert r.status == 404


def test_exact_route_maps_last_segment(srv):
    r = curl(srv, "h1", "/exact.txt")
    assert r.status == 404  # /exact.txt -> <root>/sub/exact.txt, which does not exist
    r = curl(srv, "h1", "/s/data.mine")
    assert r.header("content-type") == "text/x-mine"


@pytest.mark.parametrize("mode", ["h1", "h2c"])
def test_content_types_and_headers(srv, mode):
    r = curl(srv, mode, "/s/small.txt")
    assert r.header("content-type") == "text/plain; charset=utf-8"
    assert r.header("cache-control") == "public, max-age=60"
    assert r.header("accept-ranges") == "bytes"
    assert r.header("etag").startswith('"')
    assert r.header("last-modified").endswith(" GMT")
    r = curl(srv, mode, "/s/f1.bin")
    assert r.header("content-type") == "application/octet-stream"
    r = curl(srv, mode, "/s/a.css")
    assert r.header("content-type") == "text/css; charset=utf-8"


@pytest.mark.parametrize("mode", PROTO_MODES)
def test_head_and_405(srv, mode):
    r = curl(srv, mode, "/s/f16385.bin", "-I")
    assert r.rc == 0 and r.status == 200, r
    assert r.header("content-length") == "16385"
    assert r.body.endswith(b"\r\n\r\n")  # -I writes the head; nothing follows it
    # (no request body over h2: curl 7.88 can report an early answer to a
    # still-open upload as a stream error, whichever handler answers)
    body = ["--data-binary", "x"] if mode == "h1" else []
    r = curl(srv, mode, "/s/small.txt", "-X", "POST", *body)
    assert r.status == 405, r
    assert r.header("allow") == "GET, HEAD"
    for m in ("PUT", "DELETE", "OPTIONS"):
        r = curl(srv, mode, "/s/small.txt", "-X", m)
        assert r.status == 405, m


def test_head_no_body_raw(srv):
    with h1raw.H1Conn(srv.h2c_port) as c:
        c.send(b"HEAD /s/small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /s/small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = c.read_response(head=True)
        assert r.status == 200 and r.header("content-length") == str(len(SMALL))
        r = c.read_response()  # the next response follows at once: no body in between
        assert r.status == 200 and r.body == SMALL
    with H2Client(srv.h2c_port) as c:
        st = c.get("/s/f16385.bin", method="HEAD")
        assert st.status == 200 and st.ended and len(st.data) == 0
        assert st.header("content-length") == "16385"


# ---------------------------------------------------------------------------
# conditionals
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["h1", "h2c", "h2-tls"])
def test_conditionals(srv, mode):
    r = curl(srv, mode, "/s/small.txt")
    etag, lm = r.header("etag"), r.header("last-modified")
    weak = "W/" + etag

    def get(*h):
        args = []
        for x in h:
            args += ["-H", x]
        return curl(srv, mode, "/s/small.txt", *args)

    for hdrs in (["If-None-Match: " + etag], ["If-None-Match: " + weak],
                 ['If-None-Match: "nope", ' + etag], ["If-None-Match: *"],
                 ["If-Modified-Since: " + lm],
                 ["If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT"]):
        r = get(*hdrs)
        assert r.status == 304, (hdrs, r)
        assert r.body == b""
        assert r.header("etag") == etag
        assert r.header("cache-control") == "public, max-age=60"
    for hdrs in (['If-None-Match: "nope"'],
                 ["If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT"],
                 ["If-Modified-Since: not a date"],
                 # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)
                 ['If-None-Match: "nope"', "If-Modified-Since: " + lm]):
        r = get(*hdrs)
        assert r.status == 200 and r.body == SMALL, (hdrs, r)
    r = get('If-Match: "nope"')
    assert r.status == 412
    r = get("If-Match: " + weak)  # strong comparison: a weak tag never matches
    assert r.status == 412
    r = get("If-Match: " + etag)
    assert r.status == 200
    r = get("If-Unmodified-Since: Thu, 01 Jan 1970 00:00:01 GMT")
    assert r.status == 412


# ---------------------------------------------------------------------------
# ranges
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["h1", "h2c", "h2-tls"])
def test_ranges(srv, tree, mode):
    data = tree["files"]["f16385.bin"]
    size = len(data)

    def rng(spec, *extra):
        return curl(srv, mode, "/s/f16385.bin", "-H", "Range: " + spec, *extra)

    cases = {
        "bytes=0-0": (0, 0),
        "bytes=10-19": (10, 19),
        "bytes=0-": (0, size - 1),
        "bytes=16000-": (16000, size - 1),
        "bytes=16000-99999": (16000, size - 1),
        "bytes=-100": (size - 100, size - 1),
        "bytes=-99999": (0, size - 1),
        "bytes=16384-16384": (16384, 16384),
    }
    for spec, (a, b) in cases.items():
        r = rng(spec)
        assert r.status == 206, (spec, r)
        assert r.header("content-range") == "bytes %d-%d/%d" % (a, b, size), spec
        assert r.header("content-length") == str(b - a + 1)
        assert r.body == data[a:b + 1], spec
    for spec in ("bytes=-0", "bytes=16385-", "bytes=99999-100000", "bytes=20000-20001, 30000-"):
        r = rng(spec)
        assert r.status == 416, (spec, r)
        assert r.header("content-range") == "bytes */%d" % size
    # ignored (answered 200 with the whole file): reversed, junk, other
    # units, several ranges (documented: no multipart/byteranges)
    for spec in ("bytes=5-1", "bytes=abc", "items=0-1", "bytes=0-1,5-6"):
        r = rng(spec)
        assert r.status == 200, (spec, r)
        assert r.body == data
    # an empty file has no satisfiable range
    r = curl(srv, mode, "/s/f0.bin", "-H", "Range: bytes=0-")
    assert r.status == 416 and r.header("content-range") == "bytes */0"


@pytest.mark.parametrize("mode", ["h1", "h2c"])
def test_if_range(srv, tree, mode):
    data = tree["files"]["f1048576.bin"]
    head = curl(srv, mode, "/s/f1048576.bin", "-I")
    etag, lm = head.header("etag"), head.header("last-modified")
    path = "/s/f1048576.bin"
    r = curl(srv, mode, path, "-H", "Range: bytes=1000-1999", "-H", "If-Range: " + etag)
    assert r.status == 206 and r.body == data[1000:2000]
    r = curl(srv, mode, path, "-H", "Range: bytes=1000-1999", "-H", "If-Range: " + lm)
    assert r.status == 206 and r.body == data[1000:2000]
    for v in ('"other"', "W/" + etag, "Thu, 01 Jan 1970 00:00:01 GMT"):
        r = curl(srv, mode, path, "-H", "Range: bytes=1000-1999", "-H", "If-Range: " + v)
        assert r.status == 200, v
        assert sha(r.body) == sha(data)
    # HEAD ignores Range (defined for GET only)
    r = curl(srv, mode, path, "-I", "-H", "Range: bytes=0-9")
    assert r.status == 200 and r.header("content-length") == str(len(data))


# ---------------------------------------------------------------------------
# pre-compressed variants
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["h1", "h2c", "h2-tls"])
def test_precompressed(srv, mode):
    def get(ae, path="/s/a.css", *extra):
        args = ["-H", "Accept-Encoding: " + ae] if ae is not None else []
        return curl(srv, mode, path, *(args + list(extra)))

    r = get("gzip")
    assert r.status == 200 and r.header("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == CSS
    assert r.header("vary") == "accept-encoding"
    assert r.header("content-type") == "text/css; charset=utf-8"
    r = get("gzip, br")
    assert r.header("content-encoding") == "br" and r.body == b"pretend-brotli"
    r = get("br;q=0, gzip;q=0.8")
    assert r.header("content-encoding") == "gzip"
    for ae in ("identity", "gzip;q=0, br;q=0", "*;q=0", None):
        r = get(ae)
        assert r.header("content-encoding") is None, ae
        assert r.body == CSS
        assert r.header("vary") == "accept-encoding"
    r = curl(srv, mode, "/s/g.js", "--compressed")  # curl decodes it itself
    assert r.header("content-encoding") == "gzip" and r.body == JS
    # the variant has its own validator; ranges apply to the variant bytes
    gz = get("gzip")
    plain = get(None)
    assert gz.header("etag") != plain.header("etag")
    r = get("gzip", "/s/a.css", "-H", "Range: bytes=0-1")
    assert r.status == 206 and r.body == b"\x1f\x8b"
    # precompressed off: no variant, no Vary
    r = get("gzip, br", "/plain/a.css")
    assert r.header("content-encoding") is None and r.body == CSS
    assert r.header("vary") is None


def test_dot_index_not_served_by_name(sluice_factory, tmp_path):
    """dotfiles off, an index file whose name starts with a dot: the
    directory is answered with it, but asking for it by name is 404, also
    once it sits in the open-file cache."""
    root = tmp_path / "r"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / ".idx.html").write_bytes(b"index\n")
    s = sluice_factory(workers=1, routes=[
        {"path": "/healthz", "match": "exact", "handler": "health"},
        {"path": "/", "handler": "static", "root": str(root), "index": [".idx.html"]}])
    for _ in range(2):
        assert curl(s, "h2c", "/sub/").body == b"index\n"
        assert curl(s, "h2c", "/sub/.idx.html").status == 404


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------
def check_config(tmp_path, route):
    import json
    cfg = {"listen": [{"addr": "127.0.0.1:0"}], "routes": [route]}
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg))
    return subprocess.run([SLUICE_BIN, "-t", "-c", str(p)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=10 * SLOW)


def test_config_refusals(tmp_path, tree):
    base = {"path": "/", "handler": "static", "root": tree["root"]}
    assert check_config(tmp_path, base).returncode == 0
    bad = [
        ({"root": None}, "root"),
        ({"root": tree["root"] + "/nope"}, "root"),
        ({"root": tree["root"] + "/small.txt"}, "root"),
        ({"autoindex": "yes"}, "autoindex"),
        ({"max_listing_entries": 0}, "max_listing_entries"),
        ({"index": ["../x"]}, "index"),
        ({"index": "index.html"}, "index"),
        ({"dotfile": True}, "dotfile"),
        ({"open_file_cache": {"max": -1}}, "max"),
        ({"open_file_cache": {"ttl_s": "1"}}, "ttl_s"),
        ({"mime": {"txt": 5}}, "mime"),
        ({"read_bytes": 10}, "read_bytes"),
    ]
    for over, word in bad:
        route = dict(base)
        route.update(over)
        if route["root"] is None:
            del route["root"]
        r = check_config(tmp_path, route)
        assert r.returncode != 0, over
        assert word in r.stderr.decode() + r.stdout.decode(), (over, r.stderr)


# ---------------------------------------------------------------------------
# open-file cache
# ---------------------------------------------------------------------------
def test_open_file_cache_ttl(sluice_factory, tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "v.txt").write_bytes(b"one\n")
    s = sluice_factory(workers=1, routes=[
        {"path": "/healthz", "match": "exact", "handler": "health"},
        {"path": "/", "handler": "static", "root": str(root),
         "open_file_cache": {"max": 4, "ttl_s": 0.5}}])
    assert curl(s, "h1", "/v.txt").body == b"one\n"
    # replace by rename (new inode): the cached fd still reads the old file
    (root / "v.tmp").write_bytes(b"two!\n")
    os.rename(str(root / "v.tmp"), str(root / "v.txt"))
    deadline = time.monotonic() + 5 * SLOW
    seen = []
    while time.monotonic() < deadline:
        b = curl(s, "h1", "/v.txt").body
        seen.append(b)
        if b == b"two!\n":
            break
        time.sleep(0.1)
    assert seen[-1] == b"two!\n", seen
    assert set(seen) <= {b"one\n", b"two!\n"}
    # a file removed is gone after the TTL too
    os.unlink(str(root / "v.txt"))
    time.sleep(0.7)
    assert curl(s, "h1", "/v.txt").status == 404
    # many files through a 4-entry cache: all still correct
    for i in range(12):
        (root / ("m%d.txt" % i)).write_bytes(b"m%d\n" % i)
    for _ in range(2):
        for i in range(12):
            assert curl(s, "h1", "/m%d.txt" % i).body == b"m%d\n" % i


# ---------------------------------------------------------------------------
# memory stays flat for a slow reader of a 1 GiB file
# ---------------------------------------------------------------------------
@pytest.fixture
def gib_server(sluice_factory, tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    with open(str(root / "gib.bin"), "wb") as f:
        f.truncate(1 << 30)  # sparse: costs no disk
    s = sluice_factory(workers=1, routes=[
        {"path": "/healthz", "match": "exact", "handler": "health"},
        {"path": "/", "handler": "static", "root": str(root)}])
    return s


def test_slow_h2_reader_memory_flat(gib_server):
    s = gib_server
    before = s.rss_kb()
    with H2Client(s.h2c_port, auto_window=False, settings={4: 16384}) as c:
        sid = c.request("/gib.bin")
        st = c.streams[sid]
        got = 0
        t_end = time.monotonic() + 3 * SLOW
        while time.monotonic() < t_end:
            c.read_some(0.05)
            n = len(st.data) - got
            if n:
                got = len(st.data)
                c.credit(sid, n)
            time.sleep(0.02)
        assert st.status == 200 and not st.done
        assert st.header("content-length") == str(1 << 30)
        assert got > 0
        peak = s.rss_kb()
    print("rss before %d KiB, peak %d KiB, received %d bytes" % (before, peak, got))
    assert peak - before < 32 * 1024, (before, peak)
    s.assert_up()


def test_slow_h1_reader_memory_flat(gib_server):
    s = gib_server
    before = s.rss_kb()
    sock = socket.create_connection(("127.0.0.1", s.h2c_port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.sendall(b"GET /gib.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    got = 0
    t_end = time.monotonic() + 3 * SLOW
    while time.monotonic() < t_end:
        got += len(sock.recv(4096))
        time.sleep(0.01)
    peak = s.rss_kb()
    sock.close()
    assert 0 < got < (1 << 30)
    print("rss before %d KiB, peak %d KiB, received %d bytes" % (before, peak, got))
    assert peak - before < 32 * 1024, (before, peak)
    s.assert_up()
