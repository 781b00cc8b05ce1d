"""Hostile clients against a proxy in front of the real upstream: odd request targets,
nesting past what RedisJSON stores, absurd integers, brace-holding session ids.
Big bodies and slow clients: test_security_load.py."""

from __future__ import annotations

import asyncio
from io import BytesIO
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.codec.jsonsafe import STORED_DEPTH
from proxy.upstream.client import origin_form
from tests.differential import WM, Sides

pytestmark = pytest.mark.upstream


@pytest.fixture
def sides(direct: aiohttp.ClientSession, proxy: TestClient[Any, Any],
          redis_client: aioredis.Redis) -> Sides:
    return Sides(direct, proxy)


def nested(depth: int) -> bytes:
    """``{"a": ... 1 ...}`` ``depth`` objects deep, as JSON (orjson dumps at most 254)."""
    return b'{"a":' * depth + b"1" + b"}" * depth


MESSAGES = [{"role": "user", "content": f"m{i}", "id": f"m{i}",
             "created_at": f"2025-01-01T00:00:0{i}Z"} for i in range(3)]


@pytest.mark.parametrize(("where", "depth"), [
    ("data", STORED_DEPTH - 1), ("data", STORED_DEPTH), ("data", 252), ("data", 253),
    ("data", 2000), ("config", STORED_DEPTH - 2), ("config", STORED_DEPTH - 1),
    ("memory", STORED_DEPTH - 3), ("memory", STORED_DEPTH - 2),
])
async def test_nesting_past_redisjson_answers_500_and_stores_nothing(
        sides: Sides, where: str, depth: int) -> None:
    """The upstream stores a document of up to 127 nested containers; past that RedisJSON
    refuses it and the upstream answers 500, storing nothing. The proxy likewise."""
    field = {"data": b'"data":%s',
             "config": b'"long_term_memory_strategy":{"strategy":"custom","config":%s}',
             "memory": b'"memories":[{"text":"x","id":"mem-1",'
                       b'"extraction_strategy_config":%s}]'}[where]
    body = orjson.dumps({"messages": MESSAGES})[:-1] + b"," + field % nested(depth) + b"}"
    sid = f"SIDE-deep-{where}-{depth}"
    put = await sides.same("PUT", WM + sid, body)
    stored = await sides.same("GET", WM + sid)
    if put.status == 200:
        assert depth <= STORED_DEPTH - {"data": 1, "config": 2, "memory": 3}[where]
        assert stored.status == 200
    else:
        assert stored.status == 404


@pytest.mark.parametrize("limit", ["9" * 400, "-" + "9" * 400, "9" * 4300, "+" + "9" * 4300,
                                   "1_" * 2150 + "1", "9" * 4299 + ".0", "1" * 4301])
async def test_a_huge_recent_messages_limit_on_a_held_session(sides: Sides,
                                                               limit: str) -> None:
    await sides.same("PUT", WM + "SIDE-limit", orjson.dumps({"messages": MESSAGES}))
    got = await sides.same("GET", WM + f"SIDE-limit?recent_messages_limit={limit}")
    assert got.status == (422 if limit == "1" * 4301 else 200)


@pytest.mark.parametrize("window", ["9" * 400, "-" + "9" * 400, "9" * 300])
async def test_a_huge_context_window_on_a_held_session(sides: Sides, window: str) -> None:
    """Past what a float holds the upstream's own arithmetic overflows: a 500 before
    anything is stored (a PUT with messages), or no percentages at all (a negative one)."""
    await sides.same("PUT", WM + "SIDE-window", orjson.dumps({"messages": MESSAGES}))
    query = f"?context_window_max={window}"
    await sides.same("GET", WM + "SIDE-window" + query)
    more = {"messages": [*MESSAGES, {**MESSAGES[0], "id": "m9", "content": "later"}]}
    await sides.same("PUT", WM + "SIDE-window" + query, orjson.dumps(more))
    await sides.same("GET", WM + "SIDE-window")  # nothing of a failed PUT was stored


async def test_the_prompt_does_not_import_what_the_rest_routes_cannot_reach(
        proxy: TestClient[Any, Any], redis_client: aioredis.Redis) -> None:
    """An id with braces never matches the REST routes' {session_id}: such a session lives
    in the upstream, so a prompt must leave it there."""
    sid = "brace{d}-session"
    path = WM + "brace%7Bd%7D-session"
    put = await proxy.put(path, json={"messages": MESSAGES})  # passed through: upstream's
    assert put.status == 200
    prompt = await proxy.post("/v1/memory/prompt", json={
        "query": "and now?", "session": {"session_id": sid}})
    assert prompt.status == 200
    texts = [m["content"]["text"] for m in (await prompt.json())["messages"]]
    assert texts[:3] == ["m0", "m1", "m2"]  # the upstream built it from its own copy
    still = await proxy.get(path)
    assert still.status == 200
    assert await redis_client.keys("amp:*:meta") == []  # nothing imported


async def _raw(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    writer.close()
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("target", [
    "http://other-host.invalid/v1/health", "http://127.0.0.1:1/v1/health?x=1",
    "http://user@evil.invalid/v1/health", "https://evil.invalid:8443/v1/tasks/t-1",
    "http://evil.invalid/v1/working-memory/abs-form", "http://evil.invalid",
    "//evil.invalid/v1/health",
])
async def test_absolute_form_targets_reach_only_the_configured_upstream(
        proxy: TestClient[Any, Any], upstream: Any, target: str) -> None:
    """``GET http://elsewhere/path`` is served for ``/path`` (RFC 9112 3.2.2), by the proxy
    or the configured upstream, exactly as the upstream answers ``GET /path``: never
    another host, never a 500. (uvicorn's h11 answers such a target 404 itself.)"""
    assert proxy.port is not None
    origin = origin_form(target)
    want = await _raw(int(upstream.url.rsplit(":", 1)[1]),
                      f"GET {origin} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = await _raw(proxy.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert got[0] == want[0] and got[0] < 500
    if b'"now"' not in want[1]:  # the health route tells the time
        assert got[1] == want[1]


async def test_big_sessions_answer_as_the_upstream(sides: Sides) -> None:
    """Past 1 MiB a PUT is parsed in a worker thread and answers are written in slices:
    the bytes are the upstream's all the same."""
    text = "word " * 1000
    body = {"messages": [{"role": "user", "content": f"{i} {text}", "id": f"b{i}",
                          "created_at": "2025-01-01T00:00:00Z"} for i in range(600)]}
    path = WM + "SIDE-big?context_window_max=100000000"
    answers: dict[str, list[tuple[int, str | None, bytes]]] = {}
    for side in ("direct", "proxy"):
        client: Any = sides.direct if side == "direct" else sides.proxy
        url = sides.fill(side, path)
        raw = sides.fill(side, orjson.dumps(body).decode()).encode()
        answers[side] = []
        for method, data in (("PUT", BytesIO(raw)), ("GET", None)):  # big bodies: a file
            async with client.request(method, url, data=data, headers={
                    "Content-Type": "application/json"}) as resp:
                answers[side].append((resp.status, resp.headers.get("Content-Type"),
                                      sides.normalize(side, await resp.read())))
    assert answers["proxy"] == answers["direct"]
    assert [a[0] for a in answers["proxy"]] == [200, 200]
    assert all(len(a[2]) > 3_000_000 for a in answers["proxy"])
