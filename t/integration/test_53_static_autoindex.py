"""Directory listings of the static handler ("autoindex": true,
docs/static.md): sorted names with sizes, hostile names escaped in both the
href and the text, dotfiles hidden unless served, the max_listing_entries
cut, index files still preferred, and traversal still refused. Parsed with
html.parser (stdlib) and fetched with curl and python3-h2."""

import html.parser
import os
import urllib.parse

import pytest

from conftest import SLOW, curl, module_server
from h2raw import H2Client

HOSTILE = ['<img src=x onerror=alert(1)>', 'a"b\'c&d', 'javascript:alert(1)', 'sp ace%41']
SECRET = b"outside the root\n"


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.tags, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "a":
            self.links.append(dict(attrs)["href"])

    def handle_data(self, data):
        self.text.append(data)


def parse(body):
    p = Links()
    p.feed(body.decode())
    return p


@pytest.fixture(scope="module")
def lsrv(tmp_path_factory, certs):
    base = tmp_path_factory.mktemp("autoindex")
    root = base / "root"
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "big").mkdir()
    (root / "withindex").mkdir()
    (root / "withindex" / "index.html").write_bytes(b"idx\n")
    (root / "dir" / "b.txt").write_bytes(b"12345")
    (root / "dir" / "a.bin").write_bytes(b"x" * 1000)
    (root / "dir" / ".secret").write_bytes(b"dot\n")
    for name in HOSTILE:
        (root / "dir" / name).write_bytes(b"h")
    for i in range(30):
        (root / "big" / ("f%02d" % i)).write_bytes(b"")
    (base / "outside.txt").write_bytes(SECRET)
    os.symlink(str(base), str(root / "dir" / "escape"))
    with module_server(
            tmp_path_factory, certs, "sluice-autoindex",
            routes=[
                {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
                {"path": "/l/", "handler": "static", "root": str(root), "autoindex": True,
                 "max_listing_entries": 20},
                {"path": "/d/", "handler": "static", "root": str(root), "autoindex": True,
                 "dotfiles": True},
                {"path": "/n/", "handler": "static", "root": str(root)},
            ]) as s:
        yield s


@pytest.mark.parametrize("mode", ["h1", "h2c", "h2-tls"])
def test_listing_sorted_with_sizes(lsrv, mode):
    r = curl(lsrv, mode, "/l/dir/")
    assert r.status == 200, r
    assert r.header("content-type") == "text/html; charset=utf-8"
    assert int(r.header("content-length")) == len(r.body)
    p = parse(r.body)
    names = [urllib.parse.unquote(h[2:] if h.startswith("./") else h) for h in p.links]
    assert names[0] == "../"
    entries = names[1:]
    want = sorted(HOSTILE + ["a.bin", "b.txt", "escape", "sub/"],
                  key=lambda n: n.rstrip("/").encode())
    assert entries == want, entries
    text = "".join(p.text)
    assert "a.bin 1000" in text.replace("</a>", "")
    assert "b.txt 5" in text
    assert ".secret" not in text


def test_listing_escapes_names(lsrv):
    r = curl(lsrv, "h1", "/l/dir/")
    body = r.body.decode()
    assert "<img" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "a&quot;b&#39;c&amp;d" in body
    p = parse(r.body)
    assert p.tags.count("img") == 0
    for h in p.links:
        # no scheme can be smuggled: every href is relative and colon-free
        assert ":" not in h and '"' not in h and "<" not in h, h
    # a listed hostile name can be fetched back by its href
    for h in p.links:
        if "onerror" in h:
            got = curl(lsrv, "h1", "/l/dir/" + h[2:])
            assert got.status == 200 and got.body == b"h"
            break
    else:
        pytest.fail("hostile entry not listed")


def test_dotfiles_and_index(lsrv):
    r = curl(lsrv, "h2c", "/d/dir/")
    assert r.status == 200 and b".secret" in r.body
    r = curl(lsrv, "h1", "/l/withindex/")
    assert r.status == 200 and r.body == b"idx\n"  # index preferred over a listing
    r = curl(lsrv, "h1", "/n/dir/")
    assert r.status == 403  # autoindex off
    r = curl(lsrv, "h1", "/l/dir/.secret/")
    assert r.status == 404


def test_truncated(lsrv):
    r = curl(lsrv, "h1", "/l/big/")
    assert r.status == 200
    p = parse(r.body)
    assert len(p.links) == 1 + 20
    assert b"truncated" in r.body
    r = curl(lsrv, "h1", "/d/big/")  # default bound: all 30
    assert len(parse(r.body).links) == 31 and b"truncated" not in r.body


def test_head_listing(lsrv):
    full = curl(lsrv, "h1", "/l/dir/")
    for mode in ("h1", "h2c"):
        r = curl(lsrv, mode, "/l/dir/", "-I")
        assert r.status == 200
        assert r.header("content-length") == str(len(full.body))
        assert r.body.endswith(b"\r\n\r\n") and b"<html" not in r.body


def test_traversal_still_refused(lsrv):
    for path in ["/l/../", "/l/%2e%2e/", "/l/dir/../../", "/l/dir%2f..%2f", "/l/dir/escape/"]:
        r = curl(lsrv, "h1", path, "--path-as-is")
        assert r.status in (400, 404), (path, r.status)
        assert SECRET not in r.body and b"outside.txt" not in r.body, path
    with H2Client(lsrv.h2c_port) as c:
        for path in ["/l/../", "/l/%2e%2e/", "/l/dir/escape/"]:
            st = c.get(path, timeout=5 * SLOW)
            assert st.status in (400, 404), (path, st)
            assert b"outside.txt" not in bytes(st.data)
