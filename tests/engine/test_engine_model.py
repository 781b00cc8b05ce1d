"""A stateful property test: the proxy (real HTTP, real Redis) against a plain model of the
upstream's working-memory semantics, over random PUT (append, edit, drop, swap, replace),
GET (recent_messages_limit, context_window_max) and DELETE sequences.

The proxies run on a loop in a background thread, so hypothesis drives them through a
plain synchronous HTTP client. Two flushed proxies share one Redis and every request goes
to either, so the model also checks that replicas agree; a buffered proxy runs alone.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from proxy.app import create_app
from proxy.codec.tokens import count_tokens
from proxy.localstack import Service, free_port
from tests.conftest import make_settings
from tests.engine_fixtures import WM, Message, stamp


class Background:
    """A proxy app served on its own event loop, in a thread."""

    def __init__(self, upstream: str, redis_url: str, **overrides: Any) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        app = create_app(make_settings(upstream, redis_url, **overrides))
        self.runner = web.AppRunner(app)
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Http:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raw = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if raw is not None else {}
        self.conn.request(method, path, body=raw, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, orjson.loads(resp.read())

    def close(self) -> None:
        self.conn.close()


@pytest.fixture(scope="module")
def servers(upstream: Service, proxy_redis: Service) -> Iterator[dict[str, list[Background]]]:
    # One proxy of each kind caches only 3 messages per session, so reads and writes
    # there go past the cached run, to Redis.
    flushed = [Background(upstream.url, proxy_redis.url, key_prefix="model-f"),
               Background(upstream.url, proxy_redis.url, key_prefix="model-f",
                          cache_max_messages=3)]
    buffered = [Background(upstream.url, proxy_redis.url, key_prefix="model-b",
                           ack_mode="buffered", cache_max_messages=3)]
    yield {"flushed": flushed, "buffered": buffered}
    for server in flushed + buffered:
        server.stop()


def expected(messages: list[Message], limit: int | None, window: int | None) -> list[Message]:
    """What the upstream's GET returns (contract §3.2 step 4, §6.2)."""
    out = list(messages)
    if limit is not None and limit > 0:
        out = sorted(out, key=lambda m: m["created_at"])[-limit:]  # stable, as Python's
    if out and window:
        counts = [count_tokens(m["role"], m["content"]) for m in out]
        total, drop = sum(counts), 0
        while total > window and len(out) - drop > 1:
            total -= counts[drop]
            drop += 1
        out = out[drop:]
    return out


SIDS = st.sampled_from(["s0", "s1"])
TEXT = st.text(alphabet="abc xyz", min_size=1, max_size=12).filter(lambda t: t.strip() != "")


class Model(RuleBasedStateMachine):
    ports: list[int] = []

    def __init__(self) -> None:
        super().__init__()
        self.clients = [Http(p) for p in self.ports]
        self.run = uuid.uuid4().hex[:8]  # each example starts from empty sessions
        self.sessions: dict[str, list[Message]] = {}
        self.clock = 0

    def teardown(self) -> None:
        for sid in ("s0", "s1"):
            self.clients[0]("DELETE", self.path(sid))
        for client in self.clients:
            client.close()

    def path(self, sid: str) -> str:
        return f"{WM}{self.run}-{sid}"

    def fresh(self, content: str) -> Message:
        self.clock += 1
        return {"role": ("user", "assistant")[self.clock % 2], "content": content,
                "id": f"id{self.clock}", "created_at": stamp(self.clock),
                "persisted_at": None, "discrete_memory_extracted": "f"}

    def put(self, which: int, sid: str, messages: list[Message]) -> None:
        client = self.clients[which % len(self.clients)]
        status, body = client("PUT", self.path(sid) + "?context_window_max=100000000",
                              {"messages": messages})
        assert status == 200, body
        assert body["messages"] == messages
        self.sessions[sid] = messages

    @rule(which=st.integers(0, 1), sid=SIDS, texts=st.lists(TEXT, max_size=4))
    def append(self, which: int, sid: str, texts: list[str]) -> None:
        self.put(which, sid, self.sessions.get(sid, []) + [self.fresh(t) for t in texts])

    @rule(which=st.integers(0, 1), sid=SIDS, at=st.integers(0, 50), text=TEXT)
    def edit(self, which: int, sid: str, at: int, text: str) -> None:
        current = list(self.sessions.get(sid, []))
        if current:
            i = at % len(current)
            current[i] = {**current[i], "content": text}
        self.put(which, sid, current)

    @rule(which=st.integers(0, 1), sid=SIDS, at=st.integers(0, 50))
    def drop(self, which: int, sid: str, at: int) -> None:
        current = list(self.sessions.get(sid, []))
        if current:
            del current[at % len(current)]
        self.put(which, sid, current)

    @rule(which=st.integers(0, 1), sid=SIDS, at=st.integers(0, 50))
    def swap(self, which: int, sid: str, at: int) -> None:
        current = list(self.sessions.get(sid, []))
        if len(current) >= 2:
            i = at % (len(current) - 1)
            current[i], current[i + 1] = current[i + 1], current[i]
        self.put(which, sid, current)

    @rule(which=st.integers(0, 1), sid=SIDS, texts=st.lists(TEXT, max_size=5))
    def replace(self, which: int, sid: str, texts: list[str]) -> None:
        self.put(which, sid, [self.fresh(t) for t in texts])

    @rule(which=st.integers(0, 1), sid=SIDS)
    def delete(self, which: int, sid: str) -> None:
        status, body = self.clients[which % len(self.clients)]("DELETE", self.path(sid))
        assert (status, body) == (200, {"status": "ok"})
        self.sessions.pop(sid, None)

    @rule(which=st.integers(0, 1), sid=SIDS,
          limit=st.none() | st.integers(-1, 8), window=st.sampled_from([None, 0, -3, 15, 40]))
    def get(self, which: int, sid: str, limit: int | None, window: int | None) -> None:
        query = "&".join(f"{k}={v}" for k, v in (("recent_messages_limit", limit),
                                                  ("context_window_max", window))
                         if v is not None)
        status, body = self.clients[which % len(self.clients)]("GET",
                                                               f"{self.path(sid)}?{query}")
        if sid not in self.sessions:
            assert status == 404, body
            return
        assert status == 200, body
        assert body["messages"] == expected(self.sessions[sid], limit, window)

    @invariant()
    def replicas_agree(self) -> None:
        for sid, messages in self.sessions.items():
            for client in self.clients:
                status, body = client("GET", self.path(sid))
                assert status == 200 and body["messages"] == messages


SETTINGS = settings(max_examples=30, stateful_step_count=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("mode", ["flushed", "buffered"])
def test_proxy_behaves_as_the_model(mode: str, servers: dict[str, list[Background]]) -> None:
    machine = type(f"Model_{mode}", (Model,), {"ports": [s.port for s in servers[mode]]})
    run_state_machine_as_test(machine, settings=SETTINGS)
