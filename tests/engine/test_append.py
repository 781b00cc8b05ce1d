"""The append endpoint: O(delta) appends that PUT/GET see exactly as if PUT whole."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from tests.differential import stored_keys

URL = "/v1/working-memory/{}/messages"


def msg(i: int, role: str = "user") -> dict[str, str]:
    return {"role": role, "content": f"message number {i}", "id": f"m{i}",
            "created_at": f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z"}


async def test_append_creates_then_extends(proxy: TestClient[Any, Any],
                                           redis_client: aioredis.Redis) -> None:
    resp = await proxy.post(URL.format("ap1") + "?context_window_max=1000",
                            json={"messages": [msg(0), msg(1, "assistant")]})
    assert resp.status == 200, await resp.text()
    first = await resp.json()
    assert first["message_count"] == 2
    assert first["session_id"] == "ap1"
    assert first["context_percentage_total_used"] > 0
    resp = await proxy.post(URL.format("ap1"), json={"messages": [msg(2)]})
    assert (await resp.json())["message_count"] == 3
    got = await (await proxy.get("/v1/working-memory/ap1")).json()
    assert [m["id"] for m in got["messages"]] == ["m0", "m1", "m2"]
    assert got["messages"][1]["role"] == "assistant"


async def test_append_agrees_with_put(proxy: TestClient[Any, Any],
                                      redis_client: aioredis.Redis) -> None:
    msgs = [msg(i) for i in range(5)]
    await proxy.put("/v1/working-memory/ap2", json={"messages": msgs[:3], "data": {"k": 1},
                                                     "context": "ctx"})
    await proxy.post(URL.format("ap2"), json={"messages": msgs[3:]})
    after_append = await (await proxy.get("/v1/working-memory/ap2")).json()
    await proxy.put("/v1/working-memory/ap3", json={"messages": msgs, "data": {"k": 1},
                                                     "context": "ctx"})
    after_put = await (await proxy.get("/v1/working-memory/ap3")).json()
    for key in ("messages", "data", "context", "memories", "tokens"):
        assert after_append[key] == after_put[key], key
    # A full PUT after appends still works (and rewrites correctly).
    resp = await proxy.put("/v1/working-memory/ap2", json={"messages": msgs + [msg(9)]})
    assert resp.status == 200
    got = await (await proxy.get("/v1/working-memory/ap2?recent_messages_limit=2")).json()
    assert [m["id"] for m in got["messages"]] == ["m4", "m9"]


async def test_append_scoped_by_namespace(proxy: TestClient[Any, Any],
                                          redis_client: aioredis.Redis) -> None:
    await proxy.post(URL.format("ap4"), json={"messages": [msg(0)], "namespace": "ns"})
    assert (await proxy.get("/v1/working-memory/ap4")).status == 404
    assert (await proxy.get("/v1/working-memory/ap4?namespace=ns")).status == 200


async def test_append_rejects_bad_input_and_stores_nothing(
        proxy: TestClient[Any, Any], redis_client: aioredis.Redis) -> None:
    cases: list[tuple[bytes, int]] = [
        (b"{not json", 422),
        (b'{"messages": "x"}', 422),
        (b"[]", 422),
        (orjson.dumps({"messages": [{"role": "user"}]}), 422),
        (orjson.dumps({"messages": [{"role": "user", "content": "  "}]}), 400),
        (orjson.dumps({"messages": [msg(0)], "namespace": 5}), 422),
    ]
    for body, status in cases:
        resp = await proxy.post(URL.format("bad"), data=body,
                                headers={"content-type": "application/json"})
        assert resp.status == status, body
        assert "detail" in await resp.json()
    assert await stored_keys(redis_client) == set()


async def test_append_over_threshold_gets_upstream_outcome(
        proxy: TestClient[Any, Any], redis_client: aioredis.Redis) -> None:
    # context_window_max=20: threshold 14 tokens; three messages exceed it, so the upstream
    # would summarize, and without an LLM it answers 500: nothing may be stored.
    resp = await proxy.post(URL.format("ap5") + "?context_window_max=20",
                            json={"messages": [msg(i) for i in range(3)]})
    assert resp.status == 500
    assert (await proxy.get("/v1/working-memory/ap5")).status == 404
