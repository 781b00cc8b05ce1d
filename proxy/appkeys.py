"""Typed keys of the resources the application holds (see ``app.py`` for their lifetimes)."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web

from proxy.config import Settings
from proxy.engine import Engine
from proxy.upstream import Upstream

SETTINGS = web.AppKey("settings", Settings)
UPSTREAM = web.AppKey("upstream", Upstream)
REDIS = web.AppKey("redis", aioredis.Redis)
ENGINE = web.AppKey("engine", Engine)
