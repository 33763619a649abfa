#!/usr/bin/python3
# sluice - SPDX-License-Identifier: MIT
#
# Writes seed inputs for fuzz_h2 into corpus/h2/gen_*. The input format is
# fuzz_h2.c's: one mode byte (low 6 bits: read size (n*16+1); 0x40: drain
# after the first read; 0x80: fire the timer midway), then client bytes
# AFTER the connection preface (fuzz_h2 prepends "PRI * HTTP/2.0...").
# fuzz_h2 routes: "/" answers, "/s" streams with trailers, "/b" reads the
# body ("?x" keeps the credit), "/r" resets.
#
# Frames come from python3-h2 acting as a client, except the ones h2
# refuses to make (CONTINUATION, flow-control violations, bad frames),
# which are built with hyperframe.
#
#   /usr/bin/python3 t/fuzz/gen_h2_corpus.py [outdir]

import os
import sys

import h2.config
import h2.connection
import h2.settings
from hpack import Encoder
from hyperframe.frame import (ContinuationFrame, DataFrame, HeadersFrame,
                              PriorityFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def client():
    c = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    return c


def req(path, method="GET", extra=()):
    return [(":method", method), (":scheme", "http"),
            (":authority", "localhost"), (":path", path)] + list(extra)


def out(c):
    """Client bytes so far, without the preface fuzz_h2 adds itself."""
    data = c.data_to_send()
    return data[len(PREFACE):] if data.startswith(PREFACE) else data


def settings_ack():
    return SettingsFrame(0, flags=["ACK"]).serialize()


def seeds():
    # Plain GET, then the ack of the server's SETTINGS.
    c = client()
    c.send_headers(1, req("/"), end_stream=True)
    yield "get", 0x3f, out(c) + settings_ack()

    # The same, one byte per read.
    yield "get_bytewise", 0x00, out_again("get")

    # Streaming response with trailers, client opens the windows.
    c = client()
    c.send_headers(1, req("/s", extra=[("te", "trailers")]), end_stream=True)
    c.increment_flow_control_window(1 << 20)
    c.increment_flow_control_window(1 << 20, stream_id=1)
    yield "stream_window", 0x05, out(c) + settings_ack()

    # Request body in several DATA frames, with request trailers.
    c = client()
    c.send_headers(1, req("/b", "POST", [("content-type", "text/plain"),
                                         ("content-length", "30")]))
    c.send_data(1, b"0123456789" * 2)
    c.send_data(1, b"abcdefghij", pad_length=7)
    c.send_headers(1, [("x-sum", "9")], end_stream=True)
    yield "post_trailers", 0x10, out(c)

    # Body that the handler never credits ("?x"). (Overrunning the 64 KiB
    # window would need a 64 KiB seed, too big for mutation to be useful.)
    c = client()
    c.send_headers(1, req("/b?x", "POST"))
    data = out(c)
    for _ in range(3):
        data += DataFrame(1, data=b"x" * 1500).serialize()
    data += DataFrame(1, data=b"end", flags=["END_STREAM"]).serialize()
    yield "post_nocredit", 0x3f, data

    # Several streams at once: answer, stream, reset, body; then PING,
    # PRIORITY, SETTINGS change and a client GOAWAY.
    c = client()
    c.send_headers(1, req("/"), end_stream=True)
    c.send_headers(3, req("/s"), end_stream=True)
    c.send_headers(5, req("/r"), end_stream=True)
    c.send_headers(7, req("/b", "PUT"))
    c.send_data(7, b"hello", end_stream=True)
    c.ping(b"12345678")
    c.prioritize(3, weight=200, depends_on=1, exclusive=True)
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1,
                       h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0})
    data = out(c) + settings_ack()
    c.close_connection(last_stream_id=7)
    yield "multi_goaway", 0x22, data + out(c)

    # Drain after the first read, timer midway.
    yield "multi_drain_timer", 0xc3, out_again("multi_goaway")

    # Rapid reset: open and cancel many streams (reset burst is 20).
    c = client()
    for sid in range(1, 80, 2):
        c.send_headers(sid, req("/s"), end_stream=True)
        c.reset_stream(sid)
    yield "rapid_reset", 0x3f, out(c)

    # One header block over HEADERS + CONTINUATION frames.
    enc = Encoder()
    block = enc.encode(req("/", extra=[("x-long-%d" % i, "v" * 40) for i in range(20)]))
    parts = [block[i:i + 100] for i in range(0, len(block), 100)]
    c = client()
    data = out(c)
    data += HeadersFrame(1, data=parts[0], flags=["END_STREAM"]).serialize()
    for i, p in enumerate(parts[1:], 1):
        flags = ["END_HEADERS"] if i == len(parts) - 1 else []
        data += ContinuationFrame(1, data=p, flags=flags).serialize()
    yield "continuation", 0x08, data

    # Header list over the 4096-byte limit fuzz_h2 configures.
    c = client()
    c.send_headers(1, req("/", extra=[("x-big", "b" * 5000)]), end_stream=True)
    yield "big_headers", 0x3f, out(c)

    # Protocol errors, one per seed (the first one ends the connection):
    # DATA on an idle stream, WINDOW_UPDATE of 0, PRIORITY depending on
    # itself, RST_STREAM on an idle stream, HEADERS on an even stream id.
    enc = Encoder()
    bad = {
        "bad_data_idle": DataFrame(3, data=b"idle"),
        "bad_window_zero": WindowUpdateFrame(0, window_increment=0),
        "bad_priority_self": PriorityFrame(5, depends_on=5),
        "bad_rst_idle": RstStreamFrame(9, error_code=8),
        "bad_even_stream": HeadersFrame(2, data=enc.encode(req("/")),
                                        flags=["END_HEADERS", "END_STREAM"]),
    }
    for name, frame in bad.items():
        yield name, 0x3f, out(client()) + frame.serialize()


_made = {}


def out_again(name):
    return _made[name]


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "h2")
    os.makedirs(outdir, exist_ok=True)
    for name, mode, data in seeds():
        _made[name] = data
        with open(os.path.join(outdir, "gen_" + name), "wb") as f:
            f.write(bytes([mode]) + data)
        print("gen_%s: %d bytes" % (name, len(data) + 1))


if __name__ == "__main__":
    main()
