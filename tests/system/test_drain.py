"""SIGTERM drains like Envoy, on a real ``serve`` process under load: ``/-/readyz`` turns
503 at once, requests keep being served for ``drain_seconds`` (long enough for a load
balancer to notice), then intake stops, writes flush and the process exits. No request
fails, and every acknowledged write is in Redis afterwards."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import orjson
import pytest
import redis

from proxy.localstack import Service
from proxy.tasks import spawn
from tests.conftest import ProxyFactory
from tests.observability.serving import serve_process

DRAIN, SHUTDOWN = 2.0, 10.0
CLIENTS = 8
LB_LAG = 1.0  # the balancer keeps sending this long after readiness went (< DRAIN)


def _message(session: str, i: int) -> dict[str, str]:
    return {"role": "user", "content": f"{session} turn {i}", "id": f"{session}-{i}",
            "created_at": "2024-01-01T00:00:00Z"}


class Balancer:
    """Polls /-/readyz like a load balancer; its clients stop sending once it has seen the
    instance leave rotation for ``LB_LAG`` seconds."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url
        self.unready_at: float | None = None
        self.served_while_draining = 0

    async def poll(self) -> None:
        while self.unready_at is None:
            async with self.http.get(self.url + "/-/readyz") as resp:
                if resp.status == 503:
                    self.unready_at = time.monotonic()
            await asyncio.sleep(0.05)

    def routes_here(self) -> bool:
        return self.unready_at is None or time.monotonic() - self.unready_at < LB_LAG


async def _client(http: aiohttp.ClientSession, url: str, lb: Balancer, session: str,
                  acked: dict[str, int], failures: list[str]) -> None:
    messages: list[dict[str, str]] = []
    while lb.routes_here():
        messages.append(_message(session, len(messages)))
        try:
            if len(messages) % 2:  # alternate whole-session PUTs and appends
                resp = await http.put(f"{url}/v1/working-memory/{session}",
                                      data=orjson.dumps({"messages": messages}),
                                      headers={"content-type": "application/json"})
            else:
                resp = await http.post(f"{url}/v1/working-memory/{session}/messages",
                                       data=orjson.dumps({"messages": messages[-1:]}),
                                       headers={"content-type": "application/json"})
            async with resp:
                await resp.read()
                if resp.status != 200:
                    failures.append(f"{session} write {len(messages)}: {resp.status}")
                    return
            acked[session] = len(messages)
            if lb.unready_at is not None:
                lb.served_while_draining += 1
            async with http.get(f"{url}/v1/working-memory/{session}"
                                "?recent_messages_limit=1") as resp:
                body = await resp.json()
                if resp.status != 200 or body["messages"][-1]["id"] != messages[-1]["id"]:
                    failures.append(f"{session} read after write {len(messages)}: "
                                    f"{resp.status}")
                    return
        except aiohttp.ClientError as exc:
            failures.append(f"{session} request {len(messages)}: {exc!r}")
            return


@pytest.mark.parametrize("ack_mode", ["buffered", "flushed"])
async def test_sigterm_under_load_fails_nothing_and_loses_nothing(
        ack_mode: str, upstream: Service, proxy_redis: Service, redis_client: Any,
        proxy_factory: ProxyFactory) -> None:
    with serve_process(upstream, proxy_redis, workers=1, ack_mode=ack_mode,
                       drain_seconds=DRAIN, shutdown_timeout=SHUTDOWN,
                       log_format="json") as served:
        acked: dict[str, int] = {}
        failures: list[str] = []
        async with aiohttp.ClientSession() as http:
            lb = Balancer(http, served.url)
            poller = spawn(lb.poll(), name="readiness poller")
            sessions = [f"drain-{ack_mode}-{i}" for i in range(CLIENTS)]
            load = asyncio.gather(*(_client(http, served.url, lb, s, acked, failures)
                                    for s in sessions))
            await asyncio.sleep(1.0)
            sent_term = time.monotonic()
            served.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(poller, 2)
            await load
        assert lb.unready_at is not None and lb.unready_at - sent_term < 0.5
        assert failures == []
        returncode = await asyncio.to_thread(served.proc.wait, DRAIN + SHUTDOWN + 5)
        exited_after = time.monotonic() - sent_term
        assert returncode == 0, served.log()[-3000:]
        assert DRAIN - 0.1 < exited_after < DRAIN + SHUTDOWN
        assert lb.served_while_draining > CLIENTS  # readiness gone, requests still served
        print(f"drain ({ack_mode}): {sum(acked.values())} writes acknowledged, "
              f"{lb.served_while_draining} of them after /-/readyz went 503 "
              f"({lb.unready_at - sent_term:.3f} s after SIGTERM); exit "
              f"{exited_after:.2f} s after SIGTERM; failures {len(failures)}")
        log = [orjson.loads(line) for line in served.log().splitlines()]
        assert any("draining" in line["message"] for line in log)
    # Everything acknowledged is in Redis, and a fresh proxy reads it back whole.
    assert sum(acked.values()) > CLIENTS * 5, acked
    r = redis.Redis.from_url(proxy_redis.url)
    assert r.zcard("amp:index") == len(acked)
    fresh = await proxy_factory()
    for session, count in acked.items():
        resp = await fresh.get(f"/v1/working-memory/{session}")
        body = await resp.json()
        assert [m["id"] for m in body["messages"]] == \
            [f"{session}-{i}" for i in range(count)], session
