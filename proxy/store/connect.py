"""The proxy's Redis client: one server, or a Redis Cluster.

A cluster is named as the upstream names it (agent-memory-server, Docket): the scheme
``redis+cluster://host:port`` (``rediss+cluster://`` with TLS), or any Redis URL with the
query parameter ``cluster=true``. One reachable node is enough; the client learns the
others and the slot map from it, and again after a failover or a resharding.

Both clients fail fast: a refused connection is retried twice within ~30 ms (a pooled
connection that died while idle, or a node just restarted), then the caller's request
fails (503) instead of waiting; the flusher and the listener retry on their own schedule.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

RedisClient = aioredis.Redis | RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_TRUE = {"true", "1", "yes"}

CONNECT_TIMEOUT = 2.0  # seconds to open a connection
COMMAND_TIMEOUT = 5.0  # seconds a reply may take (a WAIT's own timeout is shorter)


def is_cluster(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in CLUSTER_SCHEMES:
        return True
    return any(k == "cluster" and v.lower() in _TRUE for k, v in parse_qsl(parts.query))


def plain_url(url: str) -> str:
    """``url`` as redis-py reads it: the scheme without ``+cluster``, no ``cluster``
    parameter (redis-py would pass it on to every connection)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query)
    if parts.scheme not in CLUSTER_SCHEMES and all(k != "cluster" for k, _ in pairs):
        return url
    scheme = CLUSTER_SCHEMES.get(parts.scheme, parts.scheme)
    query = urlencode([(k, v) for k, v in pairs if k != "cluster"])
    return urlunsplit((scheme, parts.netloc, parts.path, query, parts.fragment))


def _retry() -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.02), retries=2)


def connect(url: str, max_connections: int) -> RedisClient:
    """A client for ``url``: RedisCluster for a cluster URL, else a Redis on a blocking
    pool (a burst of requests waits for a connection instead of failing)."""
    options: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT,
                               "socket_timeout": COMMAND_TIMEOUT, "retry": _retry()}
    if is_cluster(url):
        return RedisCluster.from_url(plain_url(url), max_connections=max_connections,
                                     **options)
    pool = aioredis.BlockingConnectionPool.from_url(
        plain_url(url), max_connections=max_connections, timeout=COMMAND_TIMEOUT,
        health_check_interval=30, **options)
    return aioredis.Redis(connection_pool=pool)


async def close(client: RedisClient) -> None:
    if isinstance(client, RedisCluster):
        await client.aclose()
    else:
        await client.aclose(close_connection_pool=True)  # a pool passed in stays open else


def time_ms(reply: Any) -> int:
    """Redis's clock in ms, from a TIME reply (seconds, microseconds)."""
    secs, micros = reply
    return int(secs) * 1000 + int(micros) // 1000
