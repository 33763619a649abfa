"""WebSocket conformance, table-driven in the style of Autobahn|Testsuite's
case groups 1-7, 9 (bounded limits) and 12/13 (permessage-deflate). Every
case is hand-built masked frames + the expected outcome, and runs over
HTTP/1.1 (cleartext, TLS) and HTTP/2 extended CONNECT (h2c, h2 over TLS;
python3-h2 carries the same frames in DATA). Runner: wsconf.py. A subset
also runs with python3-websockets as an independent client."""

import asyncio
import struct
import zlib

import pytest

from conftest import client_ssl, module_server

import wsconf
from wsconf import TRANSPORTS, Case, Chop, Pause, Pmd
from wsraw import BINARY, CLOSE, CONT, PING, PONG, TEXT, close_payload, frame

pytest.importorskip("h2.connection")

SMALL = 4096
ROUTES = [
    {"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
    {"path": "/ws/echo", "handler": "ws", "app": "echo", "max_message_bytes": 262144,
     "ping_interval_s": 0, "idle_timeout_s": 30},
    {"path": "/ws/small", "handler": "ws", "app": "echo", "max_message_bytes": SMALL,
     "ping_interval_s": 0, "idle_timeout_s": 30},
    {"path": "/ws/plain", "handler": "ws", "app": "echo", "deflate": False,
     "ping_interval_s": 0, "idle_timeout_s": 30},
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    with module_server(tmp_path_factory, certs, "wsconf", routes=ROUTES) as s:
        yield s


P = {1002}
BAD = {1007}
BIG = {1009}


def pay(n, seed=0):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def text(n):
    return (b"*" * n)


# ------------------------------------------------------ 1.x framing -------
def g1():
    cs = []
    for n in (0, 125, 126, 127, 128, 65535, 65536):
        cs.append(Case("1.1-text-%d" % n, [frame(TEXT, text(n))], [(TEXT, text(n))]))
        cs.append(Case("1.2-binary-%d" % n, [frame(BINARY, pay(n))], [(BINARY, pay(n))]))
    big = pay(65536, 3)
    cs.append(Case("1.2-binary-65536-chop-997", [Chop(frame(BINARY, big), 997)],
                   [(BINARY, big)]))
    for n in (0, 125, 126, 128):
        cs.append(Case("1.1-text-%d-byte-by-byte" % n, [Chop(frame(TEXT, text(n)))],
                       [(TEXT, text(n))]))
    cs.append(Case("1.1-three-in-one-write",
                   [frame(TEXT, b"a") + frame(BINARY, b"bb") + frame(TEXT, b"ccc")],
                   [(TEXT, b"a"), (BINARY, b"bb"), (TEXT, b"ccc")]))
    return cs


# ------------------------------------------------------ 2.x ping/pong -----
def g2():
    return [
        Case("2.1-ping-empty", [frame(PING)], [(PONG, b"")]),
        Case("2.2-ping-payload", [frame(PING, b"Hello, world!")], [(PONG, b"Hello, world!")]),
        Case("2.3-ping-binary", [frame(PING, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff")],
             [(PONG, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff")]),
        Case("2.4-ping-125", [frame(PING, pay(125))], [(PONG, pay(125))]),
        Case("2.5-ping-126", [frame(PING, pay(126))], [], P),
        Case("2.6-ping-125-byte-by-byte", [Chop(frame(PING, pay(125)))], [(PONG, pay(125))]),
        Case("2.7-unsolicited-pong", [frame(PONG), frame(TEXT, b"after")], [(TEXT, b"after")]),
        Case("2.8-unsolicited-pong-payload", [frame(PONG, b"unsolicited"), frame(PING, b"p")],
             [(PONG, b"p")]),
        Case("2.10-ten-pings", [b"".join(frame(PING, b"ping %d" % i) for i in range(10))],
             [(PONG, b"ping %d" % i) for i in range(10)]),
        Case("2.11-ten-pings-chopped",
             [Chop(b"".join(frame(PING, b"ping %d" % i) for i in range(10)), 3)],
             [(PONG, b"ping %d" % i) for i in range(10)]),
    ]


# ------------------------------------------------------ 3.x reserved bits -
def g3():
    cs = []
    for rsv in range(1, 8):
        cs.append(Case("3.%d-rsv%d-text" % (rsv, rsv), [frame(TEXT, b"x", rsv=rsv)], [], P,
                       path="/ws/plain"))
    cs.append(Case("3.8-rsv-after-echo", [frame(TEXT, b"ok"), frame(TEXT, b"x", rsv=2),
                                          frame(PING, b"late")],
                   [(TEXT, b"ok")], P, path="/ws/plain"))
    cs.append(Case("3.9-rsv-ping", [frame(PING, b"x", rsv=4)], [], P, path="/ws/plain"))
    cs.append(Case("3.10-rsv-close", [frame(CLOSE, close_payload(1000), rsv=1)], [], P,
                   path="/ws/plain"))
    return cs


# ------------------------------------------------------ 4.x opcodes -------
def g4():
    cs = []
    for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15):
        cs.append(Case("4-opcode-%d" % op, [frame(op), frame(TEXT, b"late")], [], P))
        cs.append(Case("4-opcode-%d-payload-after-echo" % op,
                       [frame(TEXT, b"ok"), frame(op, b"reserved"), frame(PING)],
                       [(TEXT, b"ok")], P))
    return cs


# ------------------------------------------------------ 5.x fragmentation -
def g5():
    return [
        Case("5.1-ping-fragmented", [frame(PING, b"a", fin=False), frame(CONT, b"b")], [], P),
        Case("5.2-pong-fragmented", [frame(PONG, b"a", fin=False), frame(CONT, b"b")], [], P),
        Case("5.3-text-2-frags", [frame(TEXT, b"frag1", fin=False), frame(CONT, b"frag2")],
             [(TEXT, b"frag1frag2")]),
        Case("5.5-text-2-frags-chopped",
             [Chop(frame(TEXT, b"frag1", fin=False) + frame(CONT, b"frag2"))],
             [(TEXT, b"frag1frag2")]),
        Case("5.6-ping-between-frags",
             [frame(TEXT, b"f1", fin=False), frame(PING, b"pong me"), frame(CONT, b"f2")],
             [(PONG, b"pong me"), (TEXT, b"f1f2")]),
        Case("5.9-cont-without-start", [frame(CONT, b"x"), frame(TEXT, b"late")], [], P),
        Case("5.10-cont-nofin-without-start", [frame(CONT, b"x", fin=False)], [], P),
        Case("5.15-new-message-before-end",
             [frame(TEXT, b"f1", fin=False), frame(CONT, b"f2", fin=False),
              frame(TEXT, b"f3", fin=False)], [], P),
        Case("5.16-binary-inside-text",
             [frame(TEXT, b"f1", fin=False), frame(BINARY, b"f2")], [], P),
        Case("5.17-many-frags",
             [b"".join(frame(BINARY if i == 0 else CONT, bytes([i]) * 3, fin=(i == 99))
                       for i in range(100))],
             [(BINARY, b"".join(bytes([i]) * 3 for i in range(100)))]),
        Case("5.18-empty-frags",
             [frame(TEXT, b"", fin=False), frame(CONT, b"", fin=False), frame(CONT, b"")],
             [(TEXT, b"")]),
        Case("5.19-pings-interleaved-chopped",
             [Chop(frame(TEXT, b"a", fin=False) + frame(PING, b"1") + frame(CONT, b"b",
                   fin=False) + frame(PING, b"2") + frame(CONT, b"c"), 1)],
             [(PONG, b"1"), (PONG, b"2"), (TEXT, b"abc")]),
        Case("5.20-close-inside-fragmented",
             [frame(TEXT, b"a", fin=False), frame(CLOSE, close_payload(1000))], [], {1000}),
    ]


# ------------------------------------------------------ 6.x UTF-8 ---------
VALID = [
    ("hello", "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!".encode()),
    ("kosme", "\u03ba\u1f79\u03c3\u03bc\u03b5".encode()),
    ("first-2", b"\xc2\x80"), ("first-3", b"\xe0\xa0\x80"), ("first-4", b"\xf0\x90\x80\x80"),
    ("last-1", b"\x7f"), ("last-2", b"\xdf\xbf"), ("last-3", b"\xef\xbf\xbf"),
    ("last-4", b"\xf4\x8f\xbf\xbf"), ("bom", b"\xef\xbb\xbf"), ("U+FFFE", b"\xef\xbf\xbe"),
    ("ud7ff", b"\xed\x9f\xbf"), ("ue000", b"\xee\x80\x80"), ("nul", b"\x00"),
]
INVALID = [
    ("cont-alone", b"\x80"), ("cont-bf", b"\xbf"), ("lonely-start", b"\xc0 "),
    ("fe", b"\xfe"), ("ff", b"\xff"), ("fefeffff", b"\xfe\xfe\xff\xff"),
    ("overlong-slash-2", b"\xc0\xaf"), ("overlong-slash-3", b"\xe0\x80\xaf"),
    ("overlong-slash-4", b"\xf0\x80\x80\xaf"), ("overlong-max-2", b"\xc1\xbf"),
    ("overlong-max-3", b"\xe0\x9f\xbf"), ("overlong-max-4", b"\xf0\x8f\xbf\xbf"),
    ("overlong-nul", b"\xc0\x80"), ("surrogate-d800", b"\xed\xa0\x80"),
    ("surrogate-dfff", b"\xed\xbf\xbf"), ("surrogate-pair", b"\xed\xa0\x80\xed\xb0\x80"),
    ("above-10ffff", b"\xf4\x90\x80\x80"), ("f5", b"\xf5\x80\x80\x80"),
    ("5-byte", b"\xf8\x88\x80\x80\x80"), ("6-byte", b"\xfc\x84\x80\x80\x80\x80"),
    ("truncated-3", b"\xe0\x80"), ("truncated-4", b"\xf0\x90\x80"),
    ("kosme-bad", b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
]


def g6():
    cs = []
    for name, b in VALID:
        cs.append(Case("6-valid-%s" % name, [frame(TEXT, b)], [(TEXT, b)]))
        if len(b) > 1:
            frags = [frame(TEXT if i == 0 else CONT, b[i:i + 1], fin=(i == len(b) - 1))
                     for i in range(len(b))]
            cs.append(Case("6-valid-%s-per-byte-frags" % name, frags, [(TEXT, b)]))
    for name, b in INVALID:
        cs.append(Case("6-invalid-%s" % name, [frame(TEXT, b)], [], BAD))
        if len(b) > 1:
            frags = [frame(TEXT if i == 0 else CONT, b[i:i + 1], fin=(i == len(b) - 1))
                     for i in range(len(b))]
            cs.append(Case("6-invalid-%s-per-byte-frags" % name, frags, [], BAD))
    # fail fast: the verdict comes before the message (or frame) ends
    cs.append(Case("6.4.1-fail-fast-frame",
                   [frame(TEXT, "\u03ba\u1f79\u03c3".encode(), fin=False),
                    frame(CONT, b"\xf4\x90\x80\x80", fin=False),
                    Pause([(CLOSE, BAD)])], [], None))
    cs.append(Case("6.4.2-fail-fast-inside-frame",
                   [frame(TEXT, b"ok\xf4\x90" + b"x" * 20, length=10000)[:30],
                    Pause([(CLOSE, BAD)])], [], None))
    cs.append(Case("6.4.3-fail-fast-split-sequence",
                   [frame(TEXT, b"\xce\xba\xe1", fin=False), frame(CONT, b"\xbd", fin=False),
                    frame(CONT, b"\x00", fin=False), Pause([(CLOSE, BAD)])], [], None))
    cs.append(Case("6-split-sequence-ok",
                   [frame(TEXT, b"\xce", fin=False), frame(CONT, b"\xba\xe1", fin=False),
                    frame(CONT, b"\xbd\xb9")], [(TEXT, "\u03ba\u1f79".encode())]))
    cs.append(Case("6-binary-not-checked", [frame(BINARY, b"\xff\xfe\xc0\xaf")],
                   [(BINARY, b"\xff\xfe\xc0\xaf")]))
    return cs


# ------------------------------------------------------ 7.x close ---------
def g7():
    cs = [
        Case("7.1.1-echo-then-close", [frame(TEXT, b"Hello World!")], [(TEXT, b"Hello World!")]),
        Case("7.1.3-data-after-close",
             [frame(CLOSE, close_payload(1000)), frame(TEXT, b"ignored"), frame(PING, b"no")],
             [], {1000}),
        Case("7.1.5-close-inside-fragmented",
             [frame(TEXT, b"frag", fin=False), frame(CLOSE, close_payload(1000)),
              frame(CONT, b"ment")], [], {1000}),
        Case("7.1.6-close-after-big-message",
             [frame(TEXT, text(65536)), frame(CLOSE, close_payload(1000))],
             [(TEXT, text(65536))], {1000}),
        Case("7.3.1-close-empty", [frame(CLOSE)], [], {None}),
        Case("7.3.2-close-1-byte", [frame(CLOSE, b"\x03")], [], P),
        Case("7.3.3-close-code-only", [frame(CLOSE, close_payload(1000))], [], {1000}),
        Case("7.3.4-close-reason", [frame(CLOSE, close_payload(1000, b"Hello World!"))], [],
             {1000}),
        Case("7.3.5-close-123-byte-reason", [frame(CLOSE, close_payload(1000, b"*" * 123))],
             [], {1000}),
        Case("7.3.6-close-124-byte-reason", [frame(CLOSE, close_payload(1000, b"*" * 124))],
             [], P),
        Case("7.5.1-close-reason-bad-utf8",
             [frame(CLOSE, close_payload(1000, b"\xce\xba\xe1\xbd\xb9\xed\xa0\x80"))], [], BAD),
        Case("7.5.2-close-reason-utf8-ok",
             [frame(CLOSE, close_payload(1000, "\u03ba\u1f79\u03c3".encode()))], [], {1000}),
        Case("7-close-chopped", [Chop(frame(CLOSE, close_payload(1001, b"going")))], [],
             {1001}),
    ]
    for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                 3000, 3999, 4000, 4999):
        cs.append(Case("7.7-valid-code-%d" % code, [frame(CLOSE, close_payload(code))], [],
                       {code}))
    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
        cs.append(Case("7.9-invalid-code-%d" % code, [frame(CLOSE, close_payload(code))], [],
                       P))
    return cs


# ------------------------------------------------------ 9.x limits --------
def g9():
    half = SMALL // 2
    return [
        Case("9-at-limit-text", [frame(TEXT, text(SMALL))], [(TEXT, text(SMALL))],
             path="/ws/small"),
        Case("9-at-limit-binary-frags",
             [frame(BINARY, pay(half), fin=False), frame(CONT, pay(half, 1))],
             [(BINARY, pay(half) + pay(half, 1))], path="/ws/small"),
        Case("9-over-limit-text", [frame(TEXT, text(SMALL + 1))], [], BIG, path="/ws/small"),
        Case("9-over-limit-by-header-only", [frame(BINARY, b"", length=1 << 40) + b"\x00"], [], BIG,
             path="/ws/small"),
        Case("9-over-limit-frags",
             [frame(BINARY, pay(half), fin=False), frame(CONT, pay(half), fin=False),
              frame(CONT, b"!")], [], BIG, path="/ws/small"),
        Case("9-over-limit-many-small-frags",
             [b"".join(frame(BINARY if i == 0 else CONT, pay(100), fin=False)
                       for i in range(41))], [], BIG, path="/ws/small"),
        Case("9-64bit-length-msb", [frame(BINARY, b"", length=1 << 63) + b"\x00"], [], P | BIG),
        Case("9-256k-in-64k-frags",
             [b"".join(frame(BINARY if i == 0 else CONT, pay(65536, i), fin=(i == 3))
                       for i in range(4))],
             [(BINARY, b"".join(pay(65536, i) for i in range(4)))]),
        Case("9-100-messages-pipelined", [b"".join(frame(BINARY, pay(1000, i))
                                                   for i in range(100))],
             [(BINARY, pay(1000, i)) for i in range(100)]),
    ]


CASES = g1() + g2() + g3() + g4() + g5() + g6() + g7() + g9()
assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(srv, transport, case):
    wsconf.run_case(srv, transport, case)


# ------------------------------------------------ 12/13 permessage-deflate -
def _op(m):
    try:
        m.decode("utf-8")
        return TEXT
    except UnicodeDecodeError:
        return BINARY


def d_echo(msgs):
    def send(pmd):
        return [frame(_op(m), pmd.compress(m), rsv=4) for m in msgs]
    return send, [(_op(m), m) for m in msgs]


def rnd(n, seed):
    import random
    r = random.Random(seed)
    return bytes(r.getrandbits(8) for _ in range(n))


# messages that reference each other (context takeover pays off) and a
# repeat further back than a small window
MSGS = [b"Hello, permessage-deflate! " * 20, b"Hello, permessage-deflate! " * 21,
        rnd(600, 1) + rnd(600, 1), b"", "\u03ba\u1f79\u03c3\u03bc\u03b5 \u00e9".encode() * 50,
        b"x" * 65536]

DEFLATE_OFFERS = [
    # (id, offer, expected response params, Pmd kwargs)
    ("takeover", "permessage-deflate", [], {}),
    ("snct", "permessage-deflate; server_no_context_takeover",
     ["server_no_context_takeover"], {"server_nct": True}),
    ("cnct", "permessage-deflate; client_no_context_takeover",
     ["client_no_context_takeover"], {"client_nct": True}),
    ("both-nct", "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
     ["client_no_context_takeover", "server_no_context_takeover"],
     {"client_nct": True, "server_nct": True}),
    ("sbits-9", "permessage-deflate; server_max_window_bits=9", ["server_max_window_bits=9"],
     {"server_bits": 9}),
    ("sbits-12-quoted", 'permessage-deflate; server_max_window_bits="12"',
     ["server_max_window_bits=12"], {"server_bits": 12}),
    ("sbits-9-snct", "permessage-deflate; server_max_window_bits=9; server_no_context_takeover",
     ["server_max_window_bits=9", "server_no_context_takeover"],
     {"server_bits": 9, "server_nct": True}),
    ("cbits", "permessage-deflate; client_max_window_bits", [], {}),
    ("cbits-10", "permessage-deflate; client_max_window_bits=10", [], {"client_bits": 10}),
    ("second-offer-wins", "permessage-deflate; bogus, permessage-deflate; "
     "server_max_window_bits=10", ["server_max_window_bits=10"], {"server_bits": 10}),
]


def params_of(ext):
    assert ext is not None, "permessage-deflate not negotiated"
    parts = [p.strip() for p in ext.split(";")]
    assert parts[0] == "permessage-deflate"
    return sorted(p.replace(" ", "") for p in parts[1:])


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("offer", DEFLATE_OFFERS, ids=lambda o: o[0])
def test_deflate_echo(srv, transport, offer):
    _, hdr, want, kw = offer
    send, expect = d_echo(MSGS)
    # the response parameters are checked through a first connection
    t = wsconf.connect(srv, transport, "/ws/echo", hdr)
    try:
        assert params_of(t.ext) == sorted(want)
    finally:
        t.close()
    wsconf.run_case(srv, transport, Case("deflate", send, expect, ext=hdr), Pmd(**kw))


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("offer", [
    "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; bogus_param",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits",
    "x-webkit-deflate-frame",
], ids=["sbits-8", "unknown", "repeated", "sbits-16", "sbits-novalue", "other-ext"])
def test_deflate_declined(srv, transport, offer):
    case = Case("declined", [frame(TEXT, b"plain")], [(TEXT, b"plain")], ext=offer)
    t = wsconf.run_case(srv, transport, case)
    assert t.ext is None


def _frag_compressed(pmd):
    z = pmd.compress(b"fragmented and compressed " * 100)
    a, b, c = z[:5], z[5:20], z[20:]
    return [frame(TEXT, a, fin=False, rsv=4), frame(PING, b"mid"), frame(CONT, b, fin=False),
            frame(CONT, c)]


def _bomb(pmd):
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    z = co.compress(b"\0" * 1_000_000) + co.flush(zlib.Z_SYNC_FLUSH)
    assert len(z) < SMALL
    return [frame(BINARY, z[:-4], rsv=4)]


def _compressed_bad_utf8(pmd):
    return [frame(TEXT, pmd.compress(b"ok \xed\xa0\x80"), rsv=4)]


def _over_limit_compressed(pmd):
    return [frame(BINARY, pmd.compress(pay(SMALL + 1)), rsv=4)]


def _at_limit_compressed(pmd):
    return [frame(BINARY, pmd.compress(pay(SMALL)), rsv=4)]


def _mixed(pmd):
    return [frame(TEXT, b"not compressed"), frame(TEXT, pmd.compress(b"compressed"), rsv=4),
            frame(BINARY, b"raw")]


DEFLATE_CASES = [
    Case("13-fragmented-with-ping", _frag_compressed,
         [(PONG, b"mid"), (TEXT, b"fragmented and compressed " * 100)]),
    Case("13-mixed-compressed-and-not", _mixed,
         [(TEXT, b"not compressed"), (TEXT, b"compressed"), (BINARY, b"raw")]),
    Case("13-rsv1-on-continuation",
         lambda p: [frame(TEXT, b"a", fin=False), frame(CONT, b"b", rsv=4)], [], P),
    Case("13-rsv1-on-ping", [frame(PING, b"x", rsv=4)], [], P),
    Case("13-rsv2", [frame(TEXT, b"x", rsv=2)], [], P),
    Case("13-corrupt", [frame(BINARY, b"\xff\xff\xff\xff\xff", rsv=4)], [], P | BAD),
    Case("13-bad-utf8-after-inflate", _compressed_bad_utf8, [], BAD),
    Case("13-bomb", _bomb, [], BIG, path="/ws/small"),
    Case("13-over-limit-after-inflate", _over_limit_compressed, [], BIG, path="/ws/small"),
    Case("13-at-limit-after-inflate", _at_limit_compressed, [(BINARY, pay(SMALL))],
         path="/ws/small"),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", DEFLATE_CASES, ids=lambda c: c.id)
def test_deflate_case(srv, transport, case):
    case.ext = "permessage-deflate"
    wsconf.run_case(srv, transport, case, Pmd())


def test_deflate_off_route_declines(srv):
    case = Case("plain", [frame(TEXT, b"x")], [(TEXT, b"x")], path="/ws/plain",
                ext="permessage-deflate")
    for tr in TRANSPORTS:
        assert wsconf.run_case(srv, tr, case).ext is None


# ------------------------------------------- independent client ------------


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize("compression", [None, "deflate"], ids=["plain", "deflate"])
def test_websockets_client_subset(srv, tls, compression):
    websockets = pytest.importorskip("websockets")
    import websockets.exceptions

    async def go():
        ctx = None
        url = "ws://127.0.0.1:%d/ws/echo" % srv.h2c_port
        if tls:
            ctx = client_ssl()
            url = "wss://localhost:%d/ws/echo" % srv.tls_port
        async with websockets.connect(url, ssl=ctx, compression=compression,
                                      max_size=None) as ws:
            for n in (0, 125, 126, 127, 128, 65535, 65536):
                await ws.send(b"\xab" * n)
                assert await ws.recv() == b"\xab" * n
                await ws.send("\u00e9" * (n // 2))
                assert await ws.recv() == "\u00e9" * (n // 2)
            await ws.send(["frag", "ment", "\u03ba\u1f79"])  # a fragmented message
            assert await ws.recv() == "fragment\u03ba\u1f79"
            pong = await ws.ping(b"abc")
            await asyncio.wait_for(pong, 5)
            await ws.close(4000, "done")
            assert ws.close_code == 4000
        # an invalid close code from the client is answered with 1002
        async with websockets.connect(url, ssl=ctx, compression=compression) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            ws.transport.write(frame(CLOSE, struct.pack("!H", 1005)))
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1002

    asyncio.run(asyncio.wait_for(go(), 30))



# --------------------------------- broadcast inboxes at worker exit --------
def test_broadcast_exit_with_deliveries_in_flight(sluice_factory):
    """Subscribers on both workers, a publisher flooding the channel, and
    the daemon stopped mid-flood: deliveries still in a worker's inbox
    must be freed (an ASan build reports a leak otherwise; stop_all()
    fails on it) and the exit must stay clean."""
    import signal
    import time
    from wsraw import WSConn
    s = sluice_factory(routes=[{"path": "/healthz", "match": "exact", "handler": "health", "check": "live"},
                  {"path": "/b/", "handler": "ws", "app": "broadcast"}], workers=2)
    subs = [WSConn(s.h2c_port, "/b/room") for _ in range(8)]
    assert all(c.status == 101 for c in subs)
    pub = WSConn(s.h2c_port, "/b/room")
    burst = b"".join(frame(BINARY, pay(2000, i)) for i in range(300))
    for _ in range(3):
        pub.send(burst)
    got = subs[0].recv_frame()
    assert got.op == BINARY
    s.signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for c in subs + [pub]:
        try:
            c.recv_close(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:
            pass
        c.close()
    problems = sluice_factory.stop_all()
    assert not problems, "\n".join(problems)
