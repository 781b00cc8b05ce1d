"""Sending one flush: its commands as one pipeline per Redis server, then, when asked,
WAIT until that many replicas hold what the pipeline wrote.

On one server this is redis-py's pipeline, with ``WAIT`` as its last command (WAIT counts
the writes of its own connection). On a cluster, redis-py's ClusterPipeline will not do:
it refuses EVALSHA, and when one node fails it closes every connection of the client and
retries the whole pipeline. Here the commands are grouped by the master serving their
slot and each group goes out as that node's own pipeline (with its own WAIT), all groups
at once; a node that fails fails only its own group. Commands on different masters are
thus in no order with each other: one that must follow another's success goes out in a
later batch (the upstream sync's due marks, engine/flusher.py). A connection error or a redirection
(MOVED, ASK, TRYAGAIN, CLUSTERDOWN) reloads the slot map at once, and the commands whose
slot another master serves since (a replica promoted by a failover) go out again, once:
a write during a failover fails fast until the promotion, and goes through after it.

Replies come back in command order, an exception in place of each command that failed;
when a WAIT returns fewer replicas than asked, every reply of its pipeline is replaced by
``NotReplicated``: those writes are on the master only, and not acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from proxy.errors import NotReplicated
from proxy.store.connect import RedisClient
from proxy.store.slots import slot_of
from proxy.tasks import cancel_and_wait, spawn

log = logging.getLogger("proxy.store.batch")

_STALE_MAP = (MovedError, AskError, TryAgainError, ClusterDownError)
_KEYED_AT = {b"EVALSHA": 3, b"EVAL": 3, "EVALSHA": 3, "EVAL": 3}  # else the key is args[1]

Command = tuple[tuple[Any, ...], Mapping[str, Any]]


class Batches:
    """Makes and runs the pipelines of one Redis client (one server or a cluster)."""

    def __init__(self, client: RedisClient, replicas: int = 0, timeout_ms: int = 0) -> None:
        self.client = client
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        # On a cluster, pipelines only collect commands (this pool never connects).
        self._collector = aioredis.Redis(connection_pool=aioredis.ConnectionPool())
        self._refreshing: asyncio.Task[None] | None = None

    @property
    def cluster(self) -> bool:
        return isinstance(self.client, RedisCluster)

    def pipeline(self) -> Pipeline:
        """An empty pipeline to queue commands in; nothing is sent before ``run``."""
        if isinstance(self.client, RedisCluster):
            return self._collector.pipeline(transaction=False)
        return self.client.pipeline(transaction=False)

    async def run(self, pipe: Pipeline) -> list[Any]:
        """Send ``pipe``; per command its reply or the exception it failed with. Raises
        when a server could not be reached at all on one server."""
        if isinstance(self.client, RedisCluster):
            return await self._run_cluster(self.client, list(pipe.command_stack))
        if self.replicas:
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        if self.replicas:
            return self._acknowledged(replies[:-1], replies[-1], "redis")
        return replies

    def _acknowledged(self, replies: list[Any], acked: Any, where: str) -> list[Any]:
        if isinstance(acked, Exception) or int(acked) < self.replicas:
            got = acked if isinstance(acked, Exception) else f"{int(acked)} of {self.replicas}"
            log.error("write not acknowledged: %s replicas hold it on %s", got, where)
            failure = NotReplicated(f"write not replicated ({got} replicas)")
            return [r if isinstance(r, Exception) else failure for r in replies]
        return replies

    # --- a cluster ----------------------------------------------------------------------

    async def _run_cluster(self, client: RedisCluster, stack: Sequence[Command]) -> list[Any]:
        await client.initialize()  # at once when already initialized
        replies: list[Any] = [None] * len(stack)
        sent = await self._send(client, stack, range(len(stack)), replies)
        failed = [p for p in range(len(stack)) if p not in sent or _retryable(replies[p])]
        if not failed:
            return replies
        # A node refused or redirected: reload the slot map now, and send again what
        # another node serves since (a replica promoted after a failover). Refused
        # connections ran nothing; a connection lost mid-reply may have run a script,
        # whose conditional version then refuses it (Conflict), and the engine re-plans.
        await self._reload(client)
        moved = [p for p in failed if _owner(client, stack[p]) not in (None, sent.get(p))]
        if moved:
            await self._send(client, stack, moved, replies)
        return replies

    async def _send(self, client: RedisCluster, stack: Sequence[Command],
                    positions: Sequence[int], replies: list[Any]) -> dict[int, str]:
        """Send the commands at ``positions``, one pipeline per master; fills ``replies``
        and returns the node each command went to."""
        groups: dict[str, tuple[ClusterNode, list[PipelineCommand]]] = {}
        sent: dict[int, str] = {}
        for position in positions:
            args, options = stack[position]
            try:
                node = client.nodes_manager.get_node_from_slot(slot_of(key_of(args)))
            except RedisError as exc:  # a slot no master serves (mid-failover)
                replies[position] = exc
                continue
            sent[position] = node.name
            groups.setdefault(node.name, (node, []))[1].append(
                PipelineCommand(position, *args, **options))
        outcomes = await asyncio.gather(*(self._on_node(node, commands)
                                          for node, commands in groups.values()),
                                        return_exceptions=True)
        for (node, commands), outcome in zip(groups.values(), outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome  # cancelled
                log.warning("pipeline to %s failed: %r %s", node.name, outcome, outcome)
                for command in commands:
                    replies[command.position] = outcome
                continue
            for command, reply in zip(commands, outcome, strict=True):
                replies[command.position] = reply
        return sent

    async def _reload(self, client: RedisCluster) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            await asyncio.wait({self._refreshing})  # one reload at a time
            return
        self.refresh()
        assert self._refreshing is not None
        await asyncio.wait({self._refreshing})

    async def _on_node(self, node: ClusterNode, commands: list[PipelineCommand]) -> list[Any]:
        wait = PipelineCommand(-1, "WAIT", self.replicas, self.timeout_ms)
        await node.execute_pipeline([*commands, wait] if self.replicas else commands)
        replies = [c.result for c in commands]
        if self.replicas:
            return self._acknowledged(replies, wait.result, node.name)
        return replies

    def refresh(self) -> None:
        """Reload the slot map in the background (one reload at a time)."""
        if isinstance(self.client, RedisCluster) and (
                self._refreshing is None or self._refreshing.done()):
            self._refreshing = spawn(self._refresh(self.client), name="cluster map refresh")

    @staticmethod
    async def _refresh(client: RedisCluster) -> None:
        try:
            await client.nodes_manager.initialize()
        except (RedisError, OSError) as exc:  # the next failure asks again
            log.warning("cluster slot map refresh failed: %r", exc)

    async def close(self) -> None:
        await cancel_and_wait(self._refreshing)
        await self._collector.aclose(close_connection_pool=True)


def _retryable(reply: Any) -> bool:
    return isinstance(reply, (*_STALE_MAP, RedisConnectionError, OSError))


def _owner(client: RedisCluster, command: Command) -> str | None:
    try:
        return str(client.nodes_manager.get_node_from_slot(slot_of(key_of(command[0]))).name)
    except RedisError:
        return None


def key_of(args: tuple[Any, ...]) -> str:
    """The key that decides a command's slot: the first key of a script, else args[1]."""
    at = _KEYED_AT.get(args[0], 1)
    key = args[at]
    return key.decode() if isinstance(key, bytes) else str(key)
