"""Hand-over rounds against the real upstream: what lands there, what comes back, and
what is detected when something else wrote the upstream's copy."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient

from proxy.observability.metrics import Metrics
from proxy.store.keys import logical_key
from proxy.store.store import index_member
from proxy.sync.handover import HandOver, settle_delay
from proxy.sync.ledger import Claim
from tests.engine_fixtures import WM
from tests.sync.conftest import ENGINE, SYNC, SyncProxy, divergences
from tests.sync.ledgers import redis_ms
from tests.sync.sessions import copy_of, eventually, memory, msg, msgs, stamped

pytestmark = pytest.mark.upstream

JSON = {"Content-Type": "application/json"}


async def next_second() -> None:
    await asyncio.sleep(1.0 - time.time() % 1.0 + 0.01)


def sid() -> str:
    return f"sync-{uuid.uuid4().hex[:10]}"


async def put(client: TestClient[Any, Any] | ClientSession, session_id: str,
              body: dict[str, Any], query: str = "") -> dict[str, Any]:
    resp = await client.put(f"{WM}{session_id}{query}", data=orjson.dumps(body),
                            headers=JSON)
    assert resp.status == 200, await resp.text()
    return dict(orjson.loads(await resp.read()))


async def get(client: TestClient[Any, Any] | ClientSession, session_id: str,
              query: str = "") -> dict[str, Any] | None:
    resp = await client.get(f"{WM}{session_id}{query}")
    if resp.status == 404:
        resp.release()
        return None
    assert resp.status == 200, await resp.text()
    return dict(orjson.loads(await resp.read()))


def content(doc: dict[str, Any] | None) -> Any:
    if doc is None:
        return None
    return doc["messages"], doc["memories"], doc["context"], doc["data"]


async def until_handed_over(proxy: TestClient[Any, Any], direct: ClientSession,
                            session_id: str, query: str = "") -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        ours, theirs = await get(proxy, session_id, query), await get(direct, session_id, query)
        return theirs if theirs is not None and content(theirs) == content(ours) else None
    return await eventually(probe)


async def test_a_session_written_here_lands_upstream_whole_and_unsummarized(
        sync_proxy: SyncProxy, direct: ClientSession) -> None:
    proxy = await sync_proxy()
    s = sid()
    # ~14k tokens: past the upstream's default summarization threshold (11,200), which a
    # hand-over must never trigger (without an LLM here it would fail with 500)
    long = [msg(i, "word " * 400) for i in range(35)]
    body = {"messages": long, "memories": [memory("mem-1")], "context": "ctx",
            "data": {"k": 1}, "namespace": "ns-h", "user_id": "u"}
    await put(proxy, s, body, "?context_window_max=100000000")
    theirs = await until_handed_over(proxy, direct, s, "?namespace=ns-h&user_id=u")
    assert theirs["messages"] == long and theirs["context"] == "ctx"
    assert theirs["user_id"] == "u" and theirs["tokens"] == 0
    await eventually(lambda: _more(proxy.app[SYNC].results["ok"], 0))


async def test_a_session_that_expires_expires_upstream_with_it(
        sync_proxy: SyncProxy, direct: ClientSession) -> None:
    proxy = await sync_proxy()
    s = sid()
    await put(proxy, s, {"messages": msgs(2), "ttl_seconds": 600})
    theirs = await until_handed_over(proxy, direct, s)
    assert 595 <= theirs["ttl_seconds"] <= 600  # what the proxy's copy had left
    await eventually(lambda: _more(proxy.app[SYNC].results["ok"], 0))
    handed = proxy.app[SYNC].results["ok"]
    await put(proxy, s, {"messages": msgs(2), "ttl_seconds": 600})  # same content, new TTL
    await eventually(lambda: _more(proxy.app[SYNC].results["ok"], handed))


async def _more(now: int, before: int) -> bool | None:
    return True if now > before else None


async def test_many_puts_become_one_hand_over_of_the_latest_state(
        sync_proxy: SyncProxy, direct: ClientSession) -> None:
    proxy = await sync_proxy(sync_quiet_ms=300, sync_max_lag_ms=5_000)
    s = sid()
    for n in range(1, 11):
        await put(proxy, s, {"messages": msgs(n)})
    await until_handed_over(proxy, direct, s)
    await eventually(lambda: _more(proxy.app[SYNC].results["ok"], 0))  # the round ends
    await asyncio.sleep(0.4)  # past another quiet period: nothing more to hand over
    assert proxy.app[SYNC].results["ok"] == 1


async def test_a_foreign_write_is_kept_and_counted(sync_proxy: SyncProxy,
                                                  direct: ClientSession) -> None:
    proxy = await sync_proxy()
    s = sid()
    await put(proxy, s, {"messages": msgs(3), "context": "c0"})
    handed = await until_handed_over(proxy, direct, s)
    # Something else (the upstream's MCP tools, a direct client) adds a message and
    # rewrites the context in the upstream's copy...
    foreign = [*handed["messages"][:2], msg(50, "from MCP", mid="mcp-1"),
               handed["messages"][2]]
    await put(direct, s, {"messages": foreign, "context": "from MCP"})
    # ...while a client appends through the proxy.
    await put(proxy, s, {"messages": msgs(4), "context": "c0"})
    merged = await until_handed_over(proxy, direct, s)
    assert [m["id"] for m in merged["messages"]] == ["m0", "m1", "mcp-1", "m2", "m3"]
    assert merged["context"] == "from MCP"
    assert divergences(proxy, "foreign") == 1


async def test_a_leftover_upstream_copy_is_replaced(sync_proxy: SyncProxy,
                                                   direct: ClientSession) -> None:
    proxy = await sync_proxy()
    s = sid()
    await put(direct, s, {"messages": [msg(9, mid="old")]})
    await next_second()  # the upstream keeps whole seconds: "before" must be a second before
    await put(proxy, s, {"messages": msgs(2)})  # created here after: a PUT replaces
    theirs = await until_handed_over(proxy, direct, s)
    assert [m["id"] for m in theirs["messages"]] == ["m0", "m1"]
    assert divergences(proxy, "leftover") == 1


async def test_an_upstream_copy_deleted_there_is_handed_over_again(
        sync_proxy: SyncProxy, direct: ClientSession) -> None:
    proxy = await sync_proxy()
    s = sid()
    await put(proxy, s, {"messages": msgs(2)})
    await until_handed_over(proxy, direct, s)
    (await direct.delete(f"{WM}{s}")).release()
    await put(proxy, s, {"messages": msgs(3)})
    await until_handed_over(proxy, direct, s)
    assert divergences(proxy, "missing") == 1


async def test_stamps_come_back_and_the_next_put_still_appends(
        sync_proxy: SyncProxy, direct: ClientSession) -> None:
    proxy = await sync_proxy()
    s = sid()
    await put(proxy, s, {"messages": msgs(3), "memories": [memory("mem-1")]})
    handed = await until_handed_over(proxy, direct, s)
    # What the upstream's promotion writes back (here by hand: long-term memory is off)
    stamps = {"messages": [stamped(m) for m in handed["messages"]],
              "memories": [{**handed["memories"][0], "persisted_at": "2025-06-01T00:00:05Z"}]}
    await put(direct, s, stamps)
    await put(proxy, s, {"messages": msgs(3), "memories": [memory("mem-1")]})  # a round

    async def stamped_here() -> dict[str, Any] | None:
        doc = await get(proxy, s)
        assert doc is not None
        done = all(m["discrete_memory_extracted"] == "t" for m in doc["messages"])
        return doc if done and doc["memories"][0]["persisted_at"] else None
    doc = await eventually(stamped_here)
    assert doc["messages"] == stamps["messages"]
    # A client that re-sends what it read (agent-memory-client does) appends, and keeps
    # the stamps: no rewrite of the stamped prefix.
    engine = proxy.app[ENGINE]
    rewrites: list[bool] = []
    submit = engine.writes.flusher.submit

    async def spy(write: Any) -> Any:
        rewrites.append(write.rewrite)
        return await submit(write)
    engine.writes.flusher.submit = spy
    await put(proxy, s, {"messages": [*doc["messages"], msg(3)], "memories": doc["memories"]})
    assert rewrites == [False]
    meta = await engine.store.meta(engine.store.keys(logical_key(s, None, None)))
    assert meta is not None and meta.input_canonical


async def test_a_round_landing_after_a_delete_undoes_itself(
        sync_proxy: SyncProxy, direct: ClientSession) -> None:
    proxy = await sync_proxy(sync_quiet_ms=60_000, sync_max_lag_ms=60_000)  # idle worker
    s = sid()
    await put(proxy, s, {"messages": msgs(2)})
    engine, worker = proxy.app[ENGINE], proxy.app[SYNC]
    claimed_ms = await redis_ms(engine.store.redis)
    # The DELETE marks the session deleted after the round's claim, before its PUT lands.
    await worker.handover.records.mark_deleted(engine.store.keys(logical_key(s, None, None)))
    result = await worker.handover.run(Claim(index_member(s, None, None), 1, 0, 0),
                                       claimed_ms)
    assert result.label == "superseded"
    assert await get(direct, s) is None


def test_follow_up_polls_back_off_and_stop_for_an_upstream_that_never_stamps() -> None:
    assert [settle_delay(1000, i) for i in range(9)] == [
        1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, None]
    now = [0.0]
    # the scheduling alone: no engine or records needed
    rounds = HandOver(_NoEngine(), None, Metrics(), 1000,  # type: ignore[arg-type]
                      clock=lambda: now[0])
    claim, pending = Claim(b"m", 1, 0, 0), copy_of(msgs(2))
    assert rounds._next(claim, True, pending).outcome == "settle"
    now[0] = 200.0  # hand-overs for longer than the settle window, never a stamp seen
    assert rounds._next(claim, True, pending).outcome == "clean"
    rounds._stamps_seen = True  # one shows up: polls are worth it again
    assert rounds._next(claim, True, pending).outcome == "settle"
    assert rounds._next(claim, True, copy_of([stamped(m) for m in msgs(2)])).outcome == "clean"


class _NoEngine:
    store = upstream = None
