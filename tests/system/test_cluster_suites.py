"""The engine, replica and parity suites again, on a Redis Cluster (3 masters, 3 replicas)
named by the upstream's URL convention: the same tests, with ``proxy_factory``, ``proxy``
and ``redis_client`` swapped for the cluster's.

Which tests: every test of tests/system/test_replicas.py (coherence between proxies:
leases, sharded invalidation, concurrent writers); of tests/system/test_parity.py the ones
whose answers depend on what the store holds (scoping and key collisions, listing through
the sharded index with its filters, paging and expiry, TTLs, whole replaces, hand-offs to
the upstream, summarization), the others exercising the codec, which a cluster does not
change; of the engine suite, tests/engine/test_append.py and two flusher tests (group
commit with conflicts, driven directly; concurrent PUTs sharing pipelines). Left out:
engine tests that count one server's commands (Meter, INFO) or pause it (CLIENT PAUSE),
which measure a single Redis by design.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import ProxyFactory
from tests.engine import test_append, test_flusher
from tests.system import test_parity, test_replicas
from tests.system.cluster_fixtures import (
    adopt,
    cluster_as_redis_client,
    cluster_proxy_factory,
    redis_cluster,
)

__all__ = ["cluster_as_redis_client", "cluster_proxy_factory", "redis_cluster"]

pytestmark = pytest.mark.cluster


@pytest.fixture
def proxy_factory(cluster_proxy_factory: ProxyFactory) -> ProxyFactory:
    return cluster_proxy_factory


@pytest.fixture
async def proxy(cluster_proxy_factory: ProxyFactory) -> TestClient[Any, Any]:
    return await cluster_proxy_factory()


adopt(globals(), test_replicas)
adopt(globals(), test_parity, [
    "test_e1_to_e3_e11_e14_e15_scoping", "test_e12_e13_list_and_limits",
    "test_e16_summarization_outcome_is_the_upstreams", "test_whole_replace_and_regenerated_ids",
    "test_ttl", "test_ttl_survives_reput_without_it", "test_key_collisions",
    "test_list_order_filters_and_paging", "test_unfiltered_list",
    "test_handed_off_success_is_stored_only_in_the_proxy", "test_put_then_get_shapes"])
adopt(globals(), test_append)
adopt(globals(), test_flusher, ["test_group_commit_and_conflicts",
                                "test_concurrent_puts_share_pipelines"])
