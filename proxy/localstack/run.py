"""``agent-memory-proxy up``: the whole local stack in one command, stopped by Ctrl-C.
The upstream version is ``$AMP_UPSTREAM_VERSION``, else the newest supported
(``RUN_VERSION``); the proxy learns it from the upstream, as in front of any server."""

from __future__ import annotations

import dataclasses
import logging
import os

from proxy.config import Settings
from proxy.localstack.install import StackUnavailable, cache_root, ensure_stack, run_version
from proxy.localstack.processes import ProcessGroup, start_redis, start_upstream

log = logging.getLogger("proxy.localstack")


def run_local_stack(settings: Settings) -> int:
    try:
        stack = ensure_stack(cache_root(os.environ), version=run_version(os.environ))
    except StackUnavailable as exc:
        log.error("%s", exc)
        return 1
    group = ProcessGroup()
    try:
        upstream_redis = start_redis(group, stack, "upstream-redis")
        upstream = start_upstream(group, stack, upstream_redis.url)
        proxy_redis = start_redis(group, stack, "proxy-redis", modules=False)
        settings = dataclasses.replace(settings, upstream_url=upstream.url,
                                       redis_url=proxy_redis.url)
        print(f"upstream agent-memory-server {stack.version}: {upstream.url}  "
              f"(Redis {upstream_redis.url})")
        print(f"proxy Redis:                  {proxy_redis.url}")
        print(f"agent-memory-proxy:           http://{settings.host}:{settings.port}")
        print("Ctrl-C stops everything.", flush=True)
        from proxy.__main__ import serve

        serve(settings)
    except KeyboardInterrupt:
        pass
    finally:
        group.stop()
        log.info("local stack stopped (logs were in %s)", group.workdir)
    return 0
