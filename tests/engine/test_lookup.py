"""The engine's side of 0.15.2's lookup by id: what a DELETE deletes (read from a real
proxy's store), and the scope of a session imported from a ``stored or query`` answer."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from proxy.codec import parse_query
from proxy.codec.dialect import V0_14, V0_15
from proxy.engine import lookup
from proxy.engine.engine import Engine
from proxy.errors import ForwardToUpstream
from proxy.http.appkeys import ENGINE
from proxy.store.keys import id_index_key, logical_key
from proxy.store.store import index_member
from tests.conftest import ProxyFactory, app_of
from tests.engine_fixtures import put_ok


def body(namespace: str | None, user_id: str | None) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi", "id": "m1",
                          "created_at": "2024-01-01T00:00:00Z"}],
            "namespace": namespace, "user_id": user_id}


@pytest.fixture
async def engine(proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> Engine:
    proxy = await proxy_factory()
    await put_ok(proxy, "one", body("nsA", "uA"))
    await put_ok(proxy, "two", body("n1", "u1"))
    await put_ok(proxy, "two", body("n2", "u1"))
    await put_ok(proxy, "here", body(None, None))
    engine: Engine = app_of(proxy)[ENGINE]
    return engine


async def target(engine: Engine, session_id: str, **query: str) -> object:
    found = await lookup.delete_target(engine, session_id, parse_query(query, "delete"))
    return None if found is None else (found[0].logical, found[1], found[2])


async def test_delete_targets(engine: Engine) -> None:
    assert await target(engine, "here") == ("here", ("here", None, None), True)  # exact
    assert await target(engine, "ONE") == ("nsA:uA:one", ("one", "nsA", "uA"), True)
    assert await target(engine, "one", user_id="UA") == (
        "nsA:uA:one", ("one", "nsA", "uA"), True)
    assert await target(engine, "two") is None  # several
    assert await target(engine, "two", namespace="N2") == (
        "n2:u1:two", ("two", "n2", "u1"), True)
    # Nothing here: the upstream's own rule decides about what only it holds.
    assert await target(engine, "none", namespace="n") == ("n:none", ("none", "n", None), False)


async def test_a_leftover_is_not_deleted_in_place_of_nothing(
        engine: Engine, redis_client: aioredis.Redis) -> None:
    stale = index_member("ghost", "gone", None)  # as if its session expired unseen
    await redis_client.sadd(id_index_key("amp", ("ghost", None, None)), stale)
    assert await target(engine, "ghost") == ("ghost", ("ghost", None, None), False)
    assert not await redis_client.exists(id_index_key("amp", ("ghost", None, None)))


def answer(namespace: str | None, user_id: str | None) -> bytes:
    """A GET 200 body as the upstream renders it (timestamps floored, data {})."""
    return orjson.dumps({
        "messages": [{"role": "user", "content": "hi", "id": "m1",
                      "created_at": "2024-01-01T00:00:00Z", "persisted_at": None,
                      "discrete_memory_extracted": "f"}],
        "memories": [], "data": {}, "context": None, "user_id": user_id, "tokens": 0,
        "session_id": "s", "namespace": namespace,
        "long_term_memory_strategy": {"strategy": "discrete", "config": {}},
        "ttl_seconds": None, "last_accessed": "2024-01-01T00:00:00Z",
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
        "context_percentage_total_used": None, "context_percentage_until_summarization": None})


def stored_scope(doc: bytes) -> tuple[str | None, str | None]:
    d = orjson.loads(doc)
    return d["namespace"], d["user_id"]


def test_an_import_keeps_the_stored_scope_under_0152() -> None:
    # PUT namespace X, GET user_id X: one key; 0.15.2 answers X and X.
    put, _ = lookup.imported(V0_15, answer("X", "X"), "s", None, "X")
    assert stored_scope(put.doc) == ("X", None)
    assert logical_key("s", "X", None) == logical_key("s", None, "X")
    put, _ = lookup.imported(V0_14, answer(None, "u"), "s", None, "u")
    assert stored_scope(put.doc) == (None, "u")  # 0.14.0: as answered


def test_an_answer_from_another_key_goes_to_the_upstream() -> None:
    with pytest.raises(ForwardToUpstream):
        lookup.imported(V0_15, answer("nsA", "uA"), "s", None, None)
    put, _ = lookup.imported(V0_14, answer(None, "uA"), "s", None, "uA")
    assert put.user_id == "uA"
