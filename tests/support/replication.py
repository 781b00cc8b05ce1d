"""Make one redis-server the replica of another, and wait until it really is one.

A replica's first sync forks the primary for an RDB snapshot; on a loaded machine that
takes seconds. Until the primary counts the replica as online, a WAIT for it times out,
so a test that starts writing earlier measures the sync, not what it means to."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

READY_TIMEOUT = 60.0  # seconds: generous, it only costs time when something is broken


async def replicate(primary_url: str, replica_url: str,
                    timeout: float = READY_TIMEOUT) -> None:
    """REPLICAOF, then wait until the replica's link is up and the primary's WAIT counts
    it; fails with one clear line when that does not happen within ``timeout``."""
    host_port = primary_url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    async with aioredis.Redis.from_url(replica_url) as replica, \
            aioredis.Redis.from_url(primary_url) as primary:
        await replica.replicaof(host, port)
        while True:
            link = (await replica.info("replication")).get("master_link_status")
            if link == "up" and int(await primary.execute_command("WAIT", 1, 100)) >= 1:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{replica_url} did not become a replica of "
                                     f"{primary_url} within {timeout:.0f} s (link: {link})")
            await asyncio.sleep(0.05)
