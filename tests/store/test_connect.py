"""The proxy's Redis client: the upstream's cluster URL convention, both kinds of client on
real servers, and failing fast when nothing answers."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from proxy.localstack import Service, free_port
from proxy.localstack.cluster import Cluster
from proxy.store.connect import close, connect, is_cluster, plain_url, time_ms
from tests.system.cluster_fixtures import redis_cluster

__all__ = ["redis_cluster"]


@pytest.mark.parametrize(("url", "cluster", "plain"), [
    ("redis://h:6379/0", False, "redis://h:6379/0"),
    ("redis+cluster://h:7000", True, "redis://h:7000"),
    ("rediss+cluster://u:p@h:7000", True, "rediss://u:p@h:7000"),
    ("redis://h:7000?cluster=true", True, "redis://h:7000"),
    ("redis://h:7000?cluster=True&protocol=3", True, "redis://h:7000?protocol=3"),
    ("redis://h:7000?cluster=false", False, "redis://h:7000"),
    ("unix:///tmp/r.sock", False, "unix:///tmp/r.sock"),
])
def test_cluster_urls_follow_the_upstreams_convention(url: str, cluster: bool,
                                                      plain: str) -> None:
    assert is_cluster(url) is cluster
    assert plain_url(url) == plain


async def test_a_server_url_gives_a_pooled_client(proxy_redis: Service) -> None:
    client = connect(proxy_redis.url, 4)
    try:
        assert isinstance(client, aioredis.Redis)
        assert await client.ping()
        assert client.connection_pool.max_connections == 4
    finally:
        await close(client)


@pytest.mark.cluster
@pytest.mark.parametrize("form", ["scheme", "query"])
async def test_a_cluster_url_gives_a_cluster_client(redis_cluster: Cluster, form: str) -> None:
    port = redis_cluster.nodes[0].port
    url = (redis_cluster.url if form == "scheme"
           else f"redis://127.0.0.1:{port}?cluster=true")
    client = connect(url, 8)
    try:
        assert isinstance(client, RedisCluster)
        await client.set("{connect}:k", "v")
        assert await client.get("{connect}:k") == b"v"
        assert len(client.get_primaries()) == 3  # found the rest from one node
    finally:
        await close(client)


async def test_nothing_listening_fails_fast() -> None:
    client = connect(f"redis://127.0.0.1:{free_port()}/0", 4)
    started = time.monotonic()
    try:
        with pytest.raises(RedisConnectionError):
            await client.ping()
    finally:
        await close(client)
    took = time.monotonic() - started
    print(f"refused connection reported after {1000 * took:.0f} ms")
    assert took < 1.0


def test_time_ms_reads_a_time_reply() -> None:
    assert time_ms((b"1700000000", b"123456")) == 1_700_000_000_123
    assert time_ms((1, 999)) == 1000
