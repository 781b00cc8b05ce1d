"""Redis I/O for sessions under the proxy's prefix. Layout (all keys of a session share
the hash tag ``{t}``, see keys.py)::

    <prefix>:{t}:meta   hash    v    version, +1 per write
                                n    number of messages
                                tok  token total of all messages
                                doc  session-level fields as stored (codec-defined JSON)
                                idg  digest of the last accepted PUT's messages, as sent
                                idl  byte length of that JSON
                                can  "1" when those bytes were also the canonical form
                                srt  "1" while messages are in created_at order
                                lc   created_at (µs) of the last message
                                tz   "a" all offset-aware, "n" all naive, "m" mixed
                                ix   this session's member in the index
                                x    "1" when the session has a TTL
    <prefix>:{t}:msgs   list    canonical JSON of each message, in stored order
    <prefix>:{t}:toks   string  token count of each message, little-endian uint32
    <prefix>:index      zset    member JSON [namespace, user_id, session_id], score = last write
    <prefix>:expiry     zset    same members, score = expiry time, for sessions with a TTL
                                (on a Redis Cluster both are sharded by slot, see index.py)
    <prefix>:id:{h}     set     members by the tags of their id and scope (idindex.py)

With the upstream sync on, every write but the sync's own write-backs also marks its
session due for a hand-over in the ledger shard of its session (``enable_sync_marks``;
keys in keys.SyncKeys, script scripts.MARK_DUE), applied after the write's script: on one
server right after it in the same pipeline (``queue_write``), on a cluster by the flusher
in a second pipeline once the script succeeded (``queue_mark``).

A TTL is set on the three session keys (O(1), whatever the session's length).
"""

from __future__ import annotations

import array
import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import orjson
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.exceptions import RedisError

from proxy.errors import StoreUnavailable
from proxy.store import scripts, slots
from proxy.store.batch import Batches
from proxy.store.connect import RedisClient
from proxy.store.idindex import IdIndex, tag_matches
from proxy.store.index import SessionIndex
from proxy.store.keys import SessionKeys, SyncKeys, logical_key

TOKEN = array.array("I").itemsize
P = ParamSpec("P")
R = TypeVar("R")


def _unavailable_on_error(
    method: Callable[Concatenate[Store, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Store, P], Coroutine[Any, Any, R]]:
    """Redis failures leave the store as StoreUnavailable (503), so that errors are mapped
    to answers in one place."""

    @functools.wraps(method)
    async def wrapper(self: Store, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis unavailable") from exc

    return cast("Callable[Concatenate[Store, P], Coroutine[Any, Any, R]]", wrapper)


@dataclass(frozen=True, slots=True)
class Revocation:
    """What a write ended: other proxies' read leases, and how long the longest had left
    (see coherence/leases.py)."""

    version: int  # the session's version after the write (0: deleted)
    holders: tuple[str, ...]
    wait_s: float

    @classmethod
    def from_reply(cls, version: int, wait_ms: int | bytes, holders: bytes | str
                   ) -> Revocation:
        text = holders.decode() if isinstance(holders, bytes) else holders
        return cls(version, tuple(h for h in text.split(",") if h), int(wait_ms) / 1000)


def pack_tokens(counts: list[int]) -> bytes:
    return array.array("I", counts).tobytes()


def unpack_tokens(raw: bytes) -> array.array[int]:
    out = array.array("I")
    out.frombytes(raw)
    return out


@dataclass(slots=True)
class Meta:
    version: int = 0
    count: int = 0
    tokens_total: int = 0
    doc: bytes = b""
    input_digest: bytes = b""
    input_length: int = 0
    input_canonical: bool = False
    sorted: bool = True
    last_created_us: int = 0
    tz: str = ""
    index_member: bytes = b""
    expires: bool = False  # the session has a TTL (written by the scripts as 'x')

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> Meta | None:
        if not raw or b"v" not in raw:
            return None
        return cls(
            version=int(raw[b"v"]), count=int(raw.get(b"n", 0)),
            tokens_total=int(raw.get(b"tok", 0)), doc=raw.get(b"doc", b""),
            input_digest=raw.get(b"idg", b""), input_length=int(raw.get(b"idl", 0)),
            input_canonical=raw.get(b"can") == b"1", sorted=raw.get(b"srt", b"1") == b"1",
            last_created_us=int(raw.get(b"lc", 0)), tz=raw.get(b"tz", b"").decode(),
            index_member=raw.get(b"ix", b""), expires=raw.get(b"x") == b"1",
        )

    def fields(self) -> list[bytes | str | int]:
        """Everything but the version, which the scripts own."""
        return [
            "n", self.count, "tok", self.tokens_total, "doc", self.doc,
            "idg", self.input_digest, "idl", self.input_length,
            "can", "1" if self.input_canonical else "0", "srt", "1" if self.sorted else "0",
            "lc", self.last_created_us, "tz", self.tz, "ix", self.index_member,
        ]


@dataclass(slots=True)
class Write:
    """One session's change, as the flusher sends it: a script call plus index upkeep."""

    keys: SessionKeys
    rewrite: bool  # replace all messages, else append
    expected_version: int | None  # None: unconditional (a whole rewrite needs no base)
    meta: Meta
    messages: list[bytes]
    tokens: list[int]
    ttl_seconds: int | None
    index_score: float
    stale_member: bytes = b""  # an index member to drop (the session's scope changed)
    handover: bool = True  # changed here: the upstream sync hands it over (when on)
    keep_rank: bool = False  # a background write-back: the session keeps its list position

    @property
    def creation_version(self) -> int:
        """The version this write gives a session it creates: the planner's clock in µs."""
        return int(self.index_score * 1_000_000)

    def predicted_version(self) -> int:
        """The version after this write lands, if the session is as it was planned
        (-1, matching nothing, for an unconditional write)."""
        if self.expected_version is None:
            return -1
        if self.expected_version == 0:
            return self.creation_version
        return self.expected_version + 1


@dataclass(frozen=True, slots=True)
class _Marks:
    shards: tuple[tuple[str, str, str], ...]  # each ledger shard's due, dirty, state
    quiet_ms: int
    max_lag_ms: int
    noted: Callable[[int, int], None] | None  # (shard, due ms) of each mark applied


@dataclass(slots=True)
class Snapshot:
    """A consistent read of one session: its meta and a run of its messages."""

    meta: Meta
    start: int  # index of messages[0] in the session
    messages: list[bytes]
    tokens: array.array[int]


class Store:
    def __init__(self, redis: RedisClient, prefix: str, holder: str = "",
                 lease_ms: int = 0, *, replicas: int = 0, replicas_timeout_ms: int = 0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.holder = holder  # this proxy's read-lease holder id (leases.py)
        self.lease_ms = lease_ms
        # Writes go out through batches: one pipeline per server, then WAIT for replicas.
        self.batches = Batches(redis, replicas, replicas_timeout_ms)
        self.cluster = self.batches.cluster
        self.index = SessionIndex(redis, prefix, sharded=self.cluster)
        self.index_key, self.expiry_key = self.index.shards[0].index, self.index.shards[0].expiry
        self.ids = IdIndex(redis, prefix)  # the upstream's lookup by id (0.15.2)
        self._append = redis.register_script(scripts.APPEND)
        self._rewrite = redis.register_script(scripts.REWRITE)
        self._delete = redis.register_script(scripts.DELETE)
        self._lease = redis.register_script(scripts.LEASE)
        self._mark = redis.register_script(scripts.MARK_DUE)
        self.sync_marks: _Marks | None = None
        # On one server a write's mark follows its script in the same pipeline, which
        # keeps the order; a cluster's per-master pipelines run at once (see queue_mark).
        self.inline_marks = not self.cluster
        self.scripts_loaded = False

    def enable_sync_marks(self, quiet_ms: float, max_lag_ms: float,
                          noted: Callable[[int, int], None] | None = None) -> None:
        """Mark every session written from now on due for a hand-over to the upstream;
        ``noted(shard, due ms)`` hears of each mark applied."""
        shards = tuple(k.for_mark() for k in SyncKeys.shards(self.prefix))
        self.sync_marks = _Marks(shards, int(quiet_ms), int(max_lag_ms), noted)

    def marks(self, write: Write) -> bool:
        """Whether ``write`` marks its session due for a hand-over."""
        return self.sync_marks is not None and write.handover

    def queue_mark(self, pipe: Pipeline | ClusterPipeline, write: Write,
                   landed: bool = False) -> None:
        """Queue ``write``'s due mark (when ``marks(write)``): one reply, the due time.
        On one server right after the write's script, and conditional on the version it
        gives the session (a refused write marks nothing); on a cluster, and when the
        write is known to have ``landed``, only once the script replied success, in a
        pipeline sent after."""
        assert self.sync_marks is not None
        marks = self.sync_marks
        keys = marks.shards[SyncKeys.shard_of(write.keys)]
        args: list[bytes | int] = [write.meta.index_member, marks.quiet_ms, marks.max_lag_ms]
        if self.inline_marks and not landed:
            version = write.predicted_version()
            pipe.evalsha(self._mark.sha, 4, *keys, write.keys.meta, *args,
                         "" if version < 0 else version)
        else:
            pipe.evalsha(self._mark.sha, 3, *keys, *args)

    def marked(self, write: Write, due_ms: Any) -> None:
        """A mark of ``write`` replied ``due_ms`` (0: not applied, the write was refused)."""
        noted = self.sync_marks.noted if self.sync_marks is not None else None
        if noted is not None and int(due_ms):
            noted(SyncKeys.shard_of(write.keys), int(due_ms))

    def keys(self, logical: str) -> SessionKeys:
        return SessionKeys.build(self.prefix, logical)

    def channel(self, keys: SessionKeys) -> str:
        """Where writes to this session announce themselves: on a cluster the sharded
        channel of its slot, else "" (the scripts PUBLISH on <prefix>:invalidate)."""
        return slots.channel(self.prefix, slots.slot_of(keys.meta)) if self.cluster else ""

    def pipeline(self) -> Pipeline:
        """An empty pipeline for ``queue_write``; ``execute`` sends it."""
        return self.batches.pipeline()

    async def execute(self, pipe: Pipeline) -> list[Any]:
        """Send ``pipe`` (one pipeline per server, WAIT when asked); per command its
        reply or the exception it failed with."""
        return await self.batches.run(pipe)

    @_unavailable_on_error
    async def version(self, keys: SessionKeys) -> int:
        """The session's version (0: none)."""
        return int(await self.redis.hget(keys.meta, "v") or 0)

    @_unavailable_on_error
    async def lease(self, keys: SessionKeys) -> int:
        """The session's version (0: none), and a read lease on it when it exists."""
        return int(await self._lease(keys=[keys.meta, keys.leases],
                                     args=[self.holder, self.lease_ms]))

    @_unavailable_on_error
    async def meta(self, keys: SessionKeys) -> Meta | None:
        raw = cast(dict[bytes, bytes], await self.redis.hgetall(keys.meta))
        return Meta.from_hash(raw)

    @_unavailable_on_error
    async def snapshot(self, keys: SessionKeys, tail: int | None) -> Snapshot | None:
        """Meta plus the last ``tail`` messages (all when None), read atomically."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.meta)
            if tail is None:
                pipe.lrange(keys.messages, 0, -1)
                pipe.get(keys.tokens)
            elif tail > 0:
                pipe.lrange(keys.messages, -tail, -1)
                pipe.getrange(keys.tokens, -tail * TOKEN, -1)
            raw = await pipe.execute()
        meta = Meta.from_hash(raw[0])
        if meta is None:
            return None
        msgs = cast(list[bytes], raw[1]) if len(raw) > 1 else []
        toks = unpack_tokens(cast(bytes, raw[2] or b"")) if len(raw) > 2 else array.array("I")
        return Snapshot(meta, meta.count - len(msgs), msgs, toks)

    @_unavailable_on_error
    async def messages(self, keys: SessionKeys, start: int, stop: int) -> list[bytes]:
        """Messages ``start`` .. ``stop - 1``."""
        if stop <= start:
            return []
        return cast(list[bytes], await self.redis.lrange(keys.messages, start, stop - 1))

    @_unavailable_on_error
    async def tokens(self, keys: SessionKeys, start: int, stop: int) -> array.array[int]:
        if stop <= start:
            return array.array("I")
        raw = await self.redis.getrange(keys.tokens, start * TOKEN, stop * TOKEN - 1)
        return unpack_tokens(cast(bytes, raw))

    @_unavailable_on_error
    async def load_scripts(self) -> None:
        """SCRIPT LOAD the write scripts (again after a Redis restart lost them)."""
        for script in (self._append, self._rewrite, self._delete, self._lease, self._mark):
            await self.redis.script_load(script.script)
        self.scripts_loaded = True

    def queue_write(self, pipe: Pipeline | ClusterPipeline, write: Write) -> int:
        """Add ``write`` to a pipeline; returns how many replies it will produce, the
        script's first, then its due mark's on one server (``inline_marks``). On a
        cluster, only to one from ``pipeline()`` (redis-py's own refuses EVALSHA)."""
        ttl = "" if write.ttl_seconds is None else str(write.ttl_seconds)
        fields = write.meta.fields()
        expected = "*" if write.expected_version is None else write.expected_version
        args = [expected, ttl, pack_tokens(write.tokens), len(fields) // 2,
                write.creation_version, self.holder, self.lease_ms, self.channel(write.keys),
                *fields, *write.messages]
        script = self._rewrite if write.rewrite else self._append
        # EVALSHA alone: scripts are loaded once (load_scripts), not checked per pipeline.
        pipe.evalsha(script.sha, 4, *write.keys.for_scripts(), *args)
        count = 1  # the script; the rest is its due mark (one server) and index upkeep
        member = write.meta.index_member
        if self.inline_marks and self.marks(write):
            self.queue_mark(pipe, write)  # replies right after the script's reply
            count += 1
        shard = self.index.shard(write.keys)
        drop = [write.stale_member] if write.stale_member not in (b"", member) else []
        if write.ttl_seconds is not None and write.ttl_seconds <= 0:
            drop.append(member)  # the upstream's EXPIRE <= 0 deletes the session at once
        elif not write.keep_rank:
            pipe.zadd(shard.index, {member: write.index_score})
            count += 1
            if write.expected_version in (0, None) or write.stale_member != member:
                count += self.ids.queue_add(pipe, member)  # a new session, or a new scope
            # Without ttl_seconds a running TTL is kept (as the upstream's JSON.SET does).
            if write.ttl_seconds is not None:
                pipe.zadd(shard.expiry, {member: write.index_score + write.ttl_seconds})
                count += 1
        for stale in drop:
            self.index.queue_removal(pipe, write.keys, stale)
            count += 2 + self.ids.queue_remove(pipe, stale)
        return count

    @_unavailable_on_error
    async def delete(self, keys: SessionKeys) -> Revocation:
        """Delete the session; returns the read leases that ended with it."""
        member, wait_ms, holders = await self._delete(keys=list(keys.for_scripts()),
                                                      args=[self.holder, self.channel(keys)])
        if member:
            await self.index.remove(keys, member)
            await self.ids.forget(member)
        return Revocation.from_reply(0, wait_ms, holders)

    @_unavailable_on_error
    async def list_sessions(self, namespace: str | None, user_id: str | None,
                            limit: int, offset: int, now: float) -> tuple[list[str], int]:
        """Session ids in last-write order, filtered like the upstream's tag search."""
        await self._drop_expired(now)
        members = await self.index.members()
        matched = [m for m in map(orjson.loads, members)
                   if _tag_match(m[0], namespace) and _tag_match(m[1], user_id)]
        return [m[2] for m in matched[offset:offset + limit]], len(matched)

    async def _drop_expired(self, now: float) -> None:
        for shard, member in await self.index.expired(now):
            _ns, _uid, sid = orjson.loads(member)
            keys = self.keys(logical_key(sid, _ns, _uid))
            if not await self.redis.exists(keys.meta):
                await self.index.drop(shard, member)
                await self.ids.forget(member)


def index_member(session_id: str, namespace: str | None, user_id: str | None) -> bytes:
    return orjson.dumps([namespace, user_id, session_id])


def _tag_match(stored: str | None, wanted: str | None) -> bool:
    """RediSearch TAG semantics: stored values split on commas, compared case-insensitively."""
    return tag_matches(stored, wanted)
