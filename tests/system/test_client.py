"""agent-memory-client 0.14.0 behaves the same pointed at the proxy as at the upstream.

One scenario of the client's working-memory calls runs against each; every result (or
exception) is dumped to JSON, normalized like the differential tests, and compared.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
from agent_memory_client import MemoryAPIClient, MemoryClientConfig
from agent_memory_client.models import (
    ClientMemoryRecord,
    MemoryMessage,
    MemoryTypeEnum,
    WorkingMemory,
)
from aiohttp.test_utils import TestClient
from pydantic import BaseModel

from tests.differential import Sides

Step = tuple[str, Callable[[MemoryAPIClient, Callable[[str], str]], Awaitable[Any]]]


def dump(result: Any) -> bytes:
    if isinstance(result, BaseModel):
        return orjson.dumps(result.model_dump(mode="json"))
    if isinstance(result, tuple):
        return b"[" + b",".join(dump(r) for r in result) + b"]"
    return orjson.dumps(result)


def message(i: int, role: str = "user") -> MemoryMessage:
    return MemoryMessage(role=role, content=f"message {i}", id=f"c{i}",
                         created_at=f"2024-01-01T00:00:{i:02d}Z")  # type: ignore[arg-type]


SCENARIO: list[Step] = [
    ("get_or_create (new)", lambda c, f: c.get_or_create_working_memory(
        f("SIDE-c1"), namespace=f("SIDE-ns"))),
    ("get_or_create (existing)", lambda c, f: c.get_or_create_working_memory(
        f("SIDE-c1"), namespace=f("SIDE-ns"))),
    ("put", lambda c, f: c.put_working_memory(f("SIDE-c1"), WorkingMemory(
        session_id=f("SIDE-c1"), namespace=f("SIDE-ns"), messages=[message(1), message(2,
        "assistant")], context="so far", data={"k": [1, None]}), user_id=f("SIDE-u"),
        context_window_max=1000)),
    ("get", lambda c, f: c.get_working_memory(f("SIDE-c1"), namespace=f("SIDE-ns"),
                                              model_name="gpt-4")),
    ("append", lambda c, f: c.append_messages_to_working_memory(
        f("SIDE-c1"), [{"role": "user", "content": "appended", "id": "c3"}, message(4, "tool")],
        namespace=f("SIDE-ns"), context_window_max=500)),
    ("set data", lambda c, f: c.set_working_memory_data(
        f("SIDE-c1"), {"theme": "dark"}, namespace=f("SIDE-ns"))),
    ("update data", lambda c, f: c.update_working_memory_data(
        f("SIDE-c1"), {"lang": "en", "theme": "light"}, namespace=f("SIDE-ns"))),
    ("add memories", lambda c, f: c.add_memories_to_working_memory(
        f("SIDE-c1"), [ClientMemoryRecord(text="likes tea", memory_type=MemoryTypeEnum.SEMANTIC)],
        namespace=f("SIDE-ns"))),
    ("get after helpers", lambda c, f: c.get_working_memory(f("SIDE-c1"),
                                                            namespace=f("SIDE-ns"))),
    ("second session", lambda c, f: c.get_or_create_working_memory(
        f("SIDE-c2"), namespace=f("SIDE-ns"), user_id=f("SIDE-u"))),
    ("list", lambda c, f: c.list_sessions(namespace=f("SIDE-ns"))),
    ("list paged", lambda c, f: c.list_sessions(limit=1, offset=1, namespace=f("SIDE-ns"))),
    ("list by user", lambda c, f: c.list_sessions(namespace=f("SIDE-ns"), user_id=f("SIDE-u"))),
    ("prompt", lambda c, f: c.memory_prompt("what next?", session_id=f("SIDE-c1"),
                                            namespace=f("SIDE-ns"))),
    ("prompt truncated", lambda c, f: c.memory_prompt(
        "what next?", session_id=f("SIDE-c1"), namespace=f("SIDE-ns"), context_window_max=8)),
    ("prompt missing", lambda c, f: c.memory_prompt("q", session_id=f("SIDE-none"))),
    ("prompt long-term", lambda c, f: c.memory_prompt(
        "q", session_id=f("SIDE-c1"), namespace=f("SIDE-ns"), long_term_search={"limit": 2})),
    ("delete unscoped", lambda c, f: c.delete_working_memory(f("SIDE-c1"))),
    ("get still there", lambda c, f: c.get_working_memory(f("SIDE-c1"),
                                                          namespace=f("SIDE-ns"))),
    ("delete", lambda c, f: c.delete_working_memory(f("SIDE-c1"), namespace=f("SIDE-ns"))),
    ("get deleted", lambda c, f: c.get_working_memory(f("SIDE-c1"), namespace=f("SIDE-ns"))),
    ("list after delete", lambda c, f: c.list_sessions(namespace=f("SIDE-ns"))),
]


async def run_scenario(base_url: str, sides: Sides, side: str) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []

    def fill(text: str) -> str:
        return sides.fill(side, text)

    async with MemoryAPIClient(MemoryClientConfig(base_url=base_url)) as client:
        for name, step in SCENARIO:
            with warnings.catch_warnings():
                # The client's own get_working_memory warns about itself on every call.
                warnings.simplefilter("ignore", DeprecationWarning)
                out.append((name, await _step(client, base_url, step, sides, side, fill)))
    return out


async def _step(client: MemoryAPIClient, base_url: str, step: Any, sides: Sides, side: str,
                fill: Callable[[str], str]) -> bytes:
    try:
        result = dump(await step(client, fill))
    except Exception as exc:  # the exception is part of the behaviour compared
        detail = str(exc).replace(base_url, "BASE")
        result = f"{type(exc).__name__}: {detail}".encode()
    return sides.normalize(side, result)


async def test_client_scenario(direct: aiohttp.ClientSession, proxy: TestClient[Any, Any],
                               redis_client: aioredis.Redis) -> None:
    sides = Sides(direct, proxy)
    want = await run_scenario(str(direct._base_url), sides, "direct")
    got = await run_scenario(str(proxy.make_url("")).rstrip("/"), sides, "proxy")
    for (name, w), (_, g) in zip(want, got, strict=True):
        assert g == w, f"{name}\nupstream: {w!r}\nproxy:    {g!r}"
    results = dict(got)
    assert results["get_or_create (new)"].startswith(b"[true,")
    assert results["get_or_create (existing)"].startswith(b"[false,")
    assert b"appended" in results["prompt"]
    assert results["get deleted"].startswith(b"MemoryNotFoundError")
