"""Differential testing against the real upstream: send one request to both, compare.

Each side works on its own sessions: the literal ``SIDE`` in a path, query or body becomes
a token unique to the side and the run (``EDIS`` becomes its upper-case form), so the two
never share a session id, namespace or user_id (the proxy imports and then deletes
upstream copies of the ids it serves, so sharing would mix the sides). Answers are
normalized before comparing: each side's token goes back to ``SIDE``/``EDIS``, ULIDs
become ``ULID``, and timestamps within a day of now become ``NOW`` (``NOW.us`` when they
carry microseconds, so PUT's full precision and GET's whole seconds still differ).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

COMPARED_HEADERS = ("content-type", "x-deprecation-warning", "allow", "location")
ULID = re.compile(rb'\b[0-9A-HJKMNP-TV-Z]{26}\b')
STAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{6})?(Z|[+-]\d\d:\d\d)?")
WM = "/v1/working-memory/"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def _mask_stamp(match: re.Match[bytes]) -> bytes:
    text = match.group(1).decode()
    try:
        when = datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        return match.group(0)
    if abs(datetime.now(UTC) - when) > timedelta(days=1):
        return match.group(0)
    return b"NOW.us" if match.group(2) else b"NOW"


def mask(body: bytes) -> bytes:
    return STAMP.sub(_mask_stamp, ULID.sub(b"ULID", body))


class Sides:
    """The upstream and the proxy, each with its own token for ``SIDE``."""

    def __init__(self, direct: aiohttp.ClientSession, proxy: TestClient[Any, Any]) -> None:
        run = uuid.uuid4().hex[:8]
        self.direct = direct
        self.proxy = proxy
        self.tokens = {"direct": f"dx{run}", "proxy": f"px{run}"}

    def fill(self, side: str, text: str) -> str:
        token = self.tokens[side]
        return text.replace("SIDE", token).replace("EDIS", token.upper())

    def normalize(self, side: str, data: bytes) -> bytes:
        token = self.tokens[side]
        data = data.replace(token.encode(), b"SIDE").replace(token.upper().encode(), b"EDIS")
        return mask(data)

    async def one(self, side: str, method: str, path: str, body: bytes | str | None = None,
                  content_type: str | None = "application/json") -> Reply:
        url = self.fill(side, path)
        token = self.tokens[side].encode()
        raw = body.encode() if isinstance(body, str) else body
        data = None if raw is None else raw.replace(b"SIDE", token).replace(
            b"EDIS", token.upper())
        headers = {"Content-Type": content_type} if content_type else {}
        kwargs: dict[str, Any] = {"data": data, "headers": headers, "allow_redirects": False,
                                  "skip_auto_headers": ("Content-Type",)}
        client: Any = self.direct if side == "direct" else self.proxy
        async with client.request(method, url, **kwargs) as resp:
            raw = await resp.read()
            kept = []
            for name in COMPARED_HEADERS:
                for value in resp.headers.getall(name, ()):
                    if name == "location":
                        value = re.sub(r"^https?://[^/]+", "", value)
                    kept.append((name, value))
            headers_out = tuple((n, self.normalize(side, v.encode()).decode()) for n, v in kept)
            return Reply(resp.status, headers_out, self.normalize(side, raw))

    async def both(self, method: str, path: str, body: bytes | str | None = None,
                   content_type: str | None = "application/json") -> tuple[Reply, Reply]:
        want = await self.one("direct", method, path, body, content_type)
        got = await self.one("proxy", method, path, body, content_type)
        return want, got

    async def same(self, method: str, path: str, body: bytes | str | None = None,
                   content_type: str | None = "application/json") -> Reply:
        """Send to both; assert the answers agree; return the (normalized) answer."""
        want, got = await self.both(method, path, body, content_type)
        assert_same(want, got, f"{method} {path} {body!r}")
        return got


def assert_same(want: Reply, got: Reply, what: str = "") -> None:
    assert (got.status, got.headers) == (want.status, want.headers), what
    assert got.body == want.body, f"{what}\nupstream: {want.body!r}\nproxy:    {got.body!r}"


async def upstream_keys(upstream_redis: aioredis.Redis, pattern: str) -> list[bytes]:
    return sorted([k async for k in upstream_redis.scan_iter(match=pattern, count=1000)])


async def stored_keys(proxy_redis: aioredis.Redis) -> set[bytes]:
    """The proxy's data keys (read leases, which come and go with reads, and the id
    index's one-time build marker, which a background task may write at any time, left
    out)."""
    keys = cast(list[bytes], await proxy_redis.keys("amp:*"))
    return {k for k in keys if not k.endswith(b":rl") and k != b"amp:id:built"}


async def with_ttl(proxy_redis: aioredis.Redis, keys: set[bytes]) -> set[bytes]:
    """Those of ``keys`` that expire, or expired since listed (and so may be gone by the
    next look): all but the persistent ones (PTTL -1)."""
    ordered = sorted(keys)
    async with proxy_redis.pipeline(transaction=False) as pipe:
        for key in ordered:
            pipe.pttl(key)
        ttls = await pipe.execute()
    return {k for k, ttl in zip(ordered, ttls, strict=True) if ttl != -1}


async def assert_nothing_stored(proxy_redis: aioredis.Redis, upstream_redis: aioredis.Redis,
                                token: str, proxy_keys_before: int = 0) -> None:
    """No proxy keys beyond ``proxy_keys_before``; no upstream key of the side or scratch."""
    assert len(await stored_keys(proxy_redis)) == proxy_keys_before
    assert await upstream_keys(upstream_redis, f"working_memory:*{token}*") == []
    assert await upstream_keys(upstream_redis, "working_memory:*amp-scratch-*") == []


def j(value: Any) -> bytes:
    return orjson.dumps(value)
