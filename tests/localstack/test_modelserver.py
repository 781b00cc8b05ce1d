"""The local model server, and the real upstream with long-term memory on through it.

The upstream (agent-memory-server, ``LONG_TERM_MEMORY=true``) embeds, extracts, promotes
and summarizes through the model server exactly as it would through OpenAI; these tests
check the outcomes in the upstream's own API.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest

from proxy.localstack import ProcessGroup, Service, Stack, start_redis, start_upstream
from proxy.localstack.modelserver import DEFAULT_DIM, start_model_server, upstream_llm_env

T = TypeVar("T")


@pytest.fixture(scope="module")
def llm_group() -> Iterator[ProcessGroup]:
    group = ProcessGroup()
    yield group
    group.stop()


@pytest.fixture(scope="module")
def model_server(llm_group: ProcessGroup) -> Service:
    return start_model_server(llm_group)


@pytest.fixture(scope="module")
def ltm_upstream(stack: Stack, llm_group: ProcessGroup, model_server: Service) -> Service:
    """The real upstream with long-term memory on, on a Redis of its own."""
    redis = start_redis(llm_group, stack, "ltm-redis")
    return start_upstream(llm_group, stack, redis.url, name="ltm-upstream",
                          extra_env=upstream_llm_env(model_server.url))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, url: str,
               body: Any = None) -> Any:
    async with http.request(method, url, json=body) as resp:
        return await resp.json()


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 15.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if (found := await probe()) is not None:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def test_model_server_answers_in_openai_formats(
    model_server: Service, http: aiohttp.ClientSession
) -> None:
    base = model_server.url + "/v1"
    await call(http, "DELETE", model_server.url + "/stats")
    emb = await call(http, "POST", base + "/embeddings",
                     {"model": "text-embedding-3-small",
                      "input": ["I live in Paris", "I live in Paris", "green tea"]})
    a, b, c = (d["embedding"] for d in emb["data"])
    assert len(a) == DEFAULT_DIM and a == b and a != c
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-6)
    packed = await call(http, "POST", base + "/embeddings",
                        {"input": "I live in Paris", "encoding_format": "base64"})
    decoded = struct.unpack(f"<{DEFAULT_DIM}f", base64.b64decode(packed["data"][0]["embedding"]))
    assert all(math.isclose(x, y, abs_tol=1e-6) for x, y in zip(decoded, a, strict=True))

    prompt = ("Extract two types of memories...\nMessage:\n[USER]: I live in Paris. I like tea."
              "\n[ASSISTANT]: Noted.\n\nSTEP-BY-STEP PROCESS:\n...\nExtracted memories:\n")
    chat = await call(http, "POST", base + "/chat/completions",
                      {"model": "gpt-5", "messages": [{"role": "user", "content": prompt}],
                       "response_format": {"type": "json_object"}})
    answer = chat["choices"][0]["message"]["content"]
    assert [m["text"] for m in json.loads(answer)["memories"]] == [
        "I live in Paris.", "I like tea."]
    assert chat["usage"]["total_tokens"] > 0
    models = await call(http, "GET", base + "/models")
    assert "gpt-5" in {m["id"] for m in models["data"]}
    async with http.post(base + "/chat/completions", raise_for_status=False,
                         json={"messages": [{"role": "user", "content": "hi"}],
                               "stream": True}) as resp:
        assert resp.status == 400
    stats = await call(http, "GET", model_server.url + "/stats")
    assert stats == {"embeddings": 2, "embedded_texts": 4, "extraction": 1, "chat": 1,
                     "models": 1}


async def test_upstream_extracts_and_promotes_through_the_model_server(
    ltm_upstream: Service, model_server: Service, http: aiohttp.ClientSession
) -> None:
    ns, session = f"ns-{uuid.uuid4().hex[:8]}", "facts"
    url = f"{ltm_upstream.url}/v1/working-memory/{session}?namespace={ns}&user_id=u1"
    before = await call(http, "GET", model_server.url + "/stats")
    facts = ["My name is Ada. I live in Paris.", "I prefer green tea over coffee."]
    await call(http, "PUT", url, {"namespace": ns, "user_id": "u1", "messages": [
        {"role": "user", "content": facts[0], "created_at": "2025-01-01T10:00:00Z"},
        {"role": "assistant", "content": "Nice to meet you.",
         "created_at": "2025-01-01T10:00:01Z"},
        {"role": "user", "content": facts[1], "created_at": "2025-01-01T10:00:02Z"},
    ]})

    async def extracted() -> dict[str, Any] | None:
        doc: dict[str, Any] = await call(http, "GET", url)
        done = all(m["discrete_memory_extracted"] == "t" for m in doc["messages"])
        return doc if done else None

    doc = await eventually(extracted)  # the debounce is 1 s here, 30 s by default
    # the upstream stamps the messages first, then embeds and indexes what it extracted
    search = ltm_upstream.url + "/v1/long-term-memory/search"

    async def indexed() -> dict[str, Any] | None:
        got: dict[str, Any] = await call(http, "POST", search, {
            "text": "", "namespace": {"eq": ns}, "limit": 20})
        return got if len(got["memories"]) >= 3 else None

    found = await eventually(indexed)
    assert sorted(m["text"] for m in found["memories"]) == [
        "I live in Paris.", "I prefer green tea over coffee.", "My name is Ada."]
    assert all(m["session_id"] == session and m["user_id"] == "u1" for m in found["memories"])

    # A structured memory (namespaced, else a namespace search does not see it), PUT with
    # the messages as the client got them: promotion stamps persisted_at.
    doc["memories"] = [{"id": f"{ns}-m1", "text": "User enjoys hiking in the Alps",
                        "memory_type": "semantic", "namespace": ns, "user_id": "u1"}]
    await call(http, "PUT", url, {k: doc[k] for k in ("namespace", "user_id", "messages",
                                                      "memories")})

    async def promoted() -> dict[str, Any] | None:
        got: dict[str, Any] = await call(http, "GET", url)
        return got if got["memories"][0]["persisted_at"] else None

    doc = await eventually(promoted)
    assert all(m["discrete_memory_extracted"] == "t" for m in doc["messages"])
    hits = await call(http, "POST", search + "?optimize_query=true",
                      {"text": "hiking mountains", "namespace": {"eq": ns}, "limit": 1})
    assert [m["id"] for m in hits["memories"]] == [f"{ns}-m1"]

    async def every_kind_called() -> bool | None:  # topics and entities come last
        after = await call(http, "GET", model_server.url + "/stats")
        kinds = ("extraction", "embeddings", "topics", "entities", "query")
        return True if all(after.get(k, 0) > before.get(k, 0) for k in kinds) else None

    await eventually(every_kind_called)


async def test_upstream_summarizes_through_the_model_server(
    ltm_upstream: Service, model_server: Service, http: aiohttp.ClientSession
) -> None:
    ns = f"ns-{uuid.uuid4().hex[:8]}"
    messages = [{"role": "user" if i % 2 == 0 else "assistant",
                 "content": f"Message number {i} talks about topic {i} at some length.",
                 "created_at": f"2025-01-01T10:00:{i:02d}Z"} for i in range(30)]
    before = await call(http, "GET", model_server.url + "/stats")
    doc = await call(http, "PUT", f"{ltm_upstream.url}/v1/working-memory/long?namespace={ns}"
                     "&context_window_max=200", {"namespace": ns, "messages": messages})
    kept = len(doc["messages"])
    assert 0 < kept < 30
    newest_summarized = messages[29 - kept]  # the upstream lists the newest line first
    assert doc["context"] == (f"SUMMARY: {30 - kept} messages. Latest: "
                              f"{newest_summarized['role']}: {newest_summarized['content']}")
    assert [m["content"] for m in doc["messages"]] == [m["content"] for m in messages[-kept:]]
    assert doc["tokens"] > 0
    after = await call(http, "GET", model_server.url + "/stats")
    assert after["summary"] == before.get("summary", 0) + 1
