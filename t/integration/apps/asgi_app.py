"""A small ASGI app used as the upstream in the proxy tests (uvicorn,
gunicorn -k uvicorn.workers.UvicornWorker, hypercorn).

Endpoints (all bounded):
  GET  /whoami            JSON: server port, pid, client peer, path, query, method
  GET  /headers           JSON: the request headers as received (list of pairs)
  ANY  /seen/...          JSON: {"path", "raw_path", "query", "method", "headers"}: what
                          the proxy forwarded, for any path under /seen
  GET  /bytes?n=N         N deterministic bytes (content-length), N <= 64 MiB
  GET  /stream?n=N&size=S&delay=D   N chunks of S bytes, D s apart, no length
  POST /sha256            JSON: {"sha256", "len"} of the request body
  POST /echo              the request body streamed back as it arrives
  GET  /slow?delay=D      sleeps D s (<= 30) before the response head
  GET  /status/N          an empty response with status N
  GET  /hang              sends the head and 1 KiB, then waits (<= 30 s) for the
                          client to go away; counts that as a disconnect
  GET  /stats             JSON: {"peers": distinct client (ip, port) pairs,
                          "requests": n, "disconnects": n}
  GET  /early             103 Early Hints (when the server supports it), then 200
  GET  /fail?on=0|1       once on=1 was asked, every request answers 503 until on=0
  POST /hooks/...         records the request (path, headers, body, and whether
                          the body came whole or the client went away) per job-id
                          header (at most 1000 kept); /hooks/flaky answers 503
                          to a job's first 2 POSTs, then 200
  GET  /hooks/last?job=J  JSON: the records for job J, oldest first ([] if none)
  WS   /ws/echo           WebSocket: the first message is a JSON text with the
                          handshake headers and the server port; then every
                          message is echoed; the text "close-me" makes the
                          app close with code 4001
                          (counted in /stats "ws_closed" either way)
"""

import asyncio
import hashlib
import json
import os
import urllib.parse

STATS = {"peers": set(), "requests": 0, "disconnects": 0, "ws_closed": 0}
FAILING = [False]
HOOKS = {}  # job-id -> [{"path", "headers", "body"}]
MAX_BYTES = 64 * 1024 * 1024


def pattern(n):
    block = bytes(range(256))
    return (block * (n // 256 + 1))[:n]


def qs(scope):
    return {k: v[-1] for k, v in urllib.parse.parse_qs(scope.get("query_string", b"").decode()).items()}


async def send_simple(send, status, body, ctype=b"application/json", extra=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
                + list(extra)})
    await send({"type": "http.response.body", "body": body})


async def read_all(receive, on_chunk=None):
    while True:
        m = await receive()
        if m["type"] == "http.disconnect":
            return False
        if on_chunk:
            await on_chunk(m.get("body", b""))
        if not m.get("more_body"):
            return True


async def ws_app(scope, receive, send):
    m = await receive()
    if m["type"] != "websocket.connect" or scope["path"] != "/ws/echo":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    hs = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    port = scope["server"][1] if scope.get("server") else None
    await send({"type": "websocket.send", "text": json.dumps({
        "headers": hs, "port": port, "path": scope["path"],
        "http_version": scope.get("http_version")})})
    try:
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                return
            if m.get("text") == "close-me":
                await send({"type": "websocket.close", "code": 4001})
                return
            if m.get("text") is not None:
                await send({"type": "websocket.send", "text": m["text"]})
            else:
                await send({"type": "websocket.send", "bytes": m.get("bytes") or b""})
    finally:
        STATS["ws_closed"] += 1


async def lifespan(receive, send):
    """ASGI lifespan: nothing to set up or tear down (auth_app.py too)."""
    while True:
        m = await receive()
        if m["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif m["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] == "websocket":
        return await ws_app(scope, receive, send)
    if scope["type"] != "http":
        return
    STATS["requests"] += 1
    client = scope.get("client") or ("", 0)
    STATS["peers"].add(tuple(client))
    path = scope["path"]
    q = qs(scope)

    if path == "/whoami":
        body = json.dumps({"port": scope["server"][1] if scope.get("server") else None,
                           "pid": os.getpid(), "peer": list(client), "path": path,
                           "raw_path": (scope.get("raw_path") or b"").decode("latin-1"),
                           "query": scope.get("query_string", b"").decode(),
                           "method": scope["method"]}).encode()
        await read_all(receive)
        return await send_simple(send, 200, body)
    if path.startswith("/seen"):
        await read_all(receive)
        body = json.dumps({"path": path, "method": scope["method"],
                           "raw_path": (scope.get("raw_path") or b"").decode("latin-1"),
                           "query": scope.get("query_string", b"").decode("latin-1"),
                           "headers": {k.decode("latin-1"): v.decode("latin-1")
                                       for k, v in scope["headers"]}}).encode()
        return await send_simple(send, 200, body)
    if path == "/headers":
        await read_all(receive)
        hs = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        return await send_simple(send, 200, json.dumps(hs).encode())
    if path == "/stats":
        body = json.dumps({"peers": len(STATS["peers"]), "requests": STATS["requests"],
                           "disconnects": STATS["disconnects"],
                           "ws_closed": STATS["ws_closed"]}).encode()
        return await send_simple(send, 200, body)
    if path == "/hooks/last":
        await read_all(receive)
        return await send_simple(send, 200, json.dumps(HOOKS.get(q.get("job", ""), [])).encode())
    if path.startswith("/hooks/") and scope["method"] == "POST":
        chunks = []

        async def keep(b):
            chunks.append(b)
        complete = await read_all(receive, keep)
        hs = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        jid = hs.get("job-id", "")
        if jid not in HOOKS and len(HOOKS) >= 1000:
            HOOKS.pop(next(iter(HOOKS)))
        rec = HOOKS.setdefault(jid, [])
        rec.append({"path": path, "headers": hs, "body": b"".join(chunks).decode("latin-1"),
                    "complete": complete})
        code = 503 if path == "/hooks/flaky" and len(rec) <= 2 else 200
        return await send_simple(send, code, b'{"ok":true}')
    if path == "/fail":
        FAILING[0] = q.get("on", "1") == "1"
        await read_all(receive)
        return await send_simple(send, 200, b'{"ok":true}')
    if FAILING[0]:
        await read_all(receive)
        return await send_simple(send, 503, b'{"failing":true}')
    if path == "/bytes":
        n = min(int(q.get("n", "0")), MAX_BYTES)
        return await send_simple(send, 200, pattern(n), b"application/octet-stream")
    if path == "/stream":
        n, size = min(int(q.get("n", "3")), 100000), min(int(q.get("size", "10")), 1 << 20)
        delay = min(float(q.get("delay", "0")), 5.0)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        chunk = pattern(size)
        for i in range(n):
            if delay and i:
                await asyncio.sleep(delay)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/sha256":
        h = hashlib.sha256()
        total = [0]

        async def feed(b):
            h.update(b)
            total[0] += len(b)
        await read_all(receive, feed)
        return await send_simple(send, 200, json.dumps({"sha256": h.hexdigest(),
                                                         "len": total[0]}).encode())
    if path == "/echo":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})

        async def back(b):
            if b:
                await send({"type": "http.response.body", "body": b, "more_body": True})
        await read_all(receive, back)
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/slow":
        await asyncio.sleep(min(float(q.get("delay", "1")), 30.0))
        await read_all(receive)
        return await send_simple(send, 200, b'{"slow":true}')
    if path.startswith("/status/"):
        code = int(path[len("/status/"):])
        await read_all(receive)
        await send({"type": "http.response.start", "status": code, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/hang":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
        try:
            m = await asyncio.wait_for(receive(), timeout=30)
            while m["type"] != "http.disconnect":
                m = await asyncio.wait_for(receive(), timeout=30)
            STATS["disconnects"] += 1
        except asyncio.TimeoutError:
            pass
        return
    if path == "/early":
        await read_all(receive)
        if "http.response.early_hint" in scope.get("extensions", {}):
            await send({"type": "http.response.early_hint",
                        "links": [b"</style.css>; rel=preload; as=style"]})
        return await send_simple(send, 200, b'{"early":true}')
    await read_all(receive)
    await send_simple(send, 404, b'{"error":"not found"}')
