"""The real upstream with long-term memory on, through the local model server: started
once per test session for every sync suite that asks (tests/system/test_sync_*.py), and
stopped with the session's other processes."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

import aiohttp

from proxy.localstack import (
    ProcessGroup,
    Service,
    Stack,
    free_port,
    start_redis,
    start_upstream,
)
from proxy.localstack.modelserver import start_model_server, upstream_llm_env
from proxy.localstack.processes import http_ok

DEBOUNCE_S = 1  # the upstream's extraction debounce (its default is 30 s)


@dataclass(frozen=True)
class LtmStack:
    model_server: Service
    redis: Service
    upstream: Service

    async def model_stats(self) -> dict[str, int]:
        async with aiohttp.ClientSession() as http, \
                http.get(self.model_server.url + "/stats") as resp:
            stats: dict[str, int] = await resp.json()
            return stats


_started: dict[str, LtmStack] = {}


def ltm_stack(stack: Stack, processes: ProcessGroup) -> LtmStack:
    if "ltm" not in _started:
        model_server = start_model_server(processes, name="sync-model-server")
        redis = start_redis(processes, stack, "sync-ltm-redis")
        upstream = start_upstream(processes, stack, redis.url, name="sync-ltm-upstream",
                                  extra_env=upstream_llm_env(model_server.url, DEBOUNCE_S))
        _started["ltm"] = LtmStack(model_server, redis, upstream)
    return _started["ltm"]


async def search(upstream: Service, namespace: str) -> list[dict[str, Any]]:
    """Every long-term memory of ``namespace``."""
    async with aiohttp.ClientSession() as http, http.post(
            upstream.url + "/v1/long-term-memory/search",
            json={"text": "", "namespace": {"eq": namespace}, "limit": 100}) as resp:
        assert resp.status == 200, await resp.text()
        found: list[dict[str, Any]] = (await resp.json())["memories"]
        return found


def serve(group: ProcessGroup, name: str, upstream_url: str, redis_url: str,
          **settings: object) -> Service:
    """``agent-memory-proxy serve`` as a process of its own (one worker, no drain pause);
    ``settings`` become its AMP_* environment."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"AMP_UPSTREAM_URL": upstream_url, "AMP_REDIS_URL": redis_url,
           "AMP_PORT": str(port), "AMP_WORKERS": "1", "AMP_DRAIN_SECONDS": "0",
           **{f"AMP_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
              for k, v in settings.items()}}
    return group.start(name, [sys.executable, "-m", "proxy", "serve"], url,
                       http_ok(url + "/-/healthz"), env=env, timeout=60)


async def metrics(base_url: str) -> dict[str, float]:
    """The proxy's /-/metrics as {"name{labels}": value} (samples without labels: "name")."""
    async with aiohttp.ClientSession() as http, http.get(base_url + "/-/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    found = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            found[m.group(1)] = float(m.group(2))
    return found
