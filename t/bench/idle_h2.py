#!/usr/bin/python3
# sluice - SPDX-License-Identifier: MIT
#
# Idle-connection client for `make bench`: opens N HTTP/2-over-TLS
# connections (ALPN h2), sends the preface and an empty SETTINGS, waits for
# the server's SETTINGS and the ACK of ours, then holds every connection
# open without sending anything else. Prints "READY <open> <failed>" once
# all attempts are done, then waits until stdin closes (or --hold-s passes)
# and exits, which closes the connections.
#
# The server's RSS before and after, divided by <open>, is the memory an
# idle HTTP/2 TLS connection costs it. Only loopback; the caller pins this
# process to the load-generator CPU.
import argparse
import asyncio
import ssl
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
T_SETTINGS, T_GOAWAY, F_ACK = 4, 7, 1


async def read_frame(r, timeout):
    hdr = await asyncio.wait_for(r.readexactly(9), timeout)
    length = int.from_bytes(hdr[:3], "big")
    if length:
        await asyncio.wait_for(r.readexactly(length), timeout)
    return hdr[3], hdr[4]


async def open_one(args, ctx, sem, held, errors):
    async with sem:
        w = None
        try:
            r, w = await asyncio.wait_for(
                asyncio.open_connection(args.host, args.port, ssl=ctx,
                                        server_hostname="localhost"), args.timeout)
            alpn = w.get_extra_info("ssl_object").selected_alpn_protocol()
            if alpn != "h2":
                raise RuntimeError("ALPN gave %r, not h2" % alpn)
            w.write(PREFACE + SETTINGS)
            got_settings = got_ack = False
            while not (got_settings and got_ack):
                typ, flags = await read_frame(r, args.timeout)
                if typ == T_GOAWAY:
                    raise RuntimeError("server sent GOAWAY")
                if typ == T_SETTINGS and flags & F_ACK:
                    got_ack = True
                elif typ == T_SETTINGS:
                    got_settings = True
                    w.write(SETTINGS_ACK)
            await w.drain()
            held.append((r, w))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                RuntimeError, ssl.SSLError) as e:
            errors.append(repr(e))
            if w is not None:
                w.close()


async def wait_stdin_eof(hold_s):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        await asyncio.wait_for(reader.read(), hold_s)
    except asyncio.TimeoutError:
        pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=4000, help="connections to open")
    ap.add_argument("--parallel", type=int, default=64, help="handshakes in flight")
    ap.add_argument("--timeout", type=float, default=15.0)
    ap.add_argument("--hold-s", type=float, default=120.0, help="upper bound on holding")
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])

    sem = asyncio.Semaphore(args.parallel)
    held, errors = [], []
    await asyncio.gather(*(open_one(args, ctx, sem, held, errors) for _ in range(args.n)))
    print("READY %d %d" % (len(held), len(errors)), flush=True)
    if errors:
        print("first error: %s" % errors[0], file=sys.stderr, flush=True)
    await wait_stdin_eof(args.hold_s)
    # The transports keep reading in the background, so a connection the
    # server closed while we held it shows up as EOF here.
    alive = sum(1 for r, _ in held if not r.at_eof())
    print("ALIVE %d" % alive, flush=True)
    for _, w in held:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
