"""Start everything the benchmark measures, all on 127.0.0.1, and stop it again.

The upstream (agent-memory-server 0.14.0 with its Redis), the proxy (``agent-memory-proxy
serve`` with its own Redis, as a separate process) and the floor server (``load.floor``).
The proxy runs with the upstream sync on (the default) and hands its sessions to an
upstream of its own, so that the upstream measured beside it never takes them; a second
proxy, ``proxy-nosync``, runs with the sync off (part e, load/syncreport.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from proxy.localstack import (
    ProcessGroup,
    Service,
    cache_root,
    ensure_stack,
    free_port,
    start_redis,
    start_upstream,
)
from proxy.localstack.processes import http_ok

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Targets:
    group: ProcessGroup
    upstream: Service
    proxy: Service
    floor: Service
    proxy_redis: Service
    proxy_nosync: Service | None = None
    sync_upstream: Service | None = None  # the one the proxy hands its sessions to

    @property
    def urls(self) -> dict[str, str]:
        urls = {"upstream": self.upstream.url, "proxy": self.proxy.url, "floor": self.floor.url}
        if self.proxy_nosync is not None:
            urls["proxy-nosync"] = self.proxy_nosync.url
        return urls


def proxy_command(port: int, upstream_url: str, redis_url: str, workers: int = 1) -> list[str]:
    exe = Path(sys.executable).with_name("agent-memory-proxy")
    prefix = [str(exe)] if exe.exists() else [sys.executable, "-m", "proxy"]
    return [*prefix, "serve", "--port", str(port), "--upstream-url", upstream_url,
            "--redis-url", redis_url, "--workers", str(workers)]


def start_proxy(group: ProcessGroup, upstream_url: str, redis_url: str,
                name: str = "proxy", wrap: list[str] | None = None,
                workers: int = 1, settings: dict[str, str] | None = None) -> Service:
    """The proxy in its own process (one process unless ``workers`` > 1, then a parent and
    that many forked workers); ``wrap`` prefixes the command (e.g. a profiler)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [*(wrap or []), *proxy_command(port, upstream_url, redis_url, workers)]
    env = {"AMP_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO),
           **{f"AMP_{k.upper()}": v for k, v in (settings or {}).items()}}
    return group.start(name, cmd, url, http_ok(url + "/-/healthz"), env, timeout=60)


def start_floor(group: ProcessGroup) -> Service:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "load.floor", "--port", str(port)]
    return group.start("floor", cmd, url, http_ok(url + "/-/healthz"),
                       {"PYTHONPATH": str(REPO)}, timeout=30)


@contextmanager
def running_stack() -> Iterator[Targets]:
    """Install (first time only) and start the stack; stop every process on exit."""
    stack = ensure_stack(cache_root(os.environ))
    group = ProcessGroup()
    try:
        upstream_redis = start_redis(group, stack, "upstream-redis")
        upstream = start_upstream(group, stack, upstream_redis.url)
        proxy_redis = start_redis(group, stack, "proxy-redis", modules=False)
        sync_redis = start_redis(group, stack, "sync-upstream-redis")
        sync_upstream = start_upstream(group, stack, sync_redis.url, name="sync-upstream")
        proxy = start_proxy(group, sync_upstream.url, proxy_redis.url)
        nosync = start_proxy(group, upstream.url, proxy_redis.url, name="proxy-nosync",
                             settings={"upstream_sync": "false", "key_prefix": "nosync"})
        floor = start_floor(group)
        yield Targets(group, upstream, proxy, floor, proxy_redis, nosync, sync_upstream)
    finally:
        group.stop()
