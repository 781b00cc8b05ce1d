"""Drop-in parity: the same request sequences, sent straight to agent-memory-server and
through the proxy, get the same status, headers and (masked) bodies.

Sections follow ../shared/upstream-contract.md; ``Sides`` (tests/differential.py) keeps
the two sides' sessions apart. Deliberate differences are asserted as such, at the end.
The suite runs against the default upstream version and, in test_versions_parity.py,
against the others; what differs between versions is asserted through ``dialect``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from proxy.codec.dialect import Dialect
from proxy.localstack import Service
from tests.differential import (
    WM,
    Sides,
    assert_nothing_stored,
    assert_same,
    j,
    upstream_keys,
)


@pytest.fixture
async def up_redis(upstream_redis: Service) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(upstream_redis.url)
    yield client
    await client.aclose()




def msg(i: int, content: str, role: str = "user", **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, "id": f"t{i}",
            "created_at": f"2024-01-01T00:00:{i:02d}Z", **extra}


# Messages of 7, 5, 4 and 3 tokens (§6.2).
FOUR = [msg(1, "one two three four five"), msg(2, "six seven eight", "assistant"),
        msg(3, "nine ten"), msg(4, "eleven", "tool")]


# --- §9 examples ------------------------------------------------------------------------


async def test_e1_to_e3_e11_e14_e15_scoping(sides: Sides, dialect: Dialect) -> None:
    body = j({"messages": [{"role": "user", "content": "Hi, we am Ana"}],
              "user_id": "SIDE-ana", "namespace": "SIDE-app"})
    put = await sides.same("PUT", WM + "SIDE-ex1", body)
    assert put.status == 200 and dict(put.headers).get("x-deprecation-warning")
    # 0.14.0: the exact key only; 0.15.2 finds the session by its id.
    assert (await sides.same("GET", WM + "SIDE-ex1")).status == (
        200 if dialect.lookup_by_id else 404)
    got = await sides.same("GET", WM + "SIDE-ex1?namespace=SIDE-app&user_id=SIDE-ana"
                           "&context_window_max=100")
    assert got.json()["context_percentage_total_used"] == 7.000000000000001
    assert got.json()["data"] == {}
    await sides.same("GET", WM + "SIDE-ex-missing")
    await sides.same("DELETE", WM + "SIDE-ex-missing")
    await sides.same("DELETE", WM + "SIDE-ex1")  # unscoped: a no-op, or deleted by id
    got = await sides.same("GET", WM + "SIDE-ex1?namespace=SIDE-app&user_id=SIDE-ana")
    assert got.status == (404 if dialect.lookup_by_id else 200)
    await sides.same("DELETE", WM + "SIDE-ex1?namespace=SIDE-app&user_id=SIDE-ana")
    await sides.same("GET", WM + "SIDE-ex1?namespace=SIDE-app&user_id=SIDE-ana")


async def test_e4_to_e6_truncation_and_percentages(sides: Sides) -> None:
    body = j({"messages": [msg(3, "one two three four five"),
                           msg(1, "six seven eight", "assistant"),
                           {**msg(2, "nine ten"), "created_at": "2024-01-01T00:00:02+00:00"}],
              "data": {"k": [1, None]}, "ttl_seconds": 600, "tokens": 5})
    put = await sides.same("PUT", WM + "SIDE-ex2?context_window_max=100", body)
    assert put.json()["context_percentage_until_summarization"] == 22.857142857142858
    for qs in ("recent_messages_limit=2", "context_window_max=12", "recent_messages_limit=10",
               "recent_messages_limit=0", "recent_messages_limit=-1",
               "recent_messages_limit=2&context_window_max=5"):
        await sides.same("GET", WM + "SIDE-ex2?" + qs)


@pytest.mark.parametrize("qs", [
    "context_window_max=100", "context_window_max=15", "context_window_max=10",
    "context_window_max=5", "context_window_max=1", "context_window_max=0",
    "context_window_max=-5", "context_window_max=28", "model_name=gpt-4",
    "model_name=gpt-3.5-turbo", "model_name=gpt-4&context_window_max=0",
    "model_name=claude-opus-4-5&context_window_max=12",
])
async def test_e6_truncation_table(sides: Sides, qs: str) -> None:
    await sides.same("PUT", WM + "SIDE-tr", j({"messages": FOUR}))
    await sides.same("GET", WM + "SIDE-tr?" + qs)
    await sides.same("PUT", WM + "SIDE-tr2?" + qs, j({"messages": FOUR[3:]}))


@pytest.mark.parametrize("body", [
    b'{"messages": [',  # E7
    j({"messages": [{"role": "user", "content": "  ", "id": "m-empty",
                     "created_at": "2024-01-01T00:00:00Z"}]}),  # E8
    j({"messages": "hello", "ttl_seconds": "soon"}),  # E9
    j({"messages": [{"role": "user", "content": ""}]}),  # 400 with a generated id
    j({"messages": [msg(1, "ok"), msg(2, "\n\t")]}),
    j({"memories": [{"id": "", "text": "fact"}]}),
    j({"memories": [{"id": "m", "text": ""}]}),
    j({"memories": [{"text": 5}]}),
    j({"messages": [{**msg(1, "x"), "created_at": "2099-01-01T00:00:00Z"}]}),
    j({"messages": [{**msg(1, "x"), "created_at": None}]}),
    j({"messages": [{**msg(1, "x"), "discrete_memory_extracted": "x"}]}),
    j({"messages": [{"content": "no role"}]}),
    j({"messages": [{"role": "user", "content": None}]}),
    j({"messages": [{**msg(1, "x"), "id": None}]}),
    j({"data": {"a": None}}),
    j({"data": [1]}),
    j({"context": 5, "user_id": 7}),
    j({"tokens": 1.5}),
    j({"long_term_memory_strategy": {"strategy": "other"}}),
    j({"long_term_memory_strategy": None}),
    j({"last_accessed": None}),
    j({"created_at": "not a date"}),
    j(None), j([]), j("text"), b"",
])
async def test_invalid_put_bodies(sides: Sides, up_redis: aioredis.Redis,
                                  redis_client: aioredis.Redis, body: bytes) -> None:
    """E7-E9 and friends: the upstream's own error body; nothing stored on either side."""
    want, got = await sides.both("PUT", WM + "SIDE-bad", body)
    assert_same(want, got)
    assert want.status in (400, 422)
    await assert_nothing_stored(redis_client, up_redis, sides.tokens["proxy"])


@pytest.mark.parametrize("qs", [
    "model_name=gpt-5", "context_window_max=2.5", "context_window_max=abc",
    "context_window_max=", "recent_messages_limit=1.5", "model_name=",
])
async def test_e10_invalid_get_queries(sides: Sides, qs: str) -> None:
    await sides.same("PUT", WM + "SIDE-q", j({"messages": FOUR}))
    await sides.same("GET", WM + "SIDE-q?" + qs)


async def test_e12_e13_list_and_limits(sides: Sides) -> None:
    await sides.same("PUT", WM + "SIDE-ex1", j({"namespace": "SIDE-app"}))
    for qs in ("namespace=SIDE-app&limit=5", "namespace=SIDE-app&limit=0",
               "namespace=SIDE-app&limit=101", "namespace=SIDE-app&offset=-1",
               "namespace=SIDE-app&limit=abc", "namespace=SIDE-app&offset=5",
               "namespace=SIDE-app&limit=03&offset=+0"):
        await sides.same("GET", WM + "?" + qs)


async def test_e16_summarization_outcome_is_the_upstreams(
        sides: Sides, up_redis: aioredis.Redis, redis_client: aioredis.Redis) -> None:
    # T = 16 > int(20 * 0.7) = 14: the upstream summarizes; without an LLM it answers 500.
    over = j({"messages": [msg(1, "one two three four five"), msg(2, "six seven eight"),
                           msg(3, "nine ten eleven twelve")]})
    want, got = await sides.both("PUT", WM + "SIDE-ex4?context_window_max=20", over)
    assert_same(want, got)
    assert want.status == 500 and want.body == b"Internal Server Error"
    assert ("content-type", "text/plain; charset=utf-8") in got.headers
    await assert_nothing_stored(redis_client, up_redis, sides.tokens["proxy"])
    await sides.same("GET", WM + "SIDE-ex4")
    # Exactly at the threshold (T == 7 + 4 + 3 == 14) there is no summarization: the proxy answers.
    at = j({"messages": [msg(1, "one two three four five"), msg(2, "nine ten"),
                         msg(3, "eleven")]})
    put = await sides.same("PUT", WM + "SIDE-ex4?context_window_max=20", at)
    assert put.status == 200
    assert await redis_client.keys("amp:*")
    # context_window_max=0: thr 0, so two messages summarize (500), one does not.
    await sides.same("PUT", WM + "SIDE-ex4b?context_window_max=0", j({"messages": FOUR[:2]}))
    await sides.same("PUT", WM + "SIDE-ex4c?context_window_max=0", j({"messages": FOUR[:1]}))
    await sides.same("GET", WM + "SIDE-ex4b")
    await sides.same("GET", WM + "SIDE-ex4c")


async def test_summarization_default_limit_11200(sides: Sides, up_redis: aioredis.Redis,
                                                redis_client: aioredis.Redis) -> None:
    word = "hello "  # one token each, plus "user:" and the first word's prefix
    under = j({"messages": [msg(1, word * 11100)]})
    put = await sides.same("PUT", WM + "SIDE-big", under)
    assert put.status == 200
    await sides.same("GET", WM + "SIDE-big?recent_messages_limit=1")
    over = j({"messages": [msg(1, word * 5700), msg(2, word * 5700)]})
    want, got = await sides.both("PUT", WM + "SIDE-big2", over)
    assert_same(want, got)
    assert want.status == 500
    await sides.same("GET", WM + "SIDE-big2")


async def test_e17_e18_memories_client_then_full_shape(sides: Sides, dialect: Dialect
                                                      ) -> None:
    body = j({"memories": [{"text": "Ana likes tea", "memory_type": "semantic"},
                           {"id": "full", "text": "x", "pinned": True, "access_count": 3},
                           {"id": "neg", "text": "y", "access_count": -1},
                           {"id": "odd", "text": "z", "extraction_strategy_config": {"a": 1},
                            "topics": ["a,b"], "event_date": "2024-01-01T00:00:00Z"}]})
    put = await sides.same("PUT", WM + "SIDE-ex5", body)
    assert "pinned" not in put.json()["memories"][0]
    got = await sides.same("GET", WM + "SIDE-ex5")
    if dialect.comma_tags_unreadable:  # "topics": ["a,b"] fails 0.15.2's MemoryRecord
        assert got.status == 404
    else:
        assert got.json()["memories"][0]["pinned"] is False
    # The same memories without the comma read back full-shaped in both.
    fine = j({"memories": [{"text": "Ana likes tea", "memory_type": "semantic"},
                           {"id": "odd", "text": "z", "topics": ["a", "b"]}]})
    await sides.same("PUT", WM + "SIDE-ex5b", fine)
    got = await sides.same("GET", WM + "SIDE-ex5b")
    assert got.json()["memories"][0]["pinned"] is False


# --- §1 conventions -----------------------------------------------------------------------


async def test_slashes_methods_and_encoded_ids(sides: Sides) -> None:
    await sides.same("PUT", WM + "SIDE-m%20space", j({"messages": FOUR[:1]}))
    await sides.same("GET", WM + "SIDE-m%20space")
    await sides.same("GET", "/v1/working-memory")
    await sides.same("GET", WM + "SIDE-m%20space/")
    for method in ("POST", "PATCH", "HEAD"):
        await sides.same(method, WM + "SIDE-m%20space")
        await sides.same(method, WM)
    for sid in ("SIDE-%C3%A9", "SIDE-%3Fq", "SIDE:colon.dot", "SIDE-%E2%9C%93"):
        await sides.same("PUT", WM + sid, j({"messages": FOUR[:1], "context": "é ✓"}))
        await sides.same("GET", WM + sid)
        await sides.same("DELETE", WM + sid)
        await sides.same("GET", WM + sid)


async def test_repeated_and_lax_params(sides: Sides) -> None:
    await sides.same("PUT", WM + "SIDE-p?context_window_max=5&context_window_max=100",
                     j({"messages": FOUR, "namespace": "SIDE-n"}))
    for qs in ("context_window_max=5&context_window_max=100", "context_window_max=03",
               "context_window_max=+3", "context_window_max=2.0", "context_window_max=1.0",
               "context_window_max=-0", "recent_messages_limit=+2",
               "namespace=SIDE-n&namespace=", "namespace=&namespace=SIDE-n",
               "model_name=gpt-5&model_name=gpt-4", "context_window_max=99999999999999999999",
               "recent_messages_limit=1000000000000000000", "context_window_max=%201_0%20",
               "model_name=gpt-4&context_window_max=9999999999999999"):
        await sides.same("GET", WM + "SIDE-p?namespace=SIDE-n&" + qs)
    await sides.same("PUT", WM + "SIDE-p2?model_name=gpt-4&user_id=x&namespace=y",
                     j({"messages": FOUR}))
    await sides.same("GET", WM + "SIDE-p2")
    await sides.same("DELETE", WM + "SIDE-p2?model_name=nope&context_window_max=abc")
    await sides.same("GET", WM + "SIDE-p2")


# --- §2 data shapes ---------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"data": None}, {"data": {}}, {"data": {"k": [1, None], "n": {"x": None}}},
    {"data": {"i64": 9223372036854775807, "neg": -9223372036854775808, "f": 1e-7,
               "g": 1.5e-5, "h": 1e16, "k": 1.2345678901234568e+17, "m": 0.1}},
    {"data": {"f": 1.5, "e": 1e-7, "s": "é"}}, {"tokens": "7"}, {"tokens": -3},
    {"ttl_seconds": "100"}, {"context": ""}, {"user_id": ""}, {"namespace": ""},
    {"session_id": "other", "extra": 1},
    {"long_term_memory_strategy": {"strategy": "summary", "config": {"n": [1]}}},
    {"created_at": "2024-01-01T00:00:00.999999+01:00", "last_accessed": "2024-01-02"},
    {"created_at": 1704067200.75, "last_accessed": "2024-01-01 10:00:05+02:00",
     "updated_at": "2020-01-01T00:00:00Z"},
    {"created_at": "2024-01-01T00:00:03", "last_accessed": "2024-01-01T00:00:03.1234567Z"},
    {"messages": [{"role": "", "content": "x", "id": ""}]},
    {"messages": [msg(1, "a", name="n", tool_calls=[]), {**msg(2, "b"), "persisted_at":
                  "2024-01-01T00:00:00Z", "discrete_memory_extracted": "t"}]},
    {"messages": [{**msg(1, "a"), "created_at": 1704067200.5},
                  {**msg(2, "b"), "created_at": "2024-01-01"},
                  {**msg(3, "c"), "created_at": "2024-01-01T00:00:00+05:30"}]},
    {"messages": [{"role": "user", "content": "no stamp", "id": "x"}, msg(2, "stamped")]},
])
async def test_put_then_get_shapes(sides: Sides, body: dict[str, Any] | str) -> None:
    """data null vs {}, timestamps at full precision on PUT and floored UTC on GET, ..."""
    raw = body if isinstance(body, str) else j(body)
    put = await sides.same("PUT", WM + "SIDE-shape?model_name=gpt-4", raw)
    assert put.status == 200
    fields = body if isinstance(body, dict) else {}
    scope = {k: fields[k] for k in ("namespace", "user_id") if fields.get(k)}
    qs = "&".join(f"{k}={v}" for k, v in scope.items())
    await sides.same("GET", WM + "SIDE-shape?" + qs)
    await sides.same("GET", WM + "SIDE-shape?recent_messages_limit=5&" + qs)


async def test_integers_beyond_64_bits_in_data(sides: Sides) -> None:
    raw = '{"data": {"big": 1180591620717411303424, "u64": 18446744073709551615}}'
    await sides.same("PUT", WM + "SIDE-bigint", raw)
    await sides.same("GET", WM + "SIDE-bigint")


@pytest.mark.parametrize("content_type", [
    "application/json", "application/vnd.api+json", "application/json; charset=utf-8",
    None, "text/plain", "application/x-www-form-urlencoded",
])
async def test_content_types(sides: Sides, content_type: str | None) -> None:
    await sides.same("PUT", WM + "SIDE-ct", j({"messages": FOUR[:1]}), content_type)
    await sides.same("GET", WM + "SIDE-ct")


# --- §4 PUT semantics ---------------------------------------------------------------------


async def test_whole_replace_and_regenerated_ids(sides: Sides) -> None:
    first = {"messages": [{"role": "user", "content": "a"}, msg(2, "b")], "context": "c",
             "data": {"x": 1}, "tokens": 3, "memories": [{"id": "m", "text": "t"}]}
    ids = []
    for side in ("direct", "proxy"):
        a = await sides.one(side, "PUT", WM + "SIDE-r", j(first))
        b = await sides.one(side, "PUT", WM + "SIDE-r", j(first))
        ids.append((a.json(), b.json()))
    await sides.same("PUT", WM + "SIDE-r", j({"messages": [msg(5, "only")]}))
    await sides.same("GET", WM + "SIDE-r")
    await sides.same("PUT", WM + "SIDE-r", j({}))
    await sides.same("GET", WM + "SIDE-r")


async def test_ttl(sides: Sides) -> None:
    for ttl in (0, -5):
        await sides.same("PUT", WM + "SIDE-ttl", j({"messages": FOUR, "ttl_seconds": ttl}))
        await sides.same("GET", WM + "SIDE-ttl")
        await sides.same("GET", WM + "?namespace=SIDE-none")
    await sides.same("PUT", WM + "SIDE-ttl2", j({"ttl_seconds": 1000, "namespace": "SIDE-t"}))
    await sides.same("PUT", WM + "SIDE-ttl2", j({"namespace": "SIDE-t"}))
    got = await sides.same("GET", WM + "SIDE-ttl2?namespace=SIDE-t")
    assert got.json()["ttl_seconds"] is None
    await sides.same("GET", WM + "?namespace=SIDE-t")


async def test_ttl_survives_reput_without_it(sides: Sides, up_redis: aioredis.Redis,
                                             redis_client: aioredis.Redis) -> None:
    await sides.same("PUT", WM + "SIDE-ttl3", j({"ttl_seconds": 1000}))
    await sides.same("PUT", WM + "SIDE-ttl3", j({"messages": FOUR}))
    up_ttl = await up_redis.ttl(f"working_memory:{sides.tokens['direct']}-ttl3")
    assert 900 < up_ttl <= 1000
    keys = cast(list[bytes], await redis_client.keys("amp:{*}:*"))
    data = [k for k in keys if not k.endswith(b":rl")]
    ttls = [await redis_client.ttl(k) for k in data]  # (read leases expire on their own)
    assert ttls and all(900 < t <= 1000 for t in ttls)


# --- §5.1 key scheme ---------------------------------------------------------------------


async def test_key_collisions(sides: Sides, dialect: Dialect) -> None:
    await sides.same("PUT", WM + "SIDE-col", j({"messages": FOUR[:1], "namespace": "SIDE-x"}))
    got = await sides.same("GET", WM + "SIDE-col?user_id=SIDE-x")
    # 0.14.0 echoes the query's namespace and the stored user_id; 0.15.2 `stored or query`.
    scope = ("SIDE-x", "SIDE-x") if dialect.scope_from_store else (None, None)
    assert got.status == 200 and (got.json()["namespace"], got.json()["user_id"]) == scope
    await sides.same("GET", WM + "SIDE-col?namespace=SIDE-x&user_id=")
    await sides.same("GET", WM + "SIDE-col?namespace=EDIS-X")  # keys are case-sensitive
    await sides.same("PUT", WM + "SIDE-col2", j({"messages": FOUR[:2], "namespace": "SIDE-a:b"}))
    await sides.same("GET", WM + "SIDE-col2?namespace=SIDE-a&user_id=b")
    await sides.same("DELETE", WM + "SIDE-col2?user_id=SIDE-a:b")
    await sides.same("GET", WM + "SIDE-col2?namespace=SIDE-a:b")
    await sides.same("DELETE", WM + "SIDE-col?user_id=SIDE-x")
    await sides.same("GET", WM + "SIDE-col?namespace=SIDE-x")


# --- §3.1 list ----------------------------------------------------------------------------


async def test_list_order_filters_and_paging(sides: Sides) -> None:
    ns = "SIDE-ord"
    for sid, extra in (("a", {}), ("b", {"user_id": "SIDE-u1"}), ("c", {"user_id": "SIDE-u2"}),
                       ("d", {"user_id": "SIDE-u1,SIDE-u3"})):
        await sides.same("PUT", WM + f"SIDE-o-{sid}", j({"namespace": ns, **extra}))
    await sides.same("PUT", WM + "SIDE-o-a", j({"namespace": ns}))  # moves to the end
    await sides.same("PUT", WM + "SIDE-o-a", j({"namespace": "SIDE-ord2"}))  # same id twice
    for qs in ("namespace=SIDE-ord", "namespace=EDIS-ORD", "namespace=SIDE-ord&limit=2",
               "namespace=SIDE-ord&limit=2&offset=2", "namespace=SIDE-ord&offset=9",
               "namespace=SIDE-ord&user_id=SIDE-u1", "user_id=SIDE-u3", "namespace=SIDE*",
               "namespace=SIDE-ord2", "namespace=SIDE-ord&user_id=SIDE-u1,SIDE-u3",
               "namespace=SIDE-ord&namespace=SIDE-ord2", "namespace=&user_id=SIDE-u2"):
        await sides.same("GET", WM + "?" + qs)
    await sides.same("DELETE", WM + "SIDE-o-b?namespace=SIDE-ord&user_id=SIDE-u1")
    await sides.same("GET", WM + "?namespace=SIDE-ord")


async def test_unfiltered_list(sides: Sides, up_redis: aioredis.Redis) -> None:
    for key in await upstream_keys(up_redis, "working_memory:*"):
        if key != b"working_memory:migration:complete":
            await up_redis.delete(key)
    await sides.same("GET", WM)
    for i in range(3):
        await sides.same("PUT", WM + f"SIDE-all{i}", j({"messages": FOUR[:1]}))
    await sides.same("GET", WM)
    await sides.same("GET", WM + "?limit=1&offset=1")


# --- hand-offs leave nothing behind ---------------------------------------------------------


async def test_handed_off_success_is_stored_only_in_the_proxy(
        sides: Sides, up_redis: aioredis.Redis, redis_client: aioredis.Redis) -> None:
    # A lax-typed body the fast path leaves to the upstream, answered 200.
    body = j({"messages": FOUR[:2], "tokens": "7", "ttl_seconds": "100",
              "memories": [{"id": "m", "text": "t", "access_count": -1}]})
    await sides.same("PUT", WM + "SIDE-h", body)
    await sides.same("GET", WM + "SIDE-h")
    assert await upstream_keys(up_redis, f"working_memory:*{sides.tokens['proxy']}*") == []
    assert await upstream_keys(up_redis, "working_memory:*amp-scratch-*") == []
    assert await redis_client.keys("amp:*")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_encoded_slash_never_matches(sides: Sides, method: str) -> None:
    await sides.same(method, WM + "SIDE%2Fslash", j({}) if method == "PUT" else None)


@pytest.mark.parametrize("qs", ["context_window_max=%204", "model_name=gpt%205"])
async def test_put_query_with_encoded_characters(sides: Sides, qs: str) -> None:
    await sides.same("PUT", WM + "SIDE-enc?" + qs, b'{"messages": "x"}')


# --- deliberate differences ------------------------------------------------------------------


async def test_difference_future_epoch_poisons_only_upstream(
        sides: Sides, up_redis: aioredis.Redis, redis_client: aioredis.Redis) -> None:
    """§4.6: a future epoch created_at gives 500 on both; the upstream stores the poisoned
    document anyway (listed, never readable), the proxy stores nothing."""
    body = j({"messages": [{**msg(1, "x"), "created_at": 4102444800}], "namespace": "SIDE-poi"})
    want, got = await sides.both("PUT", WM + "SIDE-poison", body)
    assert_same(want, got)
    assert want.status == 500
    await sides.same("GET", WM + "SIDE-poison?namespace=SIDE-poi")
    listed = [(await sides.one(s, "GET", WM + "?namespace=SIDE-poi")).json()
              for s in ("direct", "proxy")]
    assert listed == [{"sessions": ["SIDE-poison"], "total": 1}, {"sessions": [], "total": 0}]
    await assert_nothing_stored(redis_client, up_redis, sides.tokens["proxy"])
