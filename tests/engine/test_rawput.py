"""The PUT that resends its session, proven from the raw body: the same answers as the real
upstream (side by side), on the path taken only when the proof holds, and whole parsing
whenever anything is off (nested or duplicate ``messages`` keys, escapes, whitespace)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from proxy.engine import engine as engine_module
from proxy.engine.rawput import put_repeating
from proxy.http.appkeys import CACHE, ENGINE
from proxy.localstack import Service
from tests import engine_fixtures as ef
from tests.conftest import ProxyFactory, app_of
from tests.differential import WM, Sides
from tests.engine_fixtures import Message, msg, msgs

own_redis = ef.own_redis
BIG = ef.BIG


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per PUT: whether the raw path answered it."""
    seen: list[bool] = []

    async def spy(*args: Any, **kwargs: Any) -> Any:
        result = await put_repeating(*args, **kwargs)
        seen.append(result is not None)
        return result

    monkeypatch.setattr(engine_module, "put_repeating", spy)
    return seen


@pytest.fixture
def sides(direct: aiohttp.ClientSession, proxy: TestClient[Any, Any]) -> Sides:
    return Sides(direct, proxy)


def short(i: int) -> Message:
    """A message as agent-memory-client sends it: no persisted_at, so not canonical."""
    return {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} ok",
            "id": f"s{i}", "created_at": ef.stamp(i), "discrete_memory_extracted": "f"}


def body(messages: list[Message], **fields: Any) -> bytes:
    return orjson.dumps({"messages": messages, **fields})


async def test_resent_sessions_answer_as_the_upstream_does(sides: Sides,
                                                          taken: list[bool]) -> None:
    for shape, extra in ((msg, {}), (short, {"namespace": "SIDE-ns", "user_id": "u",
                                             "data": {"k": [1, "x"]}, "context": "c"})):
        path = f"{WM}SIDE-{shape.__name__}?{BIG}"
        if "namespace" in extra:
            path += "&namespace=SIDE-ns&user_id=u"
        history: list[Message] = []
        for turn in range(4):
            history += [shape(2 * turn), shape(2 * turn + 1)]
            await sides.same("PUT", path, body(history, **extra))
        await sides.same("PUT", path, body(history, **extra))  # nothing new
        got = await sides.same("GET", path)
        assert len(got.json()["messages"]) == 8
    # Each session's first PUT is parsed whole; every later one takes the raw path.
    assert taken == [False, True, True, True, True] * 2


@pytest.mark.parametrize("name, make, raw_path", [
    ("nested", lambda run, new: b'{"data":{"messages":[' + run + b']},"messages":[' + new
     + b"]}", False),
    ("duplicate-last-wins", lambda run, new: b'{"messages":[' + run + b"," + new
     + b'],"messages":[' + new + b"]}", False),
    ("duplicate-first-loses", lambda run, new: b'{"messages":[' + new + b'],"messages":['
     + run + b"," + new + b"]}", False),
    ("escaped-key", lambda run, new: b'{"data":{"messages":[' + run + b']},"\\u006dessages":['
     + run + b"," + new + b"]}", False),
    ("spaced-key", lambda run, new: b'{ "messages" :\n [' + run + b" ,\n " + new + b" ] }",
     True),
    ("spaced-array", lambda run, new: b'{"messages":[ ' + run + b"," + new + b"]}", False),
    ("unicode-escape", lambda run, new: b'{"messages":[' + run + b","
     + new.replace(b"m", b"\\u006d") + b"]}", True),
    ("text-in-strings", lambda run, new: b'{"context":"\\"messages\\":[' + run.replace(
        b'"', b"'") + b'","messages":[' + run + b"," + new + b"]}", True),
])
async def test_odd_bodies_answer_as_the_upstream_does(
        sides: Sides, taken: list[bool], name: str, make: Callable[[bytes, bytes], bytes],
        raw_path: bool) -> None:
    path = f"{WM}SIDE-{name}?{BIG}"
    stored = msgs(3)
    await sides.same("PUT", path, body(stored))
    run = orjson.dumps(stored)[1:-1]
    new = orjson.dumps(msg(3, "new message"))
    await sides.same("PUT", path, make(run, new))
    await sides.same("GET", path)
    assert taken == [False, raw_path]


async def test_a_recorded_input_need_not_be_kept_the_digest_proves_it(
        proxy: TestClient[Any, Any], taken: list[bool]) -> None:
    await ef.put_ok(proxy, "digest", {"messages": msgs(4)})
    cache = app_of(proxy)[CACHE]
    entry = cache.by_session("digest")
    assert entry is not None and entry.known is not None
    entry.known = None  # as a tail read from Redis has none
    echo = await ef.put_ok(proxy, "digest", {"messages": msgs(6)})
    assert echo["messages"] == msgs(6)
    # A body that differs from the recorded bytes fails the digest and is parsed whole.
    entry.known = None
    changed = [*msgs(5), msg(5, "edited")]
    assert (await ef.put_ok(proxy, "digest", {"messages": changed}))["messages"] == changed
    assert taken == [False, True, False]
    assert (await ef.get_ok(proxy, "digest"))["messages"] == changed


async def test_the_echo_comes_from_redis_when_the_cache_holds_only_a_tail(
        proxy_factory: ProxyFactory, taken: list[bool]) -> None:
    proxy = await proxy_factory(cache_max_messages=4)
    history = [short(i) for i in range(12)]
    await ef.put_ok(proxy, "tail", {"messages": history})
    history += [short(12), short(13)]
    echo = await ef.put_ok(proxy, "tail", {"messages": history})
    assert [m["content"] for m in echo["messages"]] == [m["content"] for m in history]
    assert all(m["persisted_at"] is None for m in echo["messages"])  # canonical form
    assert taken == [False, True]


@pytest.mark.parametrize("ack_mode", ["flushed", "buffered"])
async def test_the_echo_is_built_while_redis_runs_the_write(
        proxy_factory: ProxyFactory, taken: list[bool], monkeypatch: pytest.MonkeyPatch,
        ack_mode: str) -> None:
    from proxy.codec.render import splice_messages as real
    from proxy.engine import rawput

    proxy = await proxy_factory(ack_mode=ack_mode)
    flusher = app_of(proxy)[ENGINE].writes.flusher
    in_flight: list[bool] = []

    def spy(rendered: bytes, parts: Any) -> bytes:
        in_flight.append(flusher.sending)
        return real(rendered, parts)

    monkeypatch.setattr(rawput, "splice_messages", spy)
    # Canonical input (the echo's stored part is the body's own bytes) and not (the
    # cached tail's, taken before the commit extends it).
    for shape in (msg, short):
        history = [shape(i) for i in range(6)]
        await ef.put_ok(proxy, f"meanwhile-{shape.__name__}", {"messages": history[:4]})
        echo = await ef.put_ok(proxy, f"meanwhile-{shape.__name__}", {"messages": history})
        assert [m["content"] for m in echo["messages"]] == [m["content"] for m in history]
        assert [m["id"] for m in echo["messages"]] == [m["id"] for m in history]
        got = await ef.get_ok(proxy, f"meanwhile-{shape.__name__}")
        assert got["messages"] == echo["messages"]
    assert taken == [False, True, False, True]
    assert len(in_flight) == 2
    if ack_mode == "flushed":  # the write was sent before the echo was built
        assert in_flight == [True, True]


async def test_a_session_written_elsewhere_meanwhile_is_rewritten_whole(
        proxy_factory: ProxyFactory, own_redis: Service, taken: list[bool]) -> None:
    # Without read leases nothing tells this proxy its cached tail went stale: the raw
    # PUT plans against the old version, conflicts, and is written whole from its body.
    here = await proxy_factory(redis_url=own_redis.url, read_lease_ms=0)
    there = await proxy_factory(redis_url=own_redis.url, read_lease_ms=0)
    await ef.put_ok(here, "moved", {"messages": msgs(3)})
    await ef.put_ok(here, "moved", {"messages": msgs(4)})
    await ef.put_ok(there, "moved", {"messages": [*msgs(3), msg(9, "elsewhere")]})
    echo = await ef.put_ok(here, "moved", {"messages": msgs(5)})
    assert echo["messages"] == msgs(5)
    assert (await ef.get_ok(there, "moved"))["messages"] == msgs(5)
    assert taken == [False, True, False, True]


async def test_a_put_the_upstream_would_summarize_is_left_to_it(
        proxy: TestClient[Any, Any], taken: list[bool]) -> None:
    await ef.put_ok(proxy, "summ", {"messages": msgs(4)})
    resp = await proxy.put(f"{WM}summ?context_window_max=20", data=body(msgs(6)),
                           headers={"Content-Type": "application/json"})
    await resp.read()
    assert taken == [False, False]  # the raw path declined; the upstream answered


async def test_a_big_prefix_without_kept_bytes_is_hashed_off_the_event_loop(
        proxy: TestClient[Any, Any], taken: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from proxy.engine import rawput
    from proxy.engine.plan import prove

    threaded: list[object] = []
    loop = asyncio.get_running_loop()
    real = loop.run_in_executor

    def spy(executor: Any, fn: Any, *args: Any) -> Any:
        threaded.append(getattr(fn, "func", fn))  # OffLoop passes a partial
        return real(executor, fn, *args)

    monkeypatch.setattr(loop, "run_in_executor", spy)
    history = msgs(10_000)  # ~1.4 MB as sent: past rawput.OFFLOAD_BYTES
    await ef.put_ok(proxy, "big", {"messages": history})
    entry = app_of(proxy)[CACHE].by_session("big")
    assert entry is not None and entry.meta.input_length > rawput.OFFLOAD_BYTES
    entry.known = None
    echo = await ef.put_ok(proxy, "big", {"messages": [*history, msg(10_000)]})
    assert len(echo["messages"]) == 10_001 and echo["messages"][-1] == msg(10_000)
    assert taken == [False, True] and threaded.count(prove) == 1
