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
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from proxy.errors import StoreUnavailable
from proxy.store.keys import SessionKeys
from proxy.sync.copies import Copy
from proxy.sync.ledger import Ledger
from proxy.sync.records import Record, Records

log = logging.getLogger("proxy.sync")


class SyncHooks:
    def __init__(self, records: Records, ledger: Ledger, settle_delay_ms: float) -> None:
        self.records = records
        self.ledger = ledger
        self.settle_delay_ms = settle_delay_ms

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
