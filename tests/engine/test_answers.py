"""Warm GET answers kept and served again: only while the session, the query and the rules
are unchanged and coherence trusts the cached tail; never past a write, here or elsewhere."""

from __future__ import annotations

from typing import Any

from multidict import MultiDict

from proxy.codec.dialect import V0_14, V0_15
from proxy.coherence import Coherence
from proxy.engine.answers import MAX_ANSWER, Answers
from proxy.engine.cache import SessionCache, SessionTail
from proxy.http.appkeys import ENGINE
from proxy.localstack import Service
from proxy.store.keys import SessionKeys
from proxy.store.store import Meta
from tests import engine_fixtures as ef
from tests.conftest import ProxyFactory, app_of
from tests.engine_fixtures import WM, msg, msgs

own_redis = ef.own_redis


def tail(logical: str = "s") -> SessionTail:
    return SessionTail(SessionKeys.build("amp", logical), Meta(version=1, count=3))


def test_answers_are_bounded_by_bytes_oldest_out() -> None:
    cache = SessionCache(1 << 20, 100)
    answers = Answers(cache, Coherence(None), max_bytes=2 * (1000 + 500))  # type: ignore[arg-type]
    tails = [tail(f"s{i}") for i in range(5)]
    for i, t in enumerate(tails):
        answers.keep(answers.key(f"s{i}", MultiDict(a="1")), t, None, V0_14, b"x" * 1000)
    assert len(answers) == 2 and answers.bytes_used <= answers.max_bytes
    answers.keep(answers.key("big", {}), tails[0], None, V0_14, b"x" * (MAX_ANSWER + 1))
    assert len(answers) == 2  # too large to keep


def test_an_answer_needs_its_tail_cached_unchanged_and_trusted() -> None:
    cache = SessionCache(1 << 20, 100)
    answers = Answers(cache, Coherence(None))  # type: ignore[arg-type]  # trusts nothing
    t = tail()
    key = answers.key("s", {})
    answers.keep(key, t, None, V0_14, b"{}")
    assert answers.find(key, V0_14) is None and len(answers) == 0  # not cached: forgotten
    cache.put(t)
    answers.keep(key, t, None, V0_14, b"{}")
    assert answers.find(key, V0_14) is None  # cached, but coherence does not trust it
    t.pending = 1
    assert answers.find(key, V0_14) == b"{}"  # its own writes still landing: current
    assert answers.find(key, V0_15) is None  # other rules: forgotten
    answers.keep(key, t, None, V0_14, b"{}")
    t.meta = Meta(version=2, count=4)
    assert answers.find(key, V0_14) is None and len(answers) == 0


async def test_repeated_reads_are_served_again_until_a_write(
        proxy_factory: ProxyFactory, own_redis: Service) -> None:
    here = await proxy_factory(redis_url=own_redis.url)
    there = await proxy_factory(redis_url=own_redis.url)
    answers = app_of(here)[ENGINE].answers
    await ef.put_ok(here, "warm", {"messages": msgs(4)})
    query = "recent_messages_limit=2"
    first = await ef.get_ok(here, "warm", query)
    assert len(answers) == 1
    assert await ef.get_ok(here, "warm", query) == first
    await ef.put_ok(here, "warm", {"messages": msgs(5)})
    assert (await ef.get_ok(here, "warm", query))["messages"] == msgs(5)[-2:]
    # A write through another proxy ends this one's lease: the kept answer is not used.
    await ef.put_ok(there, "warm", {"messages": [*msgs(5), msg(5, "from there")]})
    assert (await ef.get_ok(here, "warm", query))["messages"][-1]["content"] == "from there"
    resp = await here.delete(f"{WM}warm")
    assert resp.status == 200
    assert (await here.get(f"{WM}warm?{query}")).status == 404


async def test_sessions_with_a_ttl_are_read_afresh(proxy_factory: ProxyFactory,
                                                   own_redis: Service) -> None:
    proxy = await proxy_factory(redis_url=own_redis.url)
    await ef.put_ok(proxy, "ttl", {"messages": msgs(2), "ttl_seconds": 100})
    got: list[Any] = [await ef.get_ok(proxy, "ttl") for _ in range(2)]
    assert got[0] == got[1] and got[0]["ttl_seconds"] == 100
    # Kept, but never trusted: an expiry announces nothing (the version is asked instead).
    answers = app_of(proxy)[ENGINE].answers
    key = answers.key("ttl", {})
    assert answers.find(key, app_of(proxy)[ENGINE].dialect) is None
