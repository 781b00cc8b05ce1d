"""The ledger's scripts: when a session is due, who may claim it, what ``done`` leaves."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from tests.sync.ledgers import due_at, keys_of, ledger, mark, member, redis_ms, shard_of

KEYS = keys_of(member("s"))  # the shard of the session most tests use


async def test_a_write_is_due_a_quiet_period_later_but_never_past_the_max_lag(
        redis_client: aioredis.Redis) -> None:
    m = member("s")
    start = await redis_ms(redis_client)
    await mark(redis_client, m, quiet_ms=300, max_lag_ms=500)
    first = await due_at(redis_client, m)
    assert first is not None and start + 300 <= first <= start + 350
    for _ in range(4):  # written steadily: the due time moves, up to first change + 500
        await asyncio.sleep(0.1)
        await mark(redis_client, m, quiet_ms=300, max_lag_ms=500)
    last = await due_at(redis_client, m)
    assert last is not None and last <= start + 500 + 50
    assert await redis_client.zcard(KEYS.dirty) == 1


async def test_only_due_sessions_are_claimed_and_each_by_one_holder(
        redis_client: aioredis.Redis) -> None:
    one, two = ledger(redis_client, "h1", limit=10), ledger(redis_client, "h2", limit=10)
    await mark(redis_client, member("a"), quiet_ms=0)
    await mark(redis_client, member("b"), quiet_ms=60_000, max_lag_ms=60_000)
    got = await one.claim(5)
    assert [c.member for c in got.claims] == [member("a")]
    assert one.schedule.at[shard_of(member("b"))] > got.now_ms + 50_000
    assert (await two.claim(5)).claims == []  # a is held by h1, b is not due


async def test_the_limit_counts_claims_of_every_holder(redis_client: aioredis.Redis) -> None:
    for i in range(5):
        await mark(redis_client, member(f"s{i}"), quiet_ms=0)
    one, two = ledger(redis_client, "h1", limit=3), ledger(redis_client, "h2", limit=3)
    mine = (await one.claim(2)).claims
    assert len(mine) == 2
    assert len((await two.claim(2)).claims) == 1
    assert (await two.claim(2)).claims == []
    assert await one.done(mine[0], "clean")  # a slot frees up, for whoever asks
    assert len((await two.claim(2)).claims) == 1


async def test_a_claim_that_runs_out_is_taken_over(redis_client: aioredis.Redis) -> None:
    await mark(redis_client, member("s"), quiet_ms=0)
    crashed, other = ledger(redis_client, "h1", lease_ms=100), ledger(redis_client, "h2")
    [claim] = (await crashed.claim(1)).claims
    assert (await other.claim(1)).claims == []
    await asyncio.sleep(0.15)
    [taken] = (await other.claim(1)).claims
    assert taken.member == claim.member
    assert not await crashed.done(claim, "clean")  # too late: no longer its claim
    assert await crashed.renew([claim]) == {claim.member}
    assert await other.done(taken, "clean")
    assert await redis_client.zcard(KEYS.due) == 0


async def test_done_forgets_a_session_handed_over_unchanged(
        redis_client: aioredis.Redis) -> None:
    led = ledger(redis_client)
    await mark(redis_client, member("s"), quiet_ms=0)
    [claim] = (await led.claim(1)).claims
    assert await led.done(claim, "clean")
    for key in KEYS.all():
        assert not await redis_client.exists(key), key


async def test_a_session_written_during_its_round_stays_due(
        redis_client: aioredis.Redis) -> None:
    led = ledger(redis_client, quiet_ms=100, max_lag_ms=1_000)
    m = member("s")
    await mark(redis_client, m, quiet_ms=0)
    [claim] = (await led.claim(1)).claims
    claimed_at = await redis_ms(redis_client)
    await asyncio.sleep(0.02)
    await mark(redis_client, m)  # a write lands while the round runs
    assert await led.done(claim, "clean")
    due = await due_at(redis_client, m)
    dirty_since = await redis_client.zscore(KEYS.dirty, m)
    assert due is not None and dirty_since is not None
    assert claimed_at - 5 <= dirty_since <= claimed_at + 5  # lag counts from the round
    assert due <= await redis_ms(redis_client) + 100


async def test_a_failed_round_backs_off_and_writes_do_not_shorten_it(
        redis_client: aioredis.Redis) -> None:
    led = ledger(redis_client)
    m = member("s")
    await mark(redis_client, m, quiet_ms=0)
    [claim] = (await led.claim(1)).claims
    assert await led.done(claim, "retry", delay_ms=5_000)
    retry_at = await due_at(redis_client, m)
    await mark(redis_client, m, quiet_ms=0, max_lag_ms=0)
    assert await due_at(redis_client, m) == retry_at
    assert await redis_client.zscore(KEYS.dirty, m) is not None  # still behind
    state = await redis_client.hget(KEYS.state, m)
    assert state is not None and state.split()[-1] == b"1"  # one failure


async def test_settle_polls_again_later_and_gone_forgets(redis_client: aioredis.Redis) -> None:
    led = ledger(redis_client)
    m = member("s")
    await mark(redis_client, m, quiet_ms=0)
    [claim] = (await led.claim(1)).claims
    assert await led.done(claim, "settle", delay_ms=50, step=1)
    assert await redis_client.zscore(KEYS.dirty, m) is None  # handed over: not behind
    await asyncio.sleep(0.06)
    [poll] = (await led.claim(1)).claims
    assert (poll.step, poll.seq) == (1, 0)  # a poll: no write outstanding
    assert await led.done(poll, "gone")
    assert not await redis_client.exists(KEYS.due, KEYS.state)
