"""Session identity: the upstream's key scheme, and the proxy's own Redis key names.

The upstream stores a session at ``working_memory[:<namespace>][:<user_id>]:<session_id>``
with empty parts left out and nothing escaped, so namespace and user_id can collide
(contract §5.1). The proxy keeps exactly that identity (the "logical key") so that it
finds and misses the same sessions the upstream would.

All keys of one session share one Redis Cluster hash tag, derived from the logical key
by hashing (a session id may itself contain braces).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from proxy.store.slots import range_of, range_tag


def logical_key(session_id: str, namespace: str | None, user_id: str | None) -> str:
    parts = [p for p in (namespace, user_id) if p]
    return ":".join([*parts, session_id])


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The Redis keys of one session under the proxy's prefix."""

    logical: str
    meta: str  # hash: version, counts, token total, digests, session-level document
    messages: str  # list: canonical JSON of each message, in stored order
    tokens: str  # string: token count of each message as little-endian uint32
    leases: str  # hash: read-lease holder id -> lease end (ms, Redis clock); see leases.py

    @classmethod
    def build(cls, prefix: str, logical: str) -> SessionKeys:
        tag = hashlib.blake2b(logical.encode(), digest_size=10).hexdigest()
        base = f"{prefix}:{{{tag}}}"
        return cls(logical, f"{base}:meta", f"{base}:msgs", f"{base}:toks", f"{base}:rl")

    def all(self) -> tuple[str, str, str]:
        """The keys holding the session's data."""
        return self.meta, self.messages, self.tokens

    def for_scripts(self) -> tuple[str, str, str, str]:
        return self.meta, self.messages, self.tokens, self.leases

    @property
    def synced(self) -> str:
        """Hash: what the upstream sync last handed over for this session (sync/records.py)."""
        return self.meta[:-len("meta")] + "sync"

    @property
    def gone(self) -> str:
        """String: when this session was last deleted through the proxy (ms); short-lived."""
        return self.meta[:-len("meta")] + "gone"


SYNC_SHARDS = 16  # the ledger's shards; part of the key layout, never to change


@dataclass(frozen=True, slots=True)
class SyncKeys:
    """One shard of the upstream sync's ledger under a prefix (see proxy/sync/ledger.py).
    Members are sessions' index members (``[namespace, user_id, session_id]`` JSON).

    The ledger is split into ``SYNC_SHARDS`` shards, ``<prefix>:sync:{<tag>}:*``; the five
    keys of a shard share its hash tag, so each ledger script touches one Redis Cluster
    slot. A session belongs to the shard of its own slot range (``shard_of``: its slot //
    1024), and shard k's tag is a slot in the middle of range k, as the session index does
    (store/index.py): with masters serving contiguous slot ranges, a session's due mark
    sits on the master holding the session (measured: 96% of sessions on 3 masters), so a
    failover stops the marks of that master's sessions only, whose writes stop anyway, and
    the marks spread over the masters as the sessions do. The shard depends only on the
    session's identity and ``SYNC_SHARDS``, so every proxy sharing the Redis, before and
    after a restart, finds a session's entry in the same shard.

    Why 16: at least as many shards as masters in any usual cluster (so each master holds
    some, and a master that holds none of a session's range still loses at most 1/16 of
    the marks when its ledger shard fails over), and few enough that sampling the backlog
    and rescanning every shard for what other proxies marked is a handful of small
    commands per second per proxy.
    """

    due: str  # zset: member -> when its next hand-over round is due (ms, Redis clock)
    dirty: str  # zset: member -> when its oldest change not yet handed over was made
    state: str  # hash: member -> "seq last retry_at step failures"
    claims: str  # zset: member -> when the claim on it runs out (ms)
    owner: str  # hash: member -> "holder seq claimed_at"

    @classmethod
    def build(cls, prefix: str, shard: int) -> SyncKeys:
        base = f"{prefix}:sync:{{{range_tag(shard, SYNC_SHARDS)}}}"
        return cls(f"{base}:due", f"{base}:dirty", f"{base}:state", f"{base}:claims",
                   f"{base}:owner")

    @classmethod
    def shards(cls, prefix: str) -> tuple[SyncKeys, ...]:
        return tuple(cls.build(prefix, k) for k in range(SYNC_SHARDS))

    @staticmethod
    def shard_of(keys: SessionKeys) -> int:
        """The ledger shard of a session: the range of its slot."""
        return range_of(keys.meta, SYNC_SHARDS)

    @staticmethod
    def shard_of_member(prefix: str, member: bytes) -> int:
        namespace, user_id, session_id = json.loads(member)
        return SyncKeys.shard_of(SessionKeys.build(prefix, logical_key(session_id, namespace,
                                                                       user_id)))

    def all(self) -> list[str]:
        return [self.due, self.dirty, self.state, self.claims, self.owner]

    def for_mark(self) -> tuple[str, str, str]:
        return self.due, self.dirty, self.state


def sync_permits_key(prefix: str) -> str:
    """Zset: the sync's round permits, ``<holder>/<n>`` -> when it runs out (ms). At most
    ``sync_concurrency`` exist at once: the limit across all proxies (sync/ledger.py)."""
    return f"{prefix}:sync:permits"


def legacy_sync_keys(prefix: str) -> list[str]:
    """The unsharded ledger of earlier versions (due, dirty, state, claims, owner), whose
    entries a proxy moves into the shards at start (sync/ledger.py ``adopt_legacy``)."""
    base = f"{prefix}:{{{prefix}.sync}}"
    return [f"{base}:{name}" for name in ("due", "dirty", "state", "claims", "owner")]


def id_index_key(prefix: str, combo: tuple[str, str | None, str | None]) -> str:
    """Set of the index members of the sessions matching ``combo`` = (id tag, namespace
    tag or None, user_id tag or None) in the upstream's search index (idindex.py).

    Global, one key per combination, each its own hash tag (a digest, so any id fits):
    in Redis Cluster the sets spread over all slots, a lookup reads one of them, and a
    write that creates a session or changes its scope adds to one per combination of its
    tags (4 for a session with an id, a namespace and a user_id, none holding a comma).
    """
    digest = hashlib.blake2b(json.dumps(combo).encode(), digest_size=10).hexdigest()
    return f"{prefix}:id:{{{digest}}}"


def id_index_built_key(prefix: str) -> str:
    """String: set once the id index holds every session listed in ``<prefix>:index``."""
    return f"{prefix}:id:built"
