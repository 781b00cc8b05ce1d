"""The upstream's own features behind the proxy, with long-term memory on (the real
agent-memory-server through the local model server): the same conversation direct and
through the proxy ends with the same long-term memories and the same stamps, within the
configured lag; summarization through the proxy is the upstream's real outcome."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from proxy.app import SYNC
from tests.conftest import ProxyFactory
from tests.engine_fixtures import WM
from tests.sync.sessions import eventually
from tests.sync.stack import LtmStack, search

pytestmark = pytest.mark.upstream

QUIET_MS, MAX_LAG_MS = 100, 1_000
Client = TestClient[Any, Any] | aiohttp.ClientSession
TURNS = [("user", "My name is Ada. I live in Paris."), ("assistant", "Nice to meet you, Ada."),
         ("user", "I prefer green tea over coffee."), ("assistant", "Noted."),
         ("user", "My sister Mia works in Berlin."), ("assistant", "Good to know.")]
FACTS = ["I live in Paris.", "I prefer green tea over coffee.", "My name is Ada.",
         "My sister Mia works in Berlin."]
HIKING = "User enjoys hiking in the Alps"


@pytest.fixture
async def direct_ltm(ltm: LtmStack) -> Any:
    async with aiohttp.ClientSession(ltm.upstream.url) as session:
        yield session


def messages(upto: int) -> list[dict[str, Any]]:
    return [{"role": role, "content": text, "id": f"m{i}",
             "created_at": f"2025-03-01T10:00:{i:02d}Z"}
            for i, (role, text) in enumerate(TURNS[:upto])]


def hiking(ns: str) -> list[dict[str, Any]]:
    return [{"id": "mem-hike", "text": HIKING,
             "memory_type": "semantic", "namespace": ns, "user_id": "ada"}]


async def call(client: Client, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else orjson.dumps(body)
    resp = await client.request(method, path, data=data,
                                headers={"Content-Type": "application/json"})
    raw = await resp.read()
    assert resp.status == 200, raw
    return orjson.loads(raw)


async def converse(client: Client, ns: str, session: str) -> float:
    """Three turns in quick succession, PUT as agent-memory-client does (the whole session
    each time); returns when the last PUT was answered."""
    for upto in (2, 4, 6):
        body = {"namespace": ns, "user_id": "ada", "messages": messages(upto)}
        await call(client, "PUT", f"{WM}{session}", body)
    return time.monotonic()


def stamps(doc: dict[str, Any]) -> tuple[list[str], list[bool]]:
    return ([m["discrete_memory_extracted"] for m in doc["messages"]],
            [m["persisted_at"] is not None for m in doc["memories"]])


async def settled(probe: Callable[[], Awaitable[Any]], done: Callable[[Any], bool],
                  quiet_s: float = 2.0, timeout: float = 40.0) -> tuple[Any, float]:
    """``probe``'s value once ``done`` holds and it stopped changing for ``quiet_s``, and
    when it last changed."""
    loop = asyncio.get_running_loop()
    start, value, changed = loop.time(), await probe(), time.monotonic()
    while loop.time() - start < timeout:
        await asyncio.sleep(0.1)
        now = await probe()
        if now != value:
            value, changed = now, time.monotonic()
        elif done(value) and time.monotonic() - changed >= quiet_s:
            return value, changed
    raise AssertionError(f"not settled after {timeout:.0f} s: {value!r}")


async def run_side(client: Client, ltm: LtmStack, ns: str) -> dict[str, Any]:
    """The conversation, then (once its facts are extracted) the client reads the session
    back and PUTs it with a structured memory, as the model server test does directly."""
    path = f"{WM}talk?namespace={ns}&user_id=ada"
    before = await ltm.model_stats()

    async def state() -> Any:
        doc = await call(client, "GET", path)
        return stamps(doc), sorted(m["text"] for m in await search(ltm.upstream, ns))

    ended = await converse(client, ns, "talk")
    (first, found), changed = await settled(state, lambda v: set(v[1]) >= set(FACTS))
    extracted_after = changed - ended
    doc = await call(client, "GET", path)
    await call(client, "PUT", path, {"namespace": ns, "user_id": "ada",
                                     "messages": doc["messages"], "memories": hiking(ns)})
    ended = time.monotonic()
    (final, found), changed = await settled(state, lambda v: bool(v[0][1]) and all(v[0][1]))
    after = await ltm.model_stats()
    return {"extracted": first, "stamps": final, "memories": found,
            "extracted_s": extracted_after, "promoted_s": changed - ended,
            "extractions": after.get("extraction", 0) - before.get("extraction", 0)}


async def test_the_same_conversation_direct_and_through_the_proxy_ends_the_same(
        ltm: LtmStack, direct_ltm: aiohttp.ClientSession, proxy_factory: ProxyFactory,
        redis_client: Any) -> None:
    tag = uuid.uuid4().hex[:6]
    direct = await run_side(direct_ltm, ltm, f"direct-{tag}")
    proxy = await proxy_factory(upstream_url=ltm.upstream.url, upstream_sync=True,
                                sync_quiet_ms=QUIET_MS, sync_max_lag_ms=MAX_LAG_MS)
    through = await run_side(proxy, ltm, f"proxy-{tag}")
    print(f"\nlong-term memory after the last PUT, direct / through the proxy: facts "
          f"extracted {direct['extracted_s']:.2f} / {through['extracted_s']:.2f} s, memory "
          f"promoted {direct['promoted_s']:.2f} / {through['promoted_s']:.2f} s; extraction "
          f"calls {direct['extractions']} / {through['extractions']}; memories "
          f"{len(direct['memories'])} / {len(through['memories'])}; rounds "
          f"{dict(proxy.app[SYNC].results)}")
    assert set(through["memories"]) == set(direct["memories"]) == {*FACTS, HIKING}
    assert through["extracted"] == direct["extracted"] == (["t"] * 6, [])
    assert through["stamps"] == direct["stamps"] == (["t"] * 6, [True])
    # Extraction once per message: the direct PUTs, each promoted, may extract it more
    # often (the upstream's own race); the proxy hands the session over once.
    assert sorted(through["memories"]) == sorted({*FACTS, HIKING})
    assert through["extractions"] <= direct["extractions"]
    lag = MAX_LAG_MS / 1000 + 1.0
    assert through["extracted_s"] <= direct["extracted_s"] + lag
    assert through["promoted_s"] <= direct["promoted_s"] + lag


async def test_the_upstream_holds_the_latest_state_within_the_max_lag(
        ltm: LtmStack, direct_ltm: aiohttp.ClientSession, proxy_factory: ProxyFactory,
        redis_client: Any) -> None:
    proxy = await proxy_factory(upstream_url=ltm.upstream.url, upstream_sync=True,
                                sync_quiet_ms=QUIET_MS, sync_max_lag_ms=MAX_LAG_MS)
    ns, ledger = f"lag-{uuid.uuid4().hex[:6]}", proxy.app[SYNC].ledger
    worst = 0.0
    # Written steadily (every 50 ms, under the quiet period) for 3 s: handed over at
    # least every max lag all the same.
    for n in range(1, 61):
        body = {"namespace": ns, "messages": [{"role": "assistant", "content": f"step {i}",
                                               "id": f"s{i}",
                                               "created_at": "2025-03-01T10:00:00Z"}
                                              for i in range(n)]}
        await call(proxy, "PUT", f"{WM}steady", body)
        worst = max(worst, (await ledger.backlog())[1])
        await asyncio.sleep(0.05)

    async def caught_up() -> bool | None:
        doc = await call(direct_ltm, "GET", f"{WM}steady?namespace={ns}")
        return True if len(doc["messages"]) == 60 else None
    await eventually(caught_up, timeout=MAX_LAG_MS / 1000 + 2)
    handed = proxy.app[SYNC].results["ok"]
    slowest = proxy.app[SYNC].slowest
    print(f"\nsteady writer, 3 s: {handed} hand-overs, worst lag {worst:.2f} s, slowest "
          f"round {slowest:.2f} s")
    # A round starts at most max lag after the oldest change it hands over, and what is
    # written while it runs waits for the next one.
    assert worst <= MAX_LAG_MS / 1000 + 2 * slowest + 0.2
    assert 2 <= handed <= 3 / (MAX_LAG_MS / 1000) + 2


async def test_summarization_through_the_proxy_is_the_upstreams_outcome(
        ltm: LtmStack, direct_ltm: aiohttp.ClientSession, proxy_factory: ProxyFactory,
        redis_client: Any) -> None:
    proxy = await proxy_factory(upstream_url=ltm.upstream.url, upstream_sync=True,
                                sync_quiet_ms=QUIET_MS, sync_max_lag_ms=MAX_LAG_MS)
    tag = uuid.uuid4().hex[:6]
    long = [{"role": "user" if i % 2 == 0 else "assistant",
             "content": f"Message number {i} talks about topic {i} at some length.",
             "id": f"m{i}", "created_at": f"2025-01-01T10:00:{i:02d}Z"} for i in range(30)]
    answers = {}
    for side, client in (("direct", direct_ltm), ("proxy", proxy)):
        ns = f"{side}-{tag}"
        answers[side] = await call(client, "PUT", f"{WM}long?namespace={ns}"
                                   "&context_window_max=200", {"namespace": ns,
                                                               "messages": long})
    ours, theirs = answers["proxy"], answers["direct"]
    assert ours["context"].startswith("SUMMARY: ") and 0 < len(ours["messages"]) < 30
    for key in ("context", "messages", "tokens", "context_percentage_total_used"):
        assert ours[key] == theirs[key], key
    ns = f"proxy-{tag}"
    got = await call(proxy, "GET", f"{WM}long?namespace={ns}")
    assert (got["context"], got["messages"], got["tokens"]) == (
        ours["context"], ours["messages"], ours["tokens"])
    # Stored upstream under its own id, and never summarized again by a hand-over.
    summaries = (await ltm.model_stats())["summary"]
    more = [*ours["messages"], {"role": "user", "content": "One more thing.", "id": "m30",
                                "created_at": "2025-01-01T10:01:00Z"}]
    await call(proxy, "PUT", f"{WM}long?namespace={ns}&context_window_max=100000",
               {"namespace": ns, "messages": more, "context": ours["context"],
                "tokens": ours["tokens"]})

    async def handed() -> dict[str, Any] | None:
        doc = await call(direct_ltm, "GET", f"{WM}long?namespace={ns}")
        return doc if [m["id"] for m in doc["messages"]][-1] == "m30" else None
    upstream_doc = await eventually(handed, timeout=5)
    assert upstream_doc["context"] == ours["context"]
    assert (await ltm.model_stats())["summary"] == summaries


async def test_prompts_are_built_from_the_proxys_copy_with_the_upstreams_search(
        ltm: LtmStack, direct_ltm: aiohttp.ClientSession, proxy_factory: ProxyFactory,
        redis_client: Any) -> None:
    proxy = await proxy_factory(upstream_url=ltm.upstream.url, upstream_sync=True,
                                sync_quiet_ms=QUIET_MS, sync_max_lag_ms=MAX_LAG_MS)
    ns = f"prompt-{uuid.uuid4().hex[:6]}"
    path = f"{WM}talk?namespace={ns}&user_id=ada"
    await converse(proxy, ns, "talk")

    async def extracted() -> bool | None:
        found = await search(ltm.upstream, ns)
        return True if {m["text"] for m in found} >= set(FACTS) else None
    await eventually(extracted, timeout=30)
    prompt = {"query": "Where does Ada live?", "session": {
        "session_id": "talk", "namespace": ns, "user_id": "ada"},
        "long_term_search": {"text": "Where does Ada live?", "namespace": {"eq": ns},
                             "limit": 3}}
    # Once the upstream holds the handed-over session, both build the same prompt (the
    # memories found are the same; a search bumps their access times).
    # (The upstream's own promotion rewrites its copy for a moment after extracting:
    # the two are compared until they agree, within the time extraction took.)
    async def same_prompts() -> tuple[Any, Any] | None:
        ours = await call(proxy, "POST", "/v1/memory/prompt", prompt)
        theirs = await call(direct_ltm, "POST", "/v1/memory/prompt", prompt)
        return (ours, theirs) if ours["messages"] == theirs["messages"] else None
    ours, theirs = await eventually(same_prompts, timeout=30)
    assert ours["messages"] == theirs["messages"]
    assert [m["id"] for m in ours["long_term_memories"]] == \
        [m["id"] for m in theirs["long_term_memories"]]
    # A turn the upstream has not got yet is in the proxy's prompt all the same.
    doc = await call(proxy, "GET", path)
    turn = {"role": "user", "content": "Tomorrow I fly to Rome.", "id": "m9",
            "created_at": "2025-03-01T10:01:00Z"}
    await call(proxy, "PUT", path, {"namespace": ns, "user_id": "ada",
                                    "messages": [*doc["messages"], turn]})
    ours = await call(proxy, "POST", "/v1/memory/prompt", prompt)
    texts = [m["content"]["text"] for m in ours["messages"]]
    assert "Tomorrow I fly to Rome." in texts and texts[-1] == "Where does Ada live?"
