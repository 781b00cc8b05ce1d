"""Differential fuzzing: random, often invalid PUT bodies, content types and query strings,
sent to the upstream and through the proxy, get the same status and masked body; a
request that fails stores nothing on either side."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from proxy.localstack import Service
from tests.differential import WM, Sides, assert_same, stored_keys, upstream_keys, with_ttl

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
words = st.sampled_from(["hi", "  ", "", "one two three", "é ✓", "\n", "x" * 40])
stamps = st.sampled_from([
    "2024-01-01T00:00:00Z", "2024-01-01T00:00:00.5+01:00", "2024-01-01 00:00:00",
    "2024-01-02", "2099-01-01T00:00:00Z", "nope", 1704067200, 1704067200.75, None, "",
    "2024-01-01T00:00:00.1234567Z", True,
])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), text)
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3)
                           | st.dictionaries(text, kids, max_size=3), max_leaves=6)


def maybe(key: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just({}), values.map(lambda v: {key: v}))


def fields(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()})


message = fields(
    maybe("role", st.one_of(st.sampled_from(["user", "assistant", "tool", ""]), scalars)),
    maybe("content", st.one_of(words, scalars)),
    maybe("id", st.one_of(st.sampled_from(["a", "b", ""]), scalars)),
    maybe("created_at", stamps),
    maybe("persisted_at", stamps),
    maybe("discrete_memory_extracted", st.sampled_from(["t", "f", "x", None])),
    maybe("name", text),
)
memory = fields(
    maybe("id", st.sampled_from(["m1", "m2", "", None])),
    maybe("text", st.one_of(words, scalars)),
    maybe("memory_type", st.sampled_from(["semantic", "episodic", "message", "other"])),
    maybe("access_count", st.sampled_from([0, 3, -1, "2"])),
    maybe("topics", st.one_of(st.none(), st.lists(st.sampled_from(["a", "b,c"]), max_size=2))),
    maybe("pinned", st.one_of(st.booleans(), scalars)),
)
body_dict = fields(
    maybe("messages", st.one_of(st.lists(message, max_size=4), scalars)),
    maybe("memories", st.one_of(st.lists(memory, max_size=2), scalars)),
    maybe("data", st.one_of(st.dictionaries(text, json_values, max_size=3), json_values)),
    maybe("context", st.one_of(words, scalars)),
    maybe("user_id", st.one_of(st.sampled_from(["SIDE-u", ""]), scalars)),
    maybe("namespace", st.one_of(st.sampled_from(["SIDE-n", ""]), scalars)),
    maybe("tokens", st.sampled_from([0, 5, -2, "7", 1.5, 2.0, None, "x"])),
    maybe("ttl_seconds", st.sampled_from([None, 100, "100", 0, -1, 1.0, "soon"])),
    maybe("long_term_memory_strategy", st.sampled_from(
        [None, {"strategy": "summary"}, {"strategy": "x"}, {"strategy": "custom", "config": 1}])),
    maybe("created_at", stamps),
    maybe("last_accessed", stamps),
)
bodies = st.one_of(
    body_dict.map(orjson.dumps),
    json_values.map(orjson.dumps),
    st.binary(max_size=20),
    body_dict.map(lambda d: orjson.dumps(d)[:-3]),  # truncated JSON
)
content_types = st.sampled_from(["application/json", "application/json", "application/json",
                                 "application/vnd.api+json", "text/plain", None])
INTS = ["0", "5", "20", "-3", "03", "+3", "2.0", "2.5", "", "abc", "1_0", "100", "16000",
        "99999999999999999999"]


def params(ints: list[str], scopes: list[str]) -> st.SearchStrategy[tuple[str, str]]:
    return st.one_of(
        st.tuples(st.sampled_from(["context_window_max", "recent_messages_limit"]),
                  st.sampled_from(ints)),
        st.tuples(st.just("model_name"), st.sampled_from(["gpt-4", "gpt-3.5-turbo", "gpt-5", ""])),
        st.tuples(st.sampled_from(["namespace", "user_id"]),
                  st.sampled_from(scopes)),
    )


def query_strings(ints: list[str], scopes: list[str]) -> st.SearchStrategy[str]:
    return st.lists(params(ints, scopes), max_size=4).map(
        lambda ps: "&".join(f"{k}={quote(v, safe='')}" for k, v in ps))


# A PUT query with percent-encoded characters is handed off decoded (see
# test_parity.test_put_query_with_encoded_characters), so PUT queries keep to plain ones.
SCOPES = ["SIDE-n", "SIDE-u", "", "EDIS-N"]
put_queries = query_strings(INTS, SCOPES)
get_queries = query_strings([*INTS, " 4", "\t5\xa0"], [*SCOPES, "SIDE n", "SIDE-é"])

counter = itertools.count()


@pytest.fixture
async def up_redis(upstream_redis: Service) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(upstream_redis.url)
    yield client
    await client.aclose()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies, content_type=content_types, put_qs=put_queries, get_qs=get_queries)
# Found by longer runs of this test: a null tokens field failed an assertion here (a 500);
# a ttl past EXPIRE's range is a 500 upstream that leaves part of the session stored.
@example(body=b'{"tokens":null}', content_type="application/json", put_qs="", get_qs="")
@example(body=b'{"ttl_seconds":9223370240158834.0}', content_type="application/json",
         put_qs="", get_qs="")
async def test_fuzz_put_then_get(direct: aiohttp.ClientSession, proxy: TestClient[Any, Any],
                                 redis_client: aioredis.Redis, up_redis: aioredis.Redis,
                                 body: bytes, content_type: str | None, put_qs: str,
                                 get_qs: str) -> None:
    sides = Sides(direct, proxy)  # a fresh session id per example
    sid = f"SIDE-f{next(counter)}"
    before = await stored_keys(redis_client)
    may_expire = await with_ttl(redis_client, before)  # earlier examples' sessions with a TTL
    want, got = await sides.both("PUT", f"{WM}{sid}?{put_qs}", body, content_type)
    assert_same(want, got, f"PUT ?{put_qs} {content_type} {body!r}")
    if want.status != 200:
        # Nothing added, nothing removed but keys that expired meanwhile.
        after = await stored_keys(redis_client)
        assert after <= before, sorted(after - before)
        assert before - after <= may_expire, sorted(before - after - may_expire)
        assert await upstream_keys(up_redis, f"working_memory:*{sides.tokens['proxy']}*") == []
    assert await upstream_keys(up_redis, "working_memory:*amp-scratch-*") == []
    if want.status >= 500:
        # The upstream may have stored part of what it then failed (a ttl_seconds past
        # Redis' EXPIRE range: the document is set, the EXPIRE fails). The proxy answers
        # the same and stores nothing, deliberately (README, "Deliberately different").
        return
    want, got = await sides.both("GET", f"{WM}{sid}?{get_qs}")
    assert_same(want, got, f"GET ?{get_qs} after PUT ?{put_qs} {content_type} {body!r}")
