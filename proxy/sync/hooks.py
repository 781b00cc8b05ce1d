"""What the engine tells the upstream sync (engine.UpstreamCopies), so that the proxy and
the upstream agree on which copy is which:

* ``holds``: the upstream's copy is exactly this session now (the engine imported it, or
  stored the upstream's own answer to a PUT made under the session's id, e.g. one it
  summarized). Recorded as handed over, so that the next round sees it as the proxy's
  own and not as a foreign write; an import also gets a follow-up poll, for the stamps
  the upstream may still be writing.
* ``may_import``: not while a DELETE through the proxy may still be followed by a
  hand-over that started before it (that copy is stale, never to be imported).
* ``deleting``: a DELETE through the proxy marks the session deleted before the
  upstream's copy goes; a round that lands after it deletes its own hand-over again.

``SyncHooks.build`` makes the ledger and the records the sync keeps in Redis and turns on
the due marks of writes; it runs before the engine is built, which is given the hooks.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from proxy.config import Settings
from proxy.errors import StoreUnavailable
from proxy.store.connect import RedisClient
from proxy.store.keys import SessionKeys
from proxy.store.store import Store
from proxy.sync.copies import Copy
from proxy.sync.ledger import Ledger
from proxy.sync.records import Record, Records

log = logging.getLogger("proxy.sync")

LEASE_MS = 15_000  # a crashed proxy's claims are taken over after this
SETTLE_MIN_MS = 250.0  # first follow-up poll after a hand-over, at the soonest
# Every shard's earliest due time is read every quiet period, within these bounds: what
# another proxy marked is claimed here at most that much later than it falls due.
RESCAN_MIN_MS, RESCAN_MAX_MS = 50.0, 1_000.0


class SyncHooks:
    def __init__(self, records: Records, ledger: Ledger, settle_delay_ms: float,
                 deadline_s: float = 0.0) -> None:
        self.records = records
        self.ledger = ledger
        self.settle_delay_ms = settle_delay_ms
        self.deadline_s = deadline_s  # a hand-over round's longest run

    @classmethod
    def build(cls, settings: Settings, store: Store, redis: RedisClient) -> SyncHooks:
        """The sync's state in Redis (ledger, records); from now on writes through
        ``store`` mark their sessions due. Built before the engine, which is given it."""
        quiet, max_lag = settings.sync_quiet_ms, settings.sync_max_lag_ms
        # A round is a GET and a PUT (and rarely a DELETE) of the upstream at most.
        deadline_s = 3 * settings.upstream_timeout + 2 * settings.upstream_connect_timeout
        ledger = Ledger(redis, settings.key_prefix, store.holder,
                        limit=settings.sync_concurrency, lease_ms=LEASE_MS, quiet_ms=quiet,
                        max_lag_ms=max_lag,
                        rescan_ms=min(max(quiet, RESCAN_MIN_MS), RESCAN_MAX_MS))
        records = Records(redis, int(deadline_s * 1000) + LEASE_MS)
        store.enable_sync_marks(quiet, max_lag, ledger.note_due)
        return cls(records, ledger, max(quiet, SETTLE_MIN_MS), deadline_s)

    async def holds(self, keys: SessionKeys, doc: bytes, messages: list[bytes],
                    imported: bool) -> None:
        copy = Copy.from_stored(doc, messages)
        try:
            previous = await self.records.load(keys)
            await self.records.save(keys, Record.after(copy, previous))
            if imported and copy.pending():
                member = await self.ledger.redis.hget(keys.meta, "ix")
                if isinstance(member, bytes) and member:
                    await self.ledger.settle(member, self.settle_delay_ms)
        except (RedisError, OSError) as exc:  # the next round sees a divergence, no more
            log.warning("could not record the upstream's copy of %s: %r", keys.logical, exc)

    async def may_import(self, keys: SessionKeys) -> bool:
        try:
            return not await self.records.deleted_since(keys, None)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis unavailable") from exc

    async def deleting(self, keys: SessionKeys) -> None:
        try:
            await self.records.mark_deleted(keys)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis unavailable") from exc
