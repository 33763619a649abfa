"""An origin for the HTTP cache tests (test_66_cache.py), run by uvicorn.
It counts the requests it gets per path and answers what the query asks:

  /r/<anything>?cc=<Cache-Control>&size=N&etag=<tag>&lm=<HTTP-date>
       &vary=<names>&cookie=1&status=N&chunks=K&pause=S&expires=<date>
       &delay=S
    body: size bytes of a fixed pattern (chunks: sent in K pieces, pause
    seconds apart, without Content-Length). With etag, a matching
    If-None-Match gets 304. The fields named in vary are echoed in
    x-echo-<name>; x-count is this path's request number.
  /stats        {"<path>": count, ..., "conditional": n}
Every answer has a Date of its own (run uvicorn with --no-date-header).
"""

import asyncio
import email.utils
import json
from urllib.parse import parse_qs

from asgi_app import lifespan

counts = {}
conditional = {"n": 0}


def pattern(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    path = scope["path"]
    q = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
    hdrs = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    if path == "/stats":
        body = json.dumps(dict(counts, conditional=conditional["n"])).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})
        return
    counts[path] = counts.get(path, 0) + 1
    if "delay" in q:
        await asyncio.sleep(float(q["delay"]))
    status = int(q.get("status", "200"))
    # run with --no-date-header: uvicorn 0.17 refreshes its own Date lazily
    headers = [(b"content-type", b"application/octet-stream"),
               (b"date", email.utils.formatdate(usegmt=True).encode()),
               (b"x-count", str(counts[path]).encode())]
    if "cc" in q:
        headers.append((b"cache-control", q["cc"].encode()))
    if "expires" in q:
        headers.append((b"expires", q["expires"].encode()))
    if "lm" in q:
        headers.append((b"last-modified", q["lm"].encode()))
    if "cookie" in q:
        headers.append((b"set-cookie", b"session=%d" % counts[path]))
    if "vary" in q:
        headers.append((b"vary", q["vary"].encode()))
        for name in q["vary"].split(","):
            name = name.strip().lower()
            headers.append((b"x-echo-" + name.encode(), hdrs.get(name, "").encode()))
    if "etag" in q:
        tag = '"%s"' % q["etag"]
        headers.append((b"etag", tag.encode()))
        if "if-none-match" in hdrs:
            conditional["n"] += 1
            if hdrs["if-none-match"] == tag:
                await send({"type": "http.response.start", "status": 304, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
    size = int(q.get("size", "100"))
    body = pattern(size)
    chunks = int(q.get("chunks", "0"))
    if not chunks:
        headers.append((b"content-length", str(size).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    step = max(1, size // chunks)
    pause = float(q.get("pause", "0"))
    for i in range(0, size, step):
        await send({"type": "http.response.body", "body": body[i:i + step], "more_body": True})
        if pause:
            await asyncio.sleep(pause)
    await send({"type": "http.response.body", "body": b""})
