"""One round for one claimed session: read both copies, merge (merge.py), store what
changed here, hand over what the upstream lacks, and say what the ledger should do next.

A round costs the proxy one read of the whole session from Redis and the upstream one GET
of its copy, plus, only when the copies differ, one PUT of the whole session (the
"hand-over"), and here one rewrite of the session when stamps or foreign content arrived.
Follow-up rounds (``settle``) poll the upstream's copy after a hand-over, backing off from
the quiet period to a minute, until its promotion has stamped every message and memory
(or about three minutes passed): that is how stamps become visible through the proxy.
An upstream that writes no stamps back at all (long-term memory off) is not polled: once
hand-overs have gone on for that long without a single stamp seen, polls stop until one is.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import orjson

from proxy import codec
from proxy.codec.dialect import imported_scope
from proxy.engine.engine import Engine
from proxy.engine.lookup import delete_upstream_copy
from proxy.engine.plan import Plan
from proxy.errors import Conflict, HttpError, Unsupported
from proxy.observability.metrics import Metrics
from proxy.store.keys import SessionKeys, logical_key
from proxy.store.store import Snapshot, Write
from proxy.sync.copies import Copy
from proxy.sync.ledger import Claim, Outcome
from proxy.sync.merge import Merged, merge
from proxy.sync.records import Record, Records
from proxy.tasks import OffLoop

log = logging.getLogger("proxy.sync")

# Parsing, comparing and digesting a session is O(session) Python work: past this many
# bytes it runs in a worker thread, so that the event loop serving requests gets the
# interpreter back every few milliseconds instead of waiting for the whole of it.
off_loop = OffLoop(256 * 1024)
STORE_ATTEMPTS = 3  # a session written steadily may refuse a merge's store once or twice
SETTLE_WINDOW_MS = 200_000  # follow-up polls stop this long after a hand-over
SETTLE_MAX_DELAY_MS = 60_000
RETRY_MAX_MS = 30_000
# Refusals that a later round may not get: auth not configured yet, the upstream busy.
TRANSIENT = frozenset((401, 403, 408, 409, 425, 429))


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    label: str  # ok, unchanged, failed, rejected, superseded, gone
    delay_ms: float = 0
    step: int = 0


def settle_delay(base_ms: float, step: int) -> float | None:
    """Delay before follow-up poll ``step`` (0-based), None once the window is spent."""
    delays = [min(base_ms * (1 << i), SETTLE_MAX_DELAY_MS) for i in range(step + 1)]
    return None if sum(delays) > SETTLE_WINDOW_MS else float(delays[-1])


def retry_delay(failures: int) -> float:
    """Back off 0.5 s, 1 s, 2 s ... up to 30 s, with jitter so sessions spread out."""
    return min(500.0 * (1 << min(failures, 16)), RETRY_MAX_MS) * random.uniform(0.8, 1.0)


class HandOver:
    def __init__(self, engine: Engine, records: Records, metrics: Metrics,
                 settle_base_ms: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.store = engine.store
        self.upstream = engine.upstream
        self.records = records
        self.metrics = metrics
        self.settle_base_ms = settle_base_ms
        self.clock = clock
        self._first_hand_over: float | None = None  # monotonic; None: none yet
        self._stamps_seen = False  # in any copy read from the upstream since start
        self._said_stampless = False

    async def run(self, claim: Claim, claimed_ms: int) -> Result:
        try:
            return await self._run(claim, claimed_ms)
        except HttpError as exc:  # the upstream or Redis failed: try again later
            log.warning("hand-over of %s failed (%s); retrying", claim.member.decode(),
                        exc.detail)
            return Result("retry", "failed", retry_delay(claim.failures), claim.step)

    async def _run(self, claim: Claim, claimed_ms: int) -> Result:
        namespace, user_id, session_id = orjson.loads(claim.member)
        keys = self.store.keys(logical_key(session_id, namespace, user_id))
        # The upstream's copy first: the proxy's, read after it, is then as fresh as it
        # can be when the merge is stored (a client's write in between refuses that).
        raw = await self.upstream.fetch(session_id, namespace, user_id)
        record = await self.records.load(keys)
        if raw is not None and not await off_loop(len(raw), self._at_exact_key, raw,
                                                  session_id, namespace, user_id, record):
            raw = None  # another session, found by the upstream's lookup by id: not ours
        theirs = await off_loop(len(raw or b""), self._theirs, keys, raw)
        if theirs is not None and not self._stamps_seen:
            self._stamps_seen = theirs.stamped()
        for _ in range(STORE_ATTEMPTS):
            snap = await self.store.snapshot(keys, None)
            if snap is None:  # deleted or expired here since it was marked
                await self.records.forget(keys)
                return Result("gone", "gone")
            size, ours_expires = sum(map(len, snap.messages)), snap.meta.expires
            ours, merged = await off_loop(size, _read_and_merge, snap, theirs, record)
            if merged.copy.same_as(ours):
                break
            stored = await self._store(keys, snap, ours, merged)
            if stored is not None:
                merged = stored
                break
        # else: written here at every attempt; the merge is handed over all the same, and
        # stored by the next round (the writes made the session due again).
        self._report(keys, merged, record)
        ttl = await self._ttl_left(keys, ours_expires)
        same = theirs is not None and merged.copy.same_as(theirs)
        # A session that expires is handed over after every write: each resets its TTL.
        handed = not same or (ttl is not None and claim.seq > 0)
        if handed:
            body = await off_loop(size, merged.copy.put_body, ttl)
            answer = await self.upstream.hand_over(session_id, body)
            if answer.status != 200:
                return self._refused(claim, keys, answer.status, answer.body)
            if await self.records.deleted_since(keys, claimed_ms):
                # Deleted through the proxy while this was in flight: undo it upstream
                # (exactly this key: 0.15.2 would delete another session found by id).
                await delete_upstream_copy(self.upstream, self.engine.dialect, session_id,
                                           namespace, user_id)
                return Result("clean", "superseded")
        if handed or record is None or not same:
            await self.records.save(keys, await off_loop(size, Record.after, merged.copy, record))
        return self._next(claim, handed, merged.copy if handed or theirs is None else theirs)

    async def _ttl_left(self, keys: SessionKeys, expires: bool) -> int | None:
        """Whole seconds the proxy's copy has left, when it expires."""
        if not expires:
            return None
        left_ms = int(await self.store.redis.pttl(keys.meta))
        return max(1, math.ceil(left_ms / 1000)) if left_ms > 0 else None

    def _at_exact_key(self, raw: bytes, session_id: str, namespace: str | None,
                      user_id: str | None, record: Record | None) -> bool:
        """Whether the upstream's answer is the document at this session's own key.

        Under 0.15.2 a GET whose exact key is missing answers with the one session its
        search index finds by id (case-insensitively, in other scopes too), so a session
        never handed over may be answered with someone else's. Such a copy is never
        merged: before the first hand-over the upstream's answer is taken as absent (the
        hand-over then writes the exact key, as a client's PUT would), and after it an
        answer whose scope cannot lie at this key is too."""
        dialect = self.engine.dialect
        if not dialect.lookup_by_id:
            return True
        if record is None:
            return False
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(answer, dict):
            return False
        scope = imported_scope(logical_key, session_id, (namespace, user_id),
                               (answer.get("namespace") or None, answer.get("user_id") or None))
        return scope is not None

    def _theirs(self, keys: SessionKeys, raw: bytes | None) -> Copy | None:
        if raw is None:
            return None
        try:
            return Copy.from_upstream(raw)
        except Unsupported as exc:
            self._diverged("unreadable", "cannot read the upstream's copy of %s (%s); it is "
                           "replaced by the proxy's", keys.logical, exc)
            return None

    def _report(self, keys: SessionKeys, merged: Merged, record: Record | None) -> None:
        if merged.kind == "foreign":
            self._diverged("foreign", "the upstream's copy of %s was written outside the "
                           "proxy: kept %d of its messages and memories, took %d edits",
                           keys.logical, merged.kept, merged.taken)
        elif merged.kind == "stale":
            self._diverged("leftover", "the upstream's copy of %s predates the proxy's; "
                           "replaced by it", keys.logical)
        elif merged.kind == "absent" and record is not None:
            self._diverged("missing", "the upstream's copy of %s is gone (deleted or "
                           "expired there); handed over again", keys.logical)

    def _diverged(self, kind: str, message: str, *args: object) -> None:
        self.metrics.sync_divergences.labels(kind).inc()
        (log.info if kind in ("leftover", "missing") else log.warning)(message, *args)

    async def _store(self, keys: SessionKeys, snap: Snapshot, ours: Copy,
                     merged: Merged) -> Merged | None:
        """Write the merged session here if it is still the version read; returns what
        was stored (the proxy's own copy when the upstream's content cannot be stored
        here), or None when a client wrote the session meanwhile."""
        write = self._write(keys, snap, merged)
        if write is None:
            return Merged(ours, merged.kind)
        async with self.engine.session_lock(keys.logical):
            try:
                await (await self.engine.writes.flusher.submit(write))
            except Conflict:
                return None
            finally:
                self.engine.cache.drop(keys.logical)  # reread: Redis holds the truth
        return merged

    def _write(self, keys: SessionKeys, snap: Snapshot, merged: Merged) -> Write | None:
        copy, meta = merged.copy, snap.meta
        if merged.content_changed:  # foreign content: re-encode the session whole
            _ns, _uid, session_id = orjson.loads(meta.index_member)
            try:
                encoded = codec.encode_messages(list(copy.messages), self.engine.now())
            except codec.Unsupported as exc:
                log.error("foreign content of %s not storable here (%s)", keys.logical, exc)
                return None
            body = codec.PutBody(list(copy.messages), copy.doc(), b"", copy.fields["namespace"],
                                 copy.fields["user_id"], None, copy.fields["tokens"])
            plan = Plan.build(keys, session_id, body, meta, None, encoded, self.engine.now())
            return replace(plan.write, handover=False, keep_rank=True)
        bodies = [orjson.dumps(m) for m in copy.messages]
        new_meta = replace(meta, doc=copy.doc())
        old = b",".join(snap.messages)
        if (meta.input_canonical and meta.input_length == len(old)
                and hashlib.sha256(old).digest() == meta.input_digest):
            # The last PUT sent exactly what is stored: a client that re-sends what it
            # reads (as agent-memory-client does) will send the stamped form next.
            new = b",".join(bodies)
            new_meta = replace(new_meta, input_digest=hashlib.sha256(new).digest(),
                               input_length=len(new))
        return Write(keys, True, meta.version, new_meta, bodies, list(snap.tokens), None,
                     self.engine.clock(), handover=False, keep_rank=True)

    def _refused(self, claim: Claim, keys: SessionKeys, status: int, body: bytes) -> Result:
        if status < 500 and status not in TRANSIENT:
            log.error("the upstream refused the hand-over of %s (%d %s); not retried until "
                      "the session changes", keys.logical, status, body[:300])
            return Result("clean", "rejected")
        log.warning("the upstream answered %d to the hand-over of %s; retrying", status,
                    keys.logical)
        return Result("retry", "failed", retry_delay(claim.failures), claim.step)

    def _polling(self, handed: bool) -> bool:
        """Whether follow-up polls can bring anything back (see the module docstring)."""
        now = self.clock()
        if handed and self._first_hand_over is None:
            self._first_hand_over = now
        if self._stamps_seen or self._first_hand_over is None:
            return True
        if now - self._first_hand_over < SETTLE_WINDOW_MS / 1000:
            return True
        if not self._said_stampless:
            self._said_stampless = True
            log.info("the upstream wrote no stamps back in %.0f s of hand-overs (long-term "
                     "memory off?): no follow-up polls until one shows", SETTLE_WINDOW_MS / 1000)
        return False

    def _next(self, claim: Claim, handed: bool, upstream_view: Copy) -> Result:
        label = "ok" if handed else "unchanged"
        if not self._polling(handed) or not upstream_view.pending():
            return Result("clean", label)
        step = 0 if handed else claim.step
        delay = settle_delay(self.settle_base_ms, step)
        if delay is None:
            return Result("clean", label)
        return Result("settle", label, delay, step + 1)


def _read_and_merge(snap: Snapshot, theirs: Copy | None, record: Record | None
                    ) -> tuple[Copy, Merged]:
    ours = Copy.from_stored(snap.meta.doc, snap.messages)
    return ours, merge(ours, theirs, record, snap.meta.version / 1e6)
