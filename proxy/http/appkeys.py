"""Typed keys of the resources the application holds (see ``app.py`` for their lifetimes)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from aiohttp import web

from proxy.coherence import Coherence
from proxy.config import Settings
from proxy.engine.cache import SessionCache
from proxy.engine.engine import Engine
from proxy.engine.versions import VersionWatch
from proxy.engine.writes import Writes
from proxy.observability.metrics import Metrics
from proxy.store.store import Store
from proxy.upstream.client import Upstream

SETTINGS = web.AppKey("settings", Settings)
UPSTREAM = web.AppKey("upstream", Upstream)
REDIS = web.AppKey("redis", aioredis.Redis)
STORE = web.AppKey("store", Store)
CACHE = web.AppKey("cache", SessionCache)
COHERENCE = web.AppKey("coherence", Coherence)
WRITES = web.AppKey("writes", Writes)
ENGINE = web.AppKey("engine", Engine)
VERSIONS = web.AppKey("versions", VersionWatch)
METRICS = web.AppKey("metrics", Metrics)
# Set on SIGTERM: /-/readyz answers 503 while requests are still served (see __main__).
DRAINING = web.AppKey("draining", asyncio.Event)
