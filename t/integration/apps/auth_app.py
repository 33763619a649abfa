"""A small auth service for route auth tests (uvicorn): GET /check looks
at Authorization: Bearer TOKEN. A granted token gets 200 with x-user and
x-tenant; "forbidden" gets 403; "slow" answers after 5 s; anything else
gets 401 with WWW-Authenticate and a JSON body. /admin/grant, /admin/revoke
and /admin/count let a test change and read what it knows; every /check is
counted (total and per token)."""

import asyncio
import json
from urllib.parse import parse_qs

from asgi_app import lifespan

TOKENS = {}  # token -> {"user": ..., "tenant": ..., "max_age": ...}
COUNT = {"checks": 0, "by_token": {}, "last": {}}


async def answer(send, status, body=b"", headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode())] + list(headers)})
    await send({"type": "http.response.body", "body": body})


async def check(scope, send):
    h = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    token = h.get("authorization", "")[7:] if h.get("authorization", "").startswith("Bearer ") \
        else ""
    COUNT["checks"] += 1
    COUNT["by_token"][token] = COUNT["by_token"].get(token, 0) + 1
    COUNT["last"] = h
    if token == "slow":
        await asyncio.sleep(5)
    if token == "forbidden":
        return await answer(send, 403, b'{"error":"forbidden"}',
                            [(b"content-type", b"application/json")])
    if token == "teapot":
        return await answer(send, 418)
    t = TOKENS.get(token)
    if t is None and token != "slow":
        return await answer(send, 401, b'{"error":"bad token"}',
                            [(b"content-type", b"application/json"),
                             (b"www-authenticate", b'Bearer realm="sluice-test"')])
    t = t or {"user": "slowpoke"}
    hs = [(b"x-user", t["user"].encode())]
    if t.get("tenant"):
        hs.append((b"x-tenant", t["tenant"].encode()))
    if t.get("max_age") is not None:
        hs.append((b"cache-control", b"max-age=%d" % t["max_age"]))
    return await answer(send, 200, b"", hs)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] != "http":
        return
    path = scope["path"]
    q = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
    if path == "/check":
        return await check(scope, send)
    if path == "/admin/grant":
        TOKENS[q["token"]] = {"user": q["user"], "tenant": q.get("tenant"),
                              "max_age": int(q["max_age"]) if "max_age" in q else None}
        return await answer(send, 204)
    if path == "/admin/revoke":
        TOKENS.pop(q["token"], None)
        return await answer(send, 204)
    if path == "/admin/count":
        return await answer(send, 200, json.dumps(COUNT).encode(),
                            [(b"content-type", b"application/json")])
    return await answer(send, 404)
