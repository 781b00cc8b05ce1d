"""What the proxy last handed over, per session, and the marks DELETEs leave."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from proxy.store.keys import SessionKeys
from proxy.sync.records import HISTORY, Record, Records
from tests.sync.ledgers import redis_ms
from tests.sync.sessions import copy_of, memory, msgs


def test_a_record_round_trips_and_remembers_recent_hand_overs() -> None:
    record = None
    copies = [copy_of(msgs(n), [memory("a")], context=str(n)) for n in range(1, HISTORY + 3)]
    for copy in copies:
        record = Record.after(copy, record)
    assert record is not None
    again = Record.decode({k.encode(): v for k, v in record.encode().items()})
    assert again == record
    assert record.knows(copies[-1].content()) and record.knows(copies[-HISTORY].content())
    assert not record.knows(copies[0].content())
    assert len(record.items) == len(copies[-1].messages) + 1
    assert Record.decode({}) is None


async def test_saved_records_expire_with_their_session(redis_client: aioredis.Redis) -> None:
    records = Records(redis_client, tombstone_ms=1_000)
    keys = SessionKeys.build("amp", "s")
    await redis_client.hset(keys.meta, "v", 1)
    await redis_client.pexpire(keys.meta, 60_000)
    record = Record.after(copy_of(msgs(2)), None)
    await records.save(keys, record)
    assert await records.load(keys) == record
    assert 0 < await redis_client.pttl(keys.synced) <= 60_000
    await records.forget(keys)
    assert await records.load(keys) is None


async def test_a_delete_leaves_a_short_lived_mark(redis_client: aioredis.Redis) -> None:
    records = Records(redis_client, tombstone_ms=100)
    keys = SessionKeys.build("amp", "s")
    await records.save(keys, Record.after(copy_of(msgs(1)), None))
    before = await redis_ms(redis_client)
    assert not await records.deleted_since(keys, None)
    await records.mark_deleted(keys)
    assert await records.load(keys) is None
    assert await records.deleted_since(keys, before)
    assert not await records.deleted_since(keys, before + 10_000)
    await asyncio.sleep(0.15)
    assert not await records.deleted_since(keys, None)
