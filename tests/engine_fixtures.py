"""Helpers shared by the engine tests: canonical messages, a dedicated Redis, a meter.

Messages built by ``msg`` are already in the upstream's canonical form (key order,
``Z`` timestamps, ``persisted_at``/``discrete_memory_extracted`` present), so a GET
returns them unchanged and tests can compare whole lists.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.localstack import ProcessGroup, Service, Stack, start_redis
from proxy.store.keys import SessionKeys
from tests.conftest import emptied_client

WM = "/v1/working-memory/"
BIG = "context_window_max=100000000"  # keeps the upstream's summarization out of the way
_T0 = datetime(2024, 1, 1, tzinfo=UTC)

Message = dict[str, Any]
Client = TestClient[Any, Any]


def stamp(i: int) -> str:
    return (_T0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")


def msg(i: int, content: str | None = None, *, mid: str | None = None,
        at: int | None = None) -> Message:
    return {"role": "user" if i % 2 == 0 else "assistant",
            "content": content if content is not None else f"message number {i}",
            "id": mid or f"m{i}", "created_at": stamp(i if at is None else at),
            "persisted_at": None, "discrete_memory_extracted": "f"}


def msgs(n: int, start: int = 0) -> list[Message]:
    return [msg(i) for i in range(start, start + n)]


@pytest.fixture(scope="module")
def own_redis(stack: Stack, processes: ProcessGroup) -> Iterator[Service]:
    """A redis-server for this module alone, so its counters see only this module."""
    service = start_redis(processes, stack, "engine-redis", modules=False)
    yield service
    processes.stop(service)


@pytest.fixture
async def own_client(own_redis: Service) -> AsyncIterator[aioredis.Redis]:
    async with emptied_client(own_redis) as client:
        yield client


# The meter's own calls and a new connection's handshake, not the request's work.
_HOUSEKEEPING = frozenset(("info", "config|resetstat", "hello", "client|setinfo", "ping"))


@dataclass
class Usage:
    """What Redis did between ``Meter.reset`` and ``Meter.read``."""

    bytes_in: int
    bytes_out: int
    calls: dict[str, int] = field(default_factory=dict)

    def count(self, *names: str) -> int:
        return sum(self.calls.get(n, 0) for n in names)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


class Meter:
    """Counts commands and bytes through Redis' own statistics (CONFIG RESETSTAT)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def reset(self) -> None:
        await self.client.config_resetstat()

    async def read(self) -> Usage:
        info = await self.client.info("all")
        calls = {name: int(v["calls"]) for k, v in info.items()
                 if (name := k.removeprefix("cmdstat_")) != k and name not in _HOUSEKEEPING}
        return Usage(int(info["total_net_input_bytes"]), int(info["total_net_output_bytes"]),
                     calls)


async def put(client: Client, sid: str, body: dict[str, Any]) -> int:
    resp = await client.put(f"{WM}{sid}", data=orjson.dumps(body),
                            headers={"Content-Type": "application/json"})
    await resp.read()
    return resp.status


async def messages(client: Client, sid: str, query: str = "") -> list[Message] | None:
    resp = await client.get(f"{WM}{sid}?{query}")
    if resp.status == 404:
        return None
    assert resp.status == 200, await resp.text()
    found: list[Message] = orjson.loads(await resp.read())["messages"]
    return found


SIZE = 50_000
KB = 1024


def keys_of(session_id: str) -> SessionKeys:
    return SessionKeys.build("amp", session_id)


async def put_ok(client: TestClient[Any, Any], sid: str, body: dict[str, Any],
              query: str = BIG) -> dict[str, Any]:
    resp = await client.put(f"{WM}{sid}?{query}", data=io.BytesIO(orjson.dumps(body)),
                            headers={"Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    result: dict[str, Any] = orjson.loads(await resp.read())
    return result


async def get_ok(client: TestClient[Any, Any], sid: str, query: str = "") -> dict[str, Any]:
    resp = await client.get(f"{WM}{sid}?{query}")
    assert resp.status == 200, await resp.text()
    result: dict[str, Any] = orjson.loads(await resp.read())
    return result
