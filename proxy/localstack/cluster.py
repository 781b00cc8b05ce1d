"""A local Redis Cluster (3 masters, 3 replicas by default) for tests and fault drills.

Every node is the Redis Stack 7.4 ``redis-server`` (no modules), on 127.0.0.1, with a free
client port and a free cluster-bus port (the default, port + 10000, overflows for high
ports). The cluster is formed with CLUSTER ADDSLOTSRANGE / MEET / REPLICATE, as
``redis-cli --cluster create`` does, and a short ``cluster-node-timeout`` so a killed
master fails over in seconds. ``cluster-replica-validity-factor 0`` lets a replica take over
however long its link was down, so a drill always ends with a new master.

Clients: the upstream's URL convention is ``Cluster.url`` (``redis+cluster://host:port``);
redis-py connects with ``redis.asyncio.cluster.RedisCluster.from_url(Cluster.redis_url)``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.asyncio.cluster import RedisCluster

from proxy.localstack.install import Stack
from proxy.localstack.processes import ProcessGroup, Service, free_ports

SLOTS = 16384


@dataclass
class ClusterNode:
    """One redis-server of the cluster; ``service`` is None while it is killed."""

    port: int
    bus_port: int
    workdir: Path
    service: Service | None = None
    node_id: str = ""

    @property
    def alive(self) -> bool:
        return self.service is not None and self.service.process.poll() is None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                           socket_timeout=2, socket_connect_timeout=1)

    def command(self, *args: Any) -> Any:
        with self.client() as c:
            return c.execute_command(*args)


@dataclass(frozen=True)
class NodeView:
    """One line of CLUSTER NODES, as some node sees it."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?"})


def parse_cluster_nodes(text: str) -> list[NodeView]:
    views = []
    for line in text.strip().splitlines():
        parts = line.split()
        port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
        slots = []
        for spec in parts[8:]:
            if spec.startswith("["):  # a slot being migrated
                continue
            lo, _, hi = spec.partition("-")
            slots.append((int(lo), int(hi or lo)))
        views.append(NodeView(parts[0], port, frozenset(parts[2].split(",")),
                              None if parts[3] == "-" else parts[3], tuple(slots)))
    return views


@dataclass
class Cluster:
    group: ProcessGroup
    stack: Stack
    nodes: list[ClusterNode]
    node_timeout_ms: int
    name: str = "cluster"
    killed_at: dict[int, float] = field(default_factory=dict)
    slots_at_kill: dict[int, tuple[tuple[int, int], ...]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The upstream's convention (agent-memory-server, Docket)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    @property
    def redis_url(self) -> str:
        """For redis-py's RedisCluster.from_url: one node; it discovers the rest."""
        return f"redis://127.0.0.1:{self.live_nodes()[0].port}"

    def async_client(self, **kwargs: Any) -> RedisCluster:
        return RedisCluster.from_url(self.redis_url, **kwargs)

    def live_nodes(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.alive]

    def view(self, via: ClusterNode | None = None) -> list[NodeView]:
        node = via or self.live_nodes()[0]
        return parse_cluster_nodes(node.command("CLUSTER", "NODES"))

    def by_id(self, node_id: str) -> ClusterNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def masters(self) -> list[ClusterNode]:
        """Masters serving slots, in slot order, as a live node sees them."""
        views = sorted((v for v in self.view() if v.is_master and v.slots and not v.failed),
                       key=lambda v: v.slots[0])
        return [self.by_id(v.node_id) for v in views]

    def replicas_of(self, master: ClusterNode) -> list[ClusterNode]:
        return [self.by_id(v.node_id) for v in self.view() if v.master_id == master.node_id]

    def master_for_slot(self, slot: int) -> ClusterNode:
        for v in self.view():
            if v.is_master and not v.failed and any(lo <= slot <= hi for lo, hi in v.slots):
                return self.by_id(v.node_id)
        raise LookupError(f"slot {slot} is not served")

    # --- faults ---------------------------------------------------------------------

    def kill(self, node: ClusterNode) -> None:
        """kill -9: no shutdown, no last save, replicas see the link drop."""
        assert node.service is not None, "node already down"
        self.slots_at_kill[node.port] = next(
            v.slots for v in self.view(node) if v.node_id == node.node_id)
        os.killpg(node.service.process.pid, signal.SIGKILL)
        node.service.process.wait()
        self.group.stop(node.service)
        node.service = None
        self.killed_at[node.port] = time.monotonic()

    def wait_failover(self, killed: ClusterNode, timeout: float = 30.0) -> float:
        """Wait until a replica of ``killed`` serves its slots and the cluster is ok;
        returns the seconds since the kill."""
        slots = self.slots_at_kill[killed.port]
        if not slots:
            raise ValueError(f"{killed.port} was not serving slots when killed")

        def promoted() -> bool:
            try:
                owner = self.master_for_slot(slots[0][0])
            except LookupError:
                return False
            return owner is not killed and owner.alive and self._healthy()

        _wait(promoted, timeout, f"no failover of {killed.port}", self._describe)
        return time.monotonic() - self.killed_at[killed.port]

    def restart(self, node: ClusterNode, timeout: float = 30.0) -> None:
        """Start a killed node again on its port and nodes.conf: it learns that its slots
        moved on, becomes a replica of their new owner and resyncs."""
        self._start(node)
        _wait(self._healthy, timeout, f"{node.port} did not rejoin", self._describe)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        _wait(self._healthy, timeout, "cluster not healthy", self._describe)

    def stop(self) -> None:
        for node in self.nodes:
            if node.service is not None:
                self.group.stop(node.service)
                node.service = None

    # --- internals ------------------------------------------------------------------

    def _start(self, node: ClusterNode) -> None:
        cmd = [str(self.stack.redis_server), "--port", str(node.port), "--bind", "127.0.0.1",
               "--dir", str(node.workdir), "--save", "", "--appendonly", "no",
               "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
               "--cluster-port", str(node.bus_port),
               "--cluster-node-timeout", str(self.node_timeout_ms),
               "--cluster-replica-validity-factor", "0",
               # a replica's first sync starts at once, not after the default 5 s
               "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        node.service = self.group.start(
            f"{self.name}-{node.port}", cmd, f"redis://127.0.0.1:{node.port}",
            lambda: _pings(node), env={"LD_LIBRARY_PATH": str(self.stack.ssl_dir)})

    def _healthy(self) -> bool:
        """Every live node: state ok, the same slot map, every live node known and not
        failed; every live replica linked and synced."""
        try:
            maps = set()
            live_ids = {n.node_id for n in self.live_nodes()}
            for node in self.live_nodes():
                info = node.command("CLUSTER", "INFO")
                if "cluster_state:ok" not in info:
                    return False
                views = self.view(node)
                known = {v.node_id: v for v in views}
                if any(i not in known or known[i].failed for i in live_ids):
                    return False
                maps.add(tuple(sorted((v.slots, v.node_id) for v in views
                                      if v.is_master and v.slots and not v.failed)))
                if "slave" in known[node.node_id].flags:
                    with node.client() as c:
                        repl = c.info("replication")
                    if repl.get("master_link_status") != "up" or repl.get(
                            "master_sync_in_progress"):
                        return False
            return len(maps) == 1
        except (redis.RedisError, OSError):
            return False

    def _describe(self) -> str:
        try:
            return "\n".join(f"{v.port} {','.join(sorted(v.flags))} slots={v.slots}"
                             for v in self.view())
        except (redis.RedisError, OSError, IndexError) as exc:
            return repr(exc)


def start_cluster(group: ProcessGroup, stack: Stack, masters: int = 3, replicas: int = 1,
                  node_timeout_ms: int = 1000, name: str = "cluster",
                  timeout: float = 30.0) -> Cluster:
    """Start ``masters * (1 + replicas)`` nodes and form a cluster of them."""
    nodes = []
    count = masters * (1 + replicas)
    ports = free_ports(2 * count)  # distinct: a node's port and every bus port
    for port, bus_port in zip(ports[:count], ports[count:], strict=True):
        workdir = group.workdir / f"{name}-{port}"
        workdir.mkdir(parents=True, exist_ok=True)
        nodes.append(ClusterNode(port, bus_port, workdir))
    cluster = Cluster(group, stack, nodes, node_timeout_ms, name)
    try:
        for node in nodes:
            cluster._start(node)
            node.node_id = node.command("CLUSTER", "MYID")
        primaries, secondaries = nodes[:masters], nodes[masters:]
        for i, node in enumerate(primaries):
            lo, hi = i * SLOTS // masters, (i + 1) * SLOTS // masters - 1
            node.command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
            node.command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)  # no epoch collisions to settle
        for node in nodes[1:]:
            nodes[0].command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        everyone = len(nodes)
        _wait(lambda: all(_known(n) == everyone for n in nodes), timeout,
              "nodes did not meet", cluster._describe)
        for i, node in enumerate(secondaries):
            node.command("CLUSTER", "REPLICATE", primaries[i % masters].node_id)
        cluster.wait_healthy(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _known(node: ClusterNode) -> int:
    views = parse_cluster_nodes(node.command("CLUSTER", "NODES"))
    return sum(1 for v in views if "handshake" not in v.flags)


def _pings(node: ClusterNode) -> bool:
    try:
        return bool(node.command("PING"))
    except (redis.RedisError, OSError):
        return False


def _wait(done: Callable[[], bool], timeout: float, what: str,
          describe: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f} s:\n{describe()}")
        time.sleep(0.05)
