"""The ledger as the proxy uses it: writes mark their sessions due in their own pipeline;
backlog and lag are read from it; claims are renewed while rounds run."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import orjson
import redis.asyncio as aioredis

from proxy import codec
from proxy.engine.plan import plan_rewrite
from proxy.store.keys import logical_key
from proxy.store.store import Store, Write
from tests.sync.ledgers import PREFIX, due_at, keys_of, ledger, mark, member
from tests.sync.sessions import NOW, msgs


def write_of(store: Store, session_id: str) -> Write:
    body = codec.parse_put(orjson.dumps({"messages": msgs(2)}), "application/json", NOW)
    keys = store.keys(logical_key(session_id, None, None))
    encoded = codec.encode_messages(list[object](msgs(2)), NOW)
    return plan_rewrite(keys, session_id, body, encoded, None).write


async def land(store: Store, write: Write) -> int:
    pipe = store.pipeline()
    count = store.queue_write(pipe, write)
    replies = await store.execute(pipe)
    assert all(not isinstance(r, Exception) for r in replies), replies
    return count


async def test_a_write_marks_its_session_due_in_its_own_pipeline(
        redis_client: aioredis.Redis) -> None:
    store = Store(redis_client, PREFIX)
    await store.load_scripts()
    off = await land(store, write_of(store, "off"))  # script + index upkeep
    store.enable_sync_marks(100, 1_000)
    assert await land(store, write_of(store, "on")) == off + 1  # + the due mark
    assert await due_at(redis_client, member("on")) is not None
    assert await due_at(redis_client, member("off")) is None
    # The sync's own write-backs: no mark, and the session keeps its place in the list.
    back = replace(write_of(store, "on"), expected_version=None, handover=False,
                   keep_rank=True, index_score=1.0)
    before = await redis_client.zscore(store.index_key, member("on"))
    assert await land(store, back) == 1
    assert await redis_client.zscore(store.index_key, member("on")) == before
    state = await redis_client.hget(keys_of(member("on")).state, member("on"))
    assert state is not None and state.split()[0] == b"1"  # still one write to hand over


async def test_backlog_and_lag(redis_client: aioredis.Redis) -> None:
    led = ledger(redis_client)
    assert await led.backlog() == (0, 0.0)
    await mark(redis_client, member("a"))
    await asyncio.sleep(0.2)
    await mark(redis_client, member("b"))
    count, lag = await led.backlog()
    assert count == 2 and 0.18 <= lag < 1.0
    assert await led.due_count() == 2


async def test_settle_schedules_a_poll_without_making_a_session_behind(
        redis_client: aioredis.Redis) -> None:
    led = ledger(redis_client)
    await led.settle(member("imported"), 50)
    assert await led.backlog() == (0, 0.0)
    await asyncio.sleep(0.06)
    [claim] = (await led.claim(1)).claims
    assert (claim.member, claim.seq, claim.step) == (member("imported"), 0, 0)


async def test_renewal_keeps_a_claim_past_its_lease(redis_client: aioredis.Redis) -> None:
    await mark(redis_client, member("s"), quiet_ms=0)
    slow, other = ledger(redis_client, "h1", lease_ms=150), ledger(redis_client, "h2")
    [claim] = (await slow.claim(1)).claims
    for _ in range(4):
        await asyncio.sleep(0.05)
        assert await slow.renew([claim]) == set()
    assert (await other.claim(1)).claims == []
    assert await slow.done(claim, "clean")
