"""Every route the proxy serves, with every credential, sent straight to an upstream that
enforces auth and through the proxy in front of it; the answers compared.

Each side works on its own sessions (``SIDE`` in a path or body becomes a token of the side,
as in tests/differential.py): the proxy deletes the upstream copies of the ids it serves,
so sharing ids would mix the sides. Refusals (any answer that is not 2xx) must agree byte
for byte: status, body and ``WWW-Authenticate``; accepted requests must agree on status.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

WM = "/v1/working-memory/"
CONCURRENCY = 3


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # SIDE: the side's token; CRED: the credential's name
    body: bytes | None = None
    content_type: str | None = "application/json"
    proxy_only: str | None = None  # a route the upstream lacks: compare with this route


def message(i: int, text: str) -> dict[str, Any]:
    return {"role": "user", "content": text, "id": f"m{i}",
            "created_at": f"2025-01-01T00:00:{i:02d}Z"}


SEED = orjson.dumps({"messages": [message(1, "hello"), message(2, "again")],
                     "namespace": "SIDE-ns", "context": "earlier"})
NEW = orjson.dumps({"messages": [message(3, "new")], "namespace": "SIDE-ns"})

ROUTES = [
    Route("list", "GET", WM + "?namespace=SIDE-ns"),
    Route("get", "GET", WM + "SIDE-seed?namespace=SIDE-ns&recent_messages_limit=1"),
    Route("get-bad-query", "GET", WM + "SIDE-seed?namespace=SIDE-ns&recent_messages_limit=x"),
    Route("put", "PUT", WM + "SIDE-new-CRED", NEW),
    Route("put-invalid", "PUT", WM + "SIDE-bad-CRED", b'{"messages": 5}'),
    Route("put-not-json", "PUT", WM + "SIDE-nj-CRED", b'{"messages": ['),
    Route("delete", "DELETE", WM + "SIDE-del-CRED?namespace=SIDE-ns"),
    Route("prompt", "POST", "/v1/memory/prompt", orjson.dumps(
        {"query": "what now?", "session": {"session_id": "SIDE-seed", "namespace": "SIDE-ns"}})),
    Route("pass-through", "GET", "/v1/summary-views"),
    Route("open", "GET", "/v1/health"),
    Route("append", "POST", WM + "SIDE-seed/messages?namespace=SIDE-ns", orjson.dumps(
        {"messages": [message(9, "appended")], "namespace": "SIDE-ns"}), proxy_only="put"),
]


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    www_authenticate: str | None
    content_type: str | None


class Sides:
    def __init__(self, direct: aiohttp.ClientSession, proxy: TestClient[Any, Any]) -> None:
        run = uuid.uuid4().hex[:6]
        self.direct, self.proxy = direct, proxy
        self.tokens = {"direct": f"d{run}", "proxy": f"p{run}"}

    def fill(self, side: str, text: bytes, cred: str) -> bytes:
        return text.replace(b"SIDE", self.tokens[side].encode()).replace(b"CRED", cred.encode())

    async def send(self, side: str, route: Route, cred: str,
                   authorization: tuple[str, ...]) -> Reply:
        if route.name == "delete" and cred != "valid":
            cred = "refused"
        path = self.fill(side, route.path.encode(), cred).decode()
        body = None if route.body is None else self.fill(side, route.body, cred)
        headers: CIMultiDict[str] = CIMultiDict(("Authorization", v) for v in authorization)
        if route.content_type and body is not None:
            headers["Content-Type"] = route.content_type
        client: Any = self.direct if side == "direct" else self.proxy
        async with client.request(route.method, path, data=body, headers=headers,
                                  skip_auto_headers=("Content-Type",)) as resp:
            raw = await resp.read()
            raw = raw.replace(self.tokens[side].encode(), b"SIDE")
            return Reply(resp.status, raw, resp.headers.get("WWW-Authenticate"),
                         resp.headers.get("Content-Type"))

    async def seed(self, authorization: tuple[str, ...]) -> None:
        """The sessions the matrix reads and deletes, on both sides, by a valid client:
        every refused credential tries to delete one of them (``del-refused``)."""
        puts = [("seed", SEED), ("del-valid", NEW), ("del-refused", NEW)]
        for side in ("direct", "proxy"):
            replies = await asyncio.gather(*(self.send(side, Route("seed", "PUT", WM + "SIDE-"
                                                                   + sid, body), "", authorization)
                                             for sid, body in puts))
            assert all(r.status == 200 for r in replies), replies


async def run_matrix(sides: Sides, credentials: dict[str, tuple[str, ...]]
                     ) -> dict[tuple[str, str], tuple[Reply, Reply]]:
    """Every (route, credential) on both sides, concurrently; the two answers of each."""
    by_name = {r.name: r for r in ROUTES}

    async def pair(route: Route, cred: str) -> tuple[Reply, Reply]:
        authorization = credentials[cred]
        want_route = by_name[route.proxy_only] if route.proxy_only else route
        want, got = await asyncio.gather(sides.send("direct", want_route, cred, authorization),
                                         sides.send("proxy", route, cred, authorization))
        return want, got

    # A few at a time: the upstream checks tokens with bcrypt on its event loop, and
    # under a pile of them its own Redis calls time out (500s).
    slots = asyncio.Semaphore(CONCURRENCY)

    async def bounded(route: Route, cred: str) -> tuple[Reply, Reply]:
        async with slots:
            return await pair(route, cred)

    keys = [(route.name, cred) for route in ROUTES for cred in credentials]
    results = await asyncio.gather(*(bounded(by_name[r], c) for r, c in keys))
    return dict(zip(keys, results, strict=True))


def mismatches(results: dict[tuple[str, str], tuple[Reply, Reply]]) -> list[str]:
    """Where the proxy did not answer as the upstream did."""
    out = []
    for (route, cred), (want, got) in sorted(results.items()):
        if route == "append" and want.status == 200:
            ok = got.status == 200
        elif 200 <= want.status < 300:
            ok = got.status == want.status
        else:
            ok = (got.status, got.body, got.www_authenticate) == (
                want.status, want.body, want.www_authenticate)
        if not ok:
            out.append(f"{route} x {cred}: upstream {want.status} {want.body[:120]!r} "
                       f"{want.www_authenticate!r}, proxy {got.status} {got.body[:120]!r} "
                       f"{got.www_authenticate!r}")
    return out
