"""``POST /v1/memory/prompt`` sees the sessions the proxy holds, exactly as the upstream
sees its own: the same session written to each side answers the same prompt the same."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.http.prompt import splice, upstream_tail
from tests.differential import WM, Sides

PROMPT = "/v1/memory/prompt"


@pytest.fixture
def sides(direct: aiohttp.ClientSession, proxy: TestClient[Any, Any],
          redis_client: aioredis.Redis) -> Sides:
    return Sides(direct, proxy)


def msg(i: int, content: str, role: str = "user") -> dict[str, Any]:
    return {"role": role, "content": content, "id": f"m{i}",
            "created_at": f"2024-01-01T00:00:{i:02d}Z"}


SESSION = {"messages": [msg(1, "one two three four five"), msg(2, "six seven eight", "tool"),
                        msg(3, "nine ten é", "assistant"), msg(4, "eleven", "system"),
                        msg(5, "twelve", "")],
           "context": "earlier, Ana said hi", "namespace": "SIDE-ns", "user_id": "SIDE-u"}


async def put_both(sides: Sides, sid: str, body: dict[str, Any]) -> None:
    await sides.same("PUT", WM + sid, orjson.dumps(body))


@pytest.mark.parametrize("session", [
    {},
    {"context_window_max": 12}, {"context_window_max": "12"}, {"context_window_max": 0},
    {"context_window_max": -1}, {"context_window_max": 12.0}, {"model_name": "gpt-4"},
    {"model_name": "gpt-4", "context_window_max": 0}, {"namespace": "SIDE-ns"},
    {"user_id": "SIDE-u"}, {"namespace": None, "user_id": "SIDE-ns:SIDE-u"},
    {"long_term_memory_strategy": {"strategy": "summary", "config": {}}},
])
async def test_prompt_with_the_proxys_session(sides: Sides, session: dict[str, Any]) -> None:
    await put_both(sides, "SIDE-pr", SESSION)
    scope = {"namespace": "SIDE-ns", "user_id": "SIDE-u"}
    body = orjson.dumps({"query": "what now?",
                         "session": {"session_id": "SIDE-pr", **scope, **session}})
    got = await sides.same("POST", PROMPT, body)
    assert got.status == 200
    texts = [m["content"]["text"] for m in got.json()["messages"]]
    if "namespace" not in session and "user_id" not in session:
        assert texts[0].startswith("## A summary")
    assert texts[-1] == "what now?"


async def test_prompt_without_context_and_after_delete(sides: Sides) -> None:
    await put_both(sides, "SIDE-pr2", {"messages": SESSION["messages"], "context": ""})
    body = orjson.dumps({"query": "q", "session": {"session_id": "SIDE-pr2"}})
    got = await sides.same("POST", PROMPT, body)
    assert len(got.json()["messages"]) == 6
    await sides.same("DELETE", WM + "SIDE-pr2")
    got = await sides.same("POST", PROMPT, body)
    assert len(got.json()["messages"]) == 1


@pytest.mark.parametrize("body", [
    {"query": "q", "session": {"session_id": "SIDE-none"}},
    {"query": "q", "session": {"session_id": "SIDE-pr3"}},  # stored under a namespace
    {"query": "q", "session": {"session_id": "SIDE-pr3", "namespace": "SIDE-ns"},
     "long_term_search": True},
    {"query": "q", "session": {"session_id": "SIDE-pr3", "namespace": "SIDE-ns"},
     "long_term_search": False},
    {"query": "q", "long_term_search": {"limit": 3}},
    {"query": "q"}, {"session": {"session_id": "SIDE-pr3"}}, {"query": 5},
    {"query": "q", "session": {"session_id": 5}},
    {"query": "q", "session": {"session_id": "SIDE-pr3", "model_name": "gpt-5"}},
    {"query": "q", "session": {"session_id": "SIDE-pr3", "context_window_max": "abc"}},
    {"query": "q", "session": "SIDE-pr3"}, [], None,
])
async def test_prompt_edges(sides: Sides, body: Any) -> None:
    await put_both(sides, "SIDE-pr3", {"messages": SESSION["messages"][:2],
                                       "namespace": "SIDE-ns"})
    await sides.same("POST", PROMPT, orjson.dumps(body))


async def test_prompt_non_json_and_query_parameters(sides: Sides) -> None:
    await put_both(sides, "SIDE-pr4", {"messages": SESSION["messages"][:2]})
    await sides.same("POST", PROMPT, b"{not json")
    await sides.same("POST", PROMPT, b"", None)
    body = orjson.dumps({"query": "q", "session": {"session_id": "SIDE-pr4"}})
    await sides.same("POST", PROMPT + "?optimize_query=true", body)
    await sides.same("POST", PROMPT + "?optimize_query=maybe", body)


async def test_proxy_session_is_not_in_the_upstream(sides: Sides,
                                                    direct: aiohttp.ClientSession) -> None:
    """Why the prompt cannot simply be forwarded: the upstream has no copy to read."""
    await sides.one("proxy", "PUT", WM + "SIDE-pr5", orjson.dumps(SESSION))
    sid = sides.fill("proxy", "SIDE-pr5")
    scope = {"namespace": sides.fill("proxy", "SIDE-ns"), "user_id": sides.fill("proxy", "SIDE-u")}
    body = {"query": "q", "session": {"session_id": sid, **scope}}
    async with direct.post(PROMPT, json=body) as resp:
        assert len((await resp.json())["messages"]) == 1
    got = await sides.one("proxy", "POST", PROMPT, orjson.dumps(body))
    assert len(got.json()["messages"]) == 7


def test_splice_keeps_long_term_results_byte_for_byte() -> None:
    lt = {"role": "system", "content": {"type": "text", "text": "## Long term memories "
                                        "related to the user's query\n - x", "annotations": None,
                                        "_meta": None}}
    q = {"role": "user", "content": {"type": "text", "text": "q", "annotations": None,
                                     "_meta": None}}
    assert upstream_tail([q]) == [q]
    assert upstream_tail([q, lt, q]) == [lt, q]
    rest = b',"long_term_memories":[{"dist":1e-07}]}'
    upstream = b'{"messages":' + orjson.dumps([lt, q]) + rest
    spliced = splice(upstream, [q])
    assert spliced == b'{"messages":' + orjson.dumps([q, lt, q]) + rest
    assert splice(b"[]", [q]) is None
