"""The whole-session PUT that resends the stored messages, answered in O(new messages).

A client that keeps its transcript sends, on every turn, all of it again plus the turn's
messages. Beyond receiving the body and sending its echo back, such a PUT here costs what
its new messages cost:

1. find ``"messages": [`` in the raw body (codec/rawbody.py), and the session the last PUT
   of this session id wrote (the cache remembers it, before the body's scope is known);
2. prove the array begins with the bytes that PUT recorded (plan.prove: one memcmp against
   the bytes kept with the cached tail, else one SHA-256 pass against the stored digest);
3. parse the body with those bytes replaced by a sentinel (the new messages and the session
   fields only), and check the sentinel landed as the top-level array's first element;
4. plan and commit the new messages (plan.plan_proven), and answer with an echo built from
   bytes already held: the recorded input itself when it was canonical, else the cache.

Whenever any step does not hold, ``put_repeating`` returns None before changing anything
and Engine.put parses the body whole, as it always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from proxy import codec
from proxy.codec import rawbody
from proxy.codec.render import splice_messages
from proxy.engine.cache import SessionCache
from proxy.engine.plan import Plan, plan_proven, provable, prove
from proxy.store.keys import SessionKeys, logical_key
from proxy.tasks import OffLoop
from proxy.upstream.credentials import verify_caller

if TYPE_CHECKING:
    from proxy.engine.engine import Engine

OFFLOAD_BYTES = 1 << 20  # a digest over more than this is computed off the event loop
hashing = OffLoop(OFFLOAD_BYTES)  # the default executor: hashlib lets go of the GIL


@dataclass(frozen=True, slots=True)
class Repeated:
    """A PUT answered here: the response body, and whether a message had no created_at."""

    body: bytes
    generated_timestamp: bool


async def put_repeating(engine: Engine, session_id: str, raw: bytes,
                        content_type: str | None, query: Mapping[str, str],
                        now: datetime) -> Repeated | None:
    """Answer a PUT that repeats its session's stored messages, or None (nothing done)."""
    start = rawbody.array_start(raw)
    if start is None:
        return None
    entry = engine.cache.by_session(session_id)
    if entry is None:
        return None
    meta, known = entry.meta, entry.known
    unkept = known is None or known.meta is not meta
    if unkept and provable(meta, raw, start):
        # No kept bytes to compare: a big prefix is hashed in a thread, not on the event
        # loop every other request waits on.
        proof = await hashing(meta.input_length, prove, meta, None, raw, start)
    else:
        proof = prove(meta, known, raw, start)
    if proof is None:
        return None
    try:
        q = codec.parse_query(query, "put")
        body = codec.parse_put(rawbody.with_sentinel(raw, start, proof.length),
                               content_type, now)
    except codec.Unsupported:
        return None
    new = rawbody.after_sentinel(body.messages)
    keys = entry.keys
    if new is None or logical_key(session_id, body.namespace, body.user_id) != keys.logical:
        return None
    if not engine.dialect.readable(body.doc):
        return None  # for the upstream, as Engine.put decides
    await verify_caller()
    async with engine.session_lock(keys.logical):
        if engine.cache.peek(keys.logical) is not entry or entry.meta is not meta:
            return None  # written meanwhile: the proof was against an older session
        # body.messages keeps the sentinel: the render sees a session with messages.
        try:
            plan = plan_proven(keys, session_id, body, new, entry, proof, now)
        except codec.Unsupported:
            return None
        if engine.dialect.would_summarize(plan.tokens_total, q):
            return None  # the upstream would summarize: Engine.put hands it over
        # The echo's stored part, in canonical form: the body's own bytes when the recorded
        # input was canonical, else the cached tail when it holds the whole session, else
        # read from Redis (once: it is cached for the next PUT).
        head: bytes | memoryview | None = proof.head() if meta.input_canonical else None
        whole = head is None and entry.start == 0 and (
            entry.count + len(new) <= engine.cache.max_messages)  # never trimmed meanwhile
        if head is None and not whole:
            head = await engine.stored_head(entry, entry.count)
            if head is None:
                return None
        rendered = codec.render_put(session_id, body, b"[]", plan.tokens_total, q,
                                    engine.dialect)
        new_json = b",".join(plan.write.messages)
        echo: list[bytes] = []

        def build_echo() -> None:
            # Needs nothing the write changes: built while Redis runs the write. The view
            # of the cached tail is released before the commit extends it.
            with memoryview(entry.blob) as cached:
                stored = cached if head is None else head
                parts = [stored, b",", new_json] if len(stored) and new_json else [
                    stored if len(stored) else new_json]
                echo.append(splice_messages(rendered, parts))

        await engine.writes.commit(plan, entry, meanwhile=build_echo)
        remember(engine.cache, session_id, keys, plan)
    return Repeated(echo[0], plan.generated_timestamp)


def remember(cache: SessionCache, session_id: str, keys: SessionKeys, plan: Plan) -> None:
    """After a committed PUT: keep its input with the session's cached tail, for the next
    PUT's proof, and note which tail this session id's PUTs write."""
    entry = cache.peek(keys.logical)
    if entry is None:
        return
    plan.remember_input(entry)
    cache.note_put(session_id, entry)
    cache.put(entry)  # its size changed
