"""The working-memory engine: PUT, GET, DELETE and list, answered from Redis and the cache.

Costs follow what changed or what was asked for, never the transcript's length:

* PUT dumps the body's messages once (C) and compares the session's stored prefix by
  digest (C). When the body only appends, just the new messages are encoded, counted
  and written. Anything else is detected and rewritten whole.
* GET of the last k messages slices the cached tail (no Redis command while this proxy holds
  a read lease, see coherence/, else one O(1) version check), or reads only that tail from
  Redis.
* Token totals run with the session, so truncation and percentages cost O(returned).

Requests the fast path cannot answer exactly go to the upstream: a PUT for validation
(upstream/sessions.py), a read by raising ``ForwardToUpstream``.

With the upstream sync on (``sync``, see proxy/sync/), the upstream's copy of a session is
the synced one: it is kept, not deleted, after an import or a create here, and a PUT the
fast path leaves to the upstream is made under the session's own id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Protocol
from weakref import WeakValueDictionary

import orjson

from proxy import codec
from proxy.codec.dialect import V0_14, Dialect
from proxy.coherence import Coherence
from proxy.engine import append, lookup, upstream_copy
from proxy.engine.answer import Answer, not_found
from proxy.engine.answers import Answers
from proxy.engine.cache import SessionCache, SessionTail
from proxy.engine.plan import Plan, plan_put
from proxy.engine.rawput import put_repeating, remember
from proxy.engine.select import Selection, select
from proxy.engine.versions import FixedRules, Rules
from proxy.engine.writes import Writes
from proxy.errors import ForwardToUpstream, InvalidRequest
from proxy.store.keys import SessionKeys, logical_key
from proxy.store.store import Meta, Store
from proxy.tasks import OffLoop, spawn
from proxy.upstream.credentials import verify_caller
from proxy.upstream.sessions import UpstreamSessions

log = logging.getLogger("proxy.engine.engine")

# PUT bodies past 1 MiB are parsed, planned and rendered in a worker thread: for 50 MB
# that is seconds of token counting and hashing (which release the GIL) that would stall
# every other request on the event loop. One thread: big bodies queue behind each other
# rather than share two cores, and their allocations stay in one malloc arena (each
# thread's arena keeps its peak).
OFFLOAD_BYTES = 1 << 20
off_loop = OffLoop(OFFLOAD_BYTES, ThreadPoolExecutor(1, thread_name_prefix="big-body"))


DEPRECATION = ("x-deprecation-warning", "messages[].created_at will become required in the "
               "next major version. Please provide timestamps for all messages.")


class UpstreamCopies(Protocol):
    """What the engine tells the upstream sync (proxy/sync/hooks.py)."""

    async def holds(self, keys: SessionKeys, doc: bytes, messages: list[bytes],
                    imported: bool) -> None: ...  # the upstream's copy is exactly this now
    async def may_import(self, keys: SessionKeys) -> bool: ...
    async def deleting(self, keys: SessionKeys) -> None: ...  # DELETE: both copies go


class Engine:
    def __init__(self, store: Store, writes: Writes, cache: SessionCache,
                 coherence: Coherence, upstream: UpstreamSessions, *,
                 rules: Rules | None = None, sync: UpstreamCopies | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.writes = writes
        self.cache = cache
        self.coherence = coherence
        self.upstream = upstream
        self.clock = clock
        self._rules = rules if rules is not None else FixedRules()
        self.sync = sync  # None: the upstream sync is off
        self._locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()
        self.answers = Answers(cache, coherence)  # warm GETs answered again (answers.py)

    def session_lock(self, logical: str) -> asyncio.Lock:
        lock = self._locks.get(logical)
        if lock is None:
            lock = self._locks[logical] = asyncio.Lock()
        return lock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    @property
    def dialect(self) -> Dialect:
        """The fronted upstream's rules as known now."""
        return self._rules.current

    async def rules(self) -> Dialect:
        """The rules to answer by, asking the upstream first while they are assumed."""
        if not self._rules.current.confirmed:
            await self._rules.confirm()
        return self._rules.current

    # --- PUT ---------------------------------------------------------------------------

    async def put(self, session_id: str, raw: bytes, content_type: str | None,
                  query: Mapping[str, str], query_string: str) -> Answer:
        now = self.now()
        # Most PUTs resend the stored messages plus a few: proven from the raw bytes.
        repeated = await put_repeating(self, session_id, raw, content_type, query, now)
        if repeated is not None:
            answer = Answer(200, repeated.body)
            if repeated.generated_timestamp:
                answer.headers[DEPRECATION[0]] = DEPRECATION[1]
            return answer
        try:
            q = codec.parse_query(query, "put")
            body = await off_loop(len(raw), codec.parse_put, raw, content_type, now)
        except codec.Unsupported:
            return await upstream_copy.put_via_upstream(self, session_id, raw, content_type,
                                                        query_string)
        if not self.dialect.readable(body.doc):  # 0.15.2 takes such memories client-shaped
            return await upstream_copy.put_via_upstream(self, session_id, raw, content_type,
                                                        query_string)
        await verify_caller()  # the fast path answers: only a client the upstream accepts
        keys = self.store.keys(logical_key(session_id, body.namespace, body.user_id))
        async with self.session_lock(keys.logical):
            planned = await self._plan(keys, session_id, body, q, now, len(raw))
            if planned is not None:
                plan, tail, echo = planned
                await self.writes.commit(plan, tail)
                remember(self.cache, session_id, keys, plan)
        if planned is None:
            # Not for the fast path (an odd message, or the upstream would summarize):
            # outside the session lock, since storing the upstream's answer takes it.
            return await upstream_copy.put_via_upstream(self, session_id, raw, content_type,
                                                        query_string)
        answer = Answer(200, await off_loop(len(raw), codec.render_put, session_id, body, echo,
                                            plan.tokens_total, q, self.dialect))
        if plan.generated_timestamp:
            answer.headers[DEPRECATION[0]] = DEPRECATION[1]
        if tail is None and self.sync is None:
            spawn(upstream_copy.forget_upstream_copy(self, session_id, body.namespace,
                                                    body.user_id),
                  name=f"forget-upstream:{keys.logical}")
        return answer

    async def _plan(self, keys: SessionKeys, session_id: str, body: codec.PutBody,
                    q: codec.Query, now: datetime, size: int = 0
                    ) -> tuple[Plan, SessionTail | None, bytes] | None:
        """Plan the PUT and build its echo; None when it must go to the upstream."""
        tail = await self.tail_for_write(keys)
        try:
            plan = await off_loop(size, plan_put, keys, session_id, body, tail, now)
        except codec.Unsupported:
            return None
        if body.messages and self.dialect.would_summarize(plan.tokens_total, q):
            return None  # the upstream would summarize (or fail without an LLM)
        if plan.echo is not None or tail is None:
            return plan, tail, plan.echo or _array(b"", plan.write.messages)
        head = await self.stored_head(tail, plan.prefix_count)
        if head is None:
            # The session moved since it was cached: write this PUT whole instead.
            self.cache.drop(keys.logical)
            plan = plan.as_rewrite()
            return plan, None, _array(b"", plan.write.messages)
        return plan, tail, _array(head, plan.write.messages)

    async def stored_head(self, tail: SessionTail, keep: int) -> bytes | None:
        """The first ``keep`` stored messages, comma-joined, caching the whole session
        for the next PUT; None when Redis no longer holds the version ``tail`` describes."""
        if keep == 0:
            return b""
        if tail.covers(0):
            return tail.joined_range(0, keep)
        snap = await self.store.snapshot(tail.keys, None)
        if snap is None or snap.meta.version != tail.meta.version:
            return None
        tail.reset(snap.start, snap.messages, list(snap.tokens), self.cache.max_messages)
        self.cache.put(tail)
        return b",".join(snap.messages[:keep])

    async def tail_for_write(self, keys: SessionKeys) -> SessionTail | None:
        """The session as PUT planning needs it: meta only (its version is checked by
        the write itself, so a stale cache costs one re-plan, never a wrong result)."""
        entry = self.cache.get(keys.logical)
        if entry is not None:
            return entry
        meta = await self.store.meta(keys)
        if meta is None:
            return None
        return SessionTail(keys, meta, start=meta.count)

    # --- GET ---------------------------------------------------------------------------

    async def get(self, session_id: str, query: Mapping[str, str]) -> Answer:
        key = self.answers.key(session_id, query)
        known = self.answers.find(key, self.dialect)
        if known is not None:
            await verify_caller()
            return Answer(200, known)
        try:
            q = codec.parse_query(query, "get")
        except codec.Unsupported:
            raise ForwardToUpstream("not for the fast path") from None
        await verify_caller()
        keys = self.store.keys(logical_key(session_id, q.namespace, q.user_id))
        limit = q.recent_messages_limit if (q.recent_messages_limit or 0) > 0 else None
        entry = await self.tail_for_read(keys, limit)
        if entry is None:
            entry = await self._elsewhere(session_id, q, keys, limit)
            if entry is None:
                return not_found(session_id)
        if not self.dialect.readable(entry.meta.doc):
            return not_found(session_id)  # 0.15.2 fails to read such memories back
        chosen = await select(self.store, entry, limit, codec.truncation_limit(q))
        if chosen is None:
            return not_found(session_id)  # the upstream's sort fails on mixed timestamps
        body = render_selection(session_id, entry.meta, q, chosen, self.dialect)
        if entry.keys.logical == keys.logical:  # not one found by id: that may change
            self.answers.keep(key, entry, limit, self.dialect, body)
        return Answer(200, body)

    async def tail_for_read(self, keys: SessionKeys, limit: int | None) -> SessionTail | None:
        entry = self.cache.get(keys.logical)
        if entry is not None and entry.pending:
            return entry  # ahead of Redis: acknowledged writes not yet landed
        if entry is not None:
            first = max(0, entry.count - limit) if limit else 0
            covered = entry.covers(first) or entry.count > self.cache.max_messages
            if covered and self.coherence.trusted(entry):
                return entry
            since = self.coherence.seen()
            version = await self.coherence.check_version(keys)
            if version == entry.meta.version and covered:
                entry.checked = since
                return entry
            self.cache.drop(keys.logical)
        want = min(limit, self.cache.max_messages) if limit else None
        since = self.coherence.seen()
        snap = await self.store.snapshot(keys, want)
        if snap is None:
            return None
        entry = SessionTail(keys, snap.meta, checked=since)
        entry.reset(snap.start, snap.messages, list(snap.tokens), self.cache.max_messages)
        self.cache.put(entry)
        return entry

    async def _elsewhere(self, session_id: str, q: codec.Query, keys: SessionKeys,
                         limit: int | None) -> SessionTail | None:
        """A session missing at its exact key: the one found by id when the rules say so
        (lookup.py; none when ambiguous), else one only the upstream holds."""
        if (await self.rules()).lookup_by_id:
            found = await self.store.ids.find(session_id, q.namespace, q.user_id)
            if found.ambiguous:
                return None
            if found.member is not None:
                entry = await self.tail_for_read(self.store.keys(found.logical), limit)
                if entry is not None and entry.meta.index_member == found.member:
                    return entry
                await self.store.ids.forget(found.member)  # a leftover
        return await upstream_copy.import_session(self, session_id, q.namespace, q.user_id,
                                                  keys)

    # --- append (beyond the upstream's API) ----------------------------------------------

    async def append(self, session_id: str, raw: bytes, query: Mapping[str, str]) -> Answer:
        """Append messages without resending the transcript (see engine/append.py)."""
        body = codec.parse_append(raw)
        await verify_caller()
        try:
            q = codec.parse_query(query, "put")
        except codec.Unsupported as exc:
            raise InvalidRequest(str(exc)) from None
        namespace = body.namespace or query.get("namespace") or None
        user_id = body.user_id or query.get("user_id") or None
        now = self.now()
        try:
            encoded = codec.encode_messages(body.messages, now)
        except codec.Unsupported as exc:
            raise InvalidRequest(f"invalid message: {exc}",
                                 422 if "empty" not in str(exc) else 400) from None
        keys = self.store.keys(logical_key(session_id, namespace, user_id))
        async with self.session_lock(keys.logical):
            tail = await self.tail_for_write(keys)
            meta = tail.meta if tail else None
            total = (meta.tokens_total if meta else 0) + sum(m.tokens for m in encoded)
            summarize = self.dialect.would_summarize(total, q)
            if not summarize:
                plan = Plan.append(keys, session_id, meta, namespace, user_id, encoded, now)
                plan = await self.writes.commit(plan, tail)
                count, total = plan.write.meta.count, plan.tokens_total
        if summarize:
            return await self._append_by_summarizing_put(session_id, keys, meta is not None,
                                                         body, namespace, user_id, query)
        pct = codec.percentages(total, count > 0, q, self.dialect.threshold)
        return Answer(200, codec.render_append(session_id, namespace, user_id, count, pct))

    async def _append_by_summarizing_put(
            self, session_id: str, keys: SessionKeys, exists: bool, body: codec.AppendBody,
            namespace: str | None, user_id: str | None, query: Mapping[str, str]) -> Answer:
        """The rare heavy case: the session plus the new messages as one PUT, which the
        upstream summarizes; its outcome is stored here as any PUT's is."""
        meta = await self.store.meta(keys) if exists else None
        stored = await self.store.messages(keys, 0, meta.count) if meta else []
        raw = append.summarizing_put(meta, stored, body.messages, namespace, user_id)
        answer = await self.put(session_id, raw, "application/json", query,
                                append.put_query_string(query))
        if answer.status != 200:
            return answer
        result = orjson.loads(answer.body)
        pct = (result["context_percentage_total_used"],
               result["context_percentage_until_summarization"])
        return Answer(200, codec.render_append(session_id, namespace, user_id,
                                               len(result["messages"]), pct))

    # --- DELETE and list ---------------------------------------------------------------

    async def delete(self, session_id: str, query: Mapping[str, str]) -> Answer:
        q = codec.parse_query(query, "delete")
        await verify_caller()
        keys = self.store.keys(logical_key(session_id, q.namespace, q.user_id))
        namespace, user_id, held = q.namespace, q.user_id, True
        if (await self.rules()).lookup_by_id:
            target = await lookup.delete_target(self, session_id, q)
            if target is None:
                return Answer(200, b'{"status":"ok"}')  # several found by id: a no-op
            keys, (session_id, namespace, user_id), held = target
        async with self.session_lock(keys.logical):
            await self.writes.settle(keys.logical)
            if self.sync is not None:
                await self.sync.deleting(keys)
            # Upstream first: if it fails, nothing changed anywhere. Nothing held here:
            # the upstream applies its own rule to what only it holds.
            if held:
                await lookup.delete_upstream_copy(self.upstream, self.dialect, session_id,
                                                  namespace, user_id)
            else:
                await self.upstream.delete(session_id, namespace, user_id)
            self.cache.drop(keys.logical)
            await self.delete_stored(keys)
        return Answer(200, b'{"status":"ok"}')

    async def delete_stored(self, keys: SessionKeys) -> None:
        revocation = await self.store.delete(keys)
        await self.coherence.after_delete(keys, revocation)

    async def list_sessions(self, query: Mapping[str, str]) -> Answer:
        try:
            q = codec.parse_query(query, "list")
        except codec.Unsupported:
            raise ForwardToUpstream("not for the fast path") from None
        await verify_caller()
        ids, total = await self.store.list_sessions(q.namespace, q.user_id, q.limit, q.offset,
                                                    self.clock())
        return Answer(200, orjson.dumps({"sessions": ids, "total": total}))


def _array(head: bytes, new: list[bytes]) -> bytes:
    """A JSON array of the comma-joined ``head`` followed by the ``new`` messages."""
    tail = b",".join(new)
    return b"[" + head + (b"," if head and tail else b"") + tail + b"]"


def render_selection(session_id: str, meta: Meta, q: codec.Query, chosen: Selection,
                     dialect: Dialect = V0_14) -> bytes:
    return codec.render_get(session_id, meta.doc, q.namespace, b"[" + chosen.joined + b"]",
                            chosen.tokens, q, dialect)


__all__ = ["Answer", "Engine"]
