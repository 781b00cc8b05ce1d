"""The id index on a real redis-server: TAG tokenization as RediSearch 2.10 does it (the
cases of the 0.15.2 notes, §2.3), lookups of none / one / several, leftovers, backfill."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis

from proxy.store.idindex import (
    AMBIGUOUS,
    NONE,
    Found,
    IdIndex,
    combos,
    query_combo,
    query_tag,
    tag_matches,
    tags,
)
from proxy.store.keys import SessionKeys, id_index_built_key, id_index_key, logical_key
from proxy.store.store import index_member


@pytest.mark.parametrize(("stored", "expected"), [
    ("fb1", ["fb1"]), ("FB1", ["fb1"]), ("x,y", ["x", "y"]), (" pad ", ["pad"]),
    ("a|b", ["a|b"]), ("star*x", ["star*x"]), ("m:n.o", ["m:n.o"]), ("CAFÉ", ["cafÉ"]),
    ("Straße", ["straße"]), ("a, ,b,", ["a", "b"]), ("n s", ["n s"]), ("", []), (None, []),
])
def test_stored_values_split_at_commas_trimmed_and_ascii_lowercased(
        stored: str | None, expected: list[str]) -> None:
    assert tags(stored) == expected


@pytest.mark.parametrize(("queried", "expected"), [
    ("FB1", "fb1"), ("STAR*X", "star*x"), ("star*", "star*"), ("CAFÉ", "cafÉ"),
    ("x,y", None), ("PAD ", None), (" pad", None), ("n s", "n s"),
])
def test_queried_values_are_lowercased_but_neither_split_nor_trimmed(
        queried: str, expected: str | None) -> None:
    assert query_tag(queried) == expected


def test_filters_match_like_the_upstreams_tag_search() -> None:
    assert tag_matches("a,b", "B") and tag_matches(None, None) and tag_matches("x", "")
    assert not tag_matches("a,b", "a,b") and not tag_matches(None, "x")
    assert not tag_matches("café", "CAFÉ") and tag_matches("Straße", "straße")
    assert query_combo("FB1", "", None) == ("fb1", None, None)
    assert query_combo("fb1", "NSA", "uA") == ("fb1", "nsa", "ua")
    assert query_combo("x,y", None, None) is None and query_combo("a", "b,c", None) is None


def test_a_session_is_filed_under_every_combination_of_its_tags() -> None:
    assert combos(index_member("s", None, None)) == [("s", None, None)]
    assert sorted(combos(index_member("S", "a,b", "u")), key=str) == sorted([
        ("s", None, None), ("s", None, "u"), ("s", "a", None), ("s", "a", "u"),
        ("s", "b", None), ("s", "b", "u")], key=str)


async def store_session(client: aioredis.Redis, index: IdIndex, session_id: str,
                        namespace: str | None, user_id: str | None) -> bytes:
    """What a write does for the index: the meta's ix, plus the id index upkeep."""
    member = index_member(session_id, namespace, user_id)
    meta = SessionKeys.build("amp", logical_key(session_id, namespace, user_id)).meta
    async with client.pipeline(transaction=False) as pipe:
        pipe.hset(meta, "ix", member)
        index.queue_add(pipe, member)
        await pipe.execute()
    return member


async def test_lookups_find_none_one_or_several(redis_client: aioredis.Redis) -> None:
    index = IdIndex(redis_client, "amp")
    a = await store_session(redis_client, index, "amb", "n1", "u1")
    await store_session(redis_client, index, "amb", "n2", "u1")
    one = await store_session(redis_client, index, "fb1", "nsA", "uA")
    assert await index.find("FB1", None, None) == Found(one)
    assert (await index.find("fb1", None, None)).logical == "nsA:uA:fb1"
    assert await index.find("fb1", "NSA", "") == Found(one)
    assert await index.find("fb1", "other", None) == NONE
    assert await index.find("amb", None, None) == AMBIGUOUS
    assert await index.find("amb", None, "u1") == AMBIGUOUS
    assert await index.find("amb", "n1", None) == Found(a)
    assert await index.find("x,y", None, None) == NONE
    assert Found(a).scope == ("n1", "u1", "amb")


async def test_leftovers_are_dropped_when_found(redis_client: aioredis.Redis) -> None:
    index = IdIndex(redis_client, "amp")
    gone = await store_session(redis_client, index, "s", "n1", None)
    live = await store_session(redis_client, index, "s", "n2", None)
    await redis_client.delete(SessionKeys.build("amp", "n1:s").meta)  # expired, unseen
    assert await index.find("s", None, None) == Found(live)
    assert await redis_client.smembers(id_index_key("amp", ("s", None, None))) == {live}
    assert not await redis_client.exists(id_index_key("amp", ("s", "n1", None)))
    await index.forget(live)
    assert await index.find("s", None, None) == NONE
    assert gone != live


async def test_backfill_indexes_what_the_list_index_holds_once(
        redis_client: aioredis.Redis) -> None:
    index = IdIndex(redis_client, "amp")
    members = [index_member(f"s{i}", "ns", None) for i in range(1203)]
    await redis_client.zadd("amp:index", {m: i for i, m in enumerate(members)})
    assert await index.backfill(["amp:index"]) == 1203
    assert await redis_client.get(id_index_built_key("amp")) == b"1"
    assert await index.find("S1202", "NS", None) == Found(members[-1])
    assert await index.backfill(["amp:index"]) == 0  # built already
    await index.build(["amp:index"])
    assert orjson.loads(members[0]) == ["ns", None, "s0"]
