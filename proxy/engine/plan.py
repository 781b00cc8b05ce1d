"""Plan a PUT: decide what of it is new, and build the one Write that stores it.

The proof that a PUT "begins with exactly the stored messages" costs no Python work per
stored message. The meta keeps the SHA-256 and byte length of the last PUT's messages as
orjson dumps them (compact, the form most clients send as well); equal bytes at a message
boundary mean equal messages: same ids, contents and order. Any edit, drop or reorder
changes those bytes and the session is rewritten. Messages without an id or created_at get
new ones on every PUT (as upstream), so such a PUT never records a digest and the next one
rewrites. Two ways to the proof:

* ``plan_put``: the body parsed whole; its messages dumped once (C), the leading bytes
  hashed (C) and compared with the digest.
* ``plan_proven``: the body's raw bytes already begin with the recorded ones (a memcmp
  against the bytes kept with the cached tail, ``KnownInput``, or the SHA-256 when none
  are kept; see codec/rawbody.py for why the cut is sound). Only the new messages were
  parsed; the digest is extended from the kept hash state by their bytes alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import orjson

from proxy import codec
from proxy.engine.append import session_body
from proxy.engine.cache import KnownInput, SessionTail
from proxy.store.keys import SessionKeys
from proxy.store.store import Meta, Write, index_member

COMMA = ord(",")


def _hash(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()  # SHA-NI makes it the fastest hashlib choice here


def _nothing() -> list[object]:
    return []


def _exact(data: bytes) -> bytes:
    """A copy in an allocation of its own size. orjson returns even a short result inside
    a 4 KB allocation; a cached meta keeps its document and index member for as long as
    the session is cached, so those are copied once here."""
    return bytes(memoryview(data))


@dataclass(frozen=True, slots=True)
class InputDigest:
    """What the next PUT compares its leading bytes with (see the module docstring)."""

    digest: bytes = b""  # empty: the next PUT cannot be proven to repeat this one
    length: int = 0
    canonical: bool = False  # those bytes were also the stored canonical form


@dataclass(frozen=True, slots=True)
class Plan:
    write: Write
    prefix_count: int  # stored messages kept as they are (0: everything is rewritten)
    tokens_total: int
    generated_timestamp: bool  # some message had no created_at: deprecation header
    echo: bytes | None  # the response's message array, when the body was canonical already
    raw_prefix: Callable[[], list[object]]  # the kept messages as sent, for as_rewrite
    now: datetime
    # The bytes and hash state the next PUT's proof starts from (None: none to keep).
    known: tuple[bytes | memoryview, hashlib._Hash] | None = None
    # An append's new messages: the write adds them to whatever is stored, so a conflict
    # re-plans it on the session as it is then (rebased). None: the write replaces the
    # whole session (a PUT), so a conflict rewrites it whole (last writer wins).
    appended: tuple[codec.EncodedMessage, ...] | None = None

    @classmethod
    def build(cls, keys: SessionKeys, session_id: str, body: codec.PutBody, meta: Meta | None,
              base: Meta | None, encoded: list[codec.EncodedMessage], now: datetime,
              digest: InputDigest = InputDigest(),
              raw_prefix: Callable[[], list[object]] = _nothing,
              echo: bytes | None = None,
              known: tuple[bytes | memoryview, hashlib._Hash] | None = None,
              appended: tuple[codec.EncodedMessage, ...] | None = None) -> Plan:
        """The Write for ``encoded`` on top of ``base`` (the kept prefix's meta) or alone;
        ``meta`` is the session as stored (None: new)."""
        in_order = base.sorted if base else True
        last = base.last_created_us if base else None
        kinds = set(base.tz) - {"m"} if base and base.tz != "m" else ({"m"} if base else set())
        for m in encoded:
            if last is not None and m.created_at_us < last:
                in_order = False
            last = m.created_at_us
            kinds.add("a" if m.aware else "n")
        tz = "m" if "m" in kinds or len(kinds) > 1 else "".join(kinds)
        tokens_total = (base.tokens_total if base else 0) + sum(m.tokens for m in encoded)
        member = _exact(index_member(session_id, body.namespace, body.user_id))
        new_meta = Meta(
            count=(base.count if base else 0) + len(encoded), tokens_total=tokens_total,
            doc=_exact(body.doc), sorted=in_order, last_created_us=last or 0, tz=tz,
            index_member=member, input_digest=digest.digest, input_length=digest.length,
            input_canonical=digest.canonical,
            # A TTL set now, or one an earlier write left running (the scripts store the truth).
            expires=body.ttl_seconds is not None or bool(meta and meta.expires),
        )
        write = Write(
            keys=keys, rewrite=base is None, expected_version=meta.version if meta else 0,
            meta=new_meta, messages=[m.body for m in encoded],
            tokens=[m.tokens for m in encoded], ttl_seconds=body.ttl_seconds,
            index_score=now.timestamp(), stale_member=meta.index_member if meta else b"",
        )
        return cls(write, base.count if base else 0, tokens_total,
                   any(not m.had_created_at for m in encoded), echo, raw_prefix, now, known,
                   appended)

    @classmethod
    def append(cls, keys: SessionKeys, session_id: str, meta: Meta | None,
               namespace: str | None, user_id: str | None,
               encoded: list[codec.EncodedMessage], now: datetime) -> Plan:
        """Add ``encoded`` to the session as ``meta`` describes it (None: new), its fields
        kept and ``updated_at`` moved to ``now``."""
        fields = session_body(meta.doc if meta else None, namespace, user_id, now)
        return cls.build(keys, session_id, fields, meta, meta, encoded, now,
                         appended=tuple(encoded))

    def rebased(self, meta: Meta | None) -> Plan:
        """This append again, on top of the session as ``meta`` now describes it."""
        assert self.appended is not None
        namespace, user_id, session_id = orjson.loads(self.write.meta.index_member)
        return Plan.append(self.write.keys, session_id, meta, namespace, user_id,
                           list(self.appended), self.now)

    def as_rewrite(self) -> Plan:
        """The same PUT as a whole rewrite, for when the session moved under it."""
        assert self.appended is None, "an append is rebased, never rewritten"
        if self.write.rewrite:
            return self
        head = codec.encode_messages(self.raw_prefix(), self.now)
        write = replace(self.write, rewrite=True,
                        messages=[m.body for m in head] + self.write.messages,
                        tokens=[m.tokens for m in head] + self.write.tokens)
        return replace(self, write=write, prefix_count=0, raw_prefix=_nothing)

    def remember_input(self, entry: SessionTail) -> None:
        """Keep this PUT's bytes and hash state with ``entry``, whose meta is now this
        write's (see cache.KnownInput); nothing when the next PUT cannot repeat it."""
        if self.known is None or not entry.meta.input_digest:
            entry.known = None
            return
        data, hasher = self.known
        entry.known = KnownInput(entry.meta, data, hasher)


def _replayable(new_raw: list[object], encoded: list[codec.EncodedMessage]) -> bool:
    return all(type(m) is dict and "id" in m for m in new_raw) and all(
        m.had_created_at for m in encoded)


def _stored_prefix(meta: Meta | None, inner: memoryview,
                   count: int) -> tuple[int, hashlib._Hash]:
    """How many stored messages the body repeats byte for byte at its start, and the
    hash of all of ``inner``: one hashing pass serves both (the prefix digest is a
    copy of the running hash taken on the way)."""
    running = hashlib.sha256()
    prefix = 0
    if meta is not None and meta.input_digest and meta.count <= count:
        length = meta.input_length
        if length == len(inner) or (length < len(inner) and inner[length] == COMMA):
            running.update(inner[:length])
            if not meta.count or running.copy().digest() == meta.input_digest:
                prefix = meta.count
            inner = inner[length:]
    running.update(inner)
    return prefix, running


def plan_put(keys: SessionKeys, session_id: str, body: codec.PutBody,
             tail: SessionTail | None, now: datetime) -> Plan:
    meta = tail.meta if tail else None
    dumped = orjson.dumps(body.messages)
    inner = memoryview(dumped)[1:-1]
    prefix, running = _stored_prefix(meta, inner, len(body.messages))
    new_raw = body.messages[prefix:]
    encoded = codec.encode_messages(new_raw, now)
    base = meta if prefix else None
    new_bytes = inner[meta.input_length + 1:] if (prefix and meta) else inner
    canonical = (base is None or base.input_canonical) and (
        b",".join(m.body for m in encoded) == new_bytes)
    replayable = _replayable(new_raw, encoded)
    digest = InputDigest(running.digest() if replayable else b"", len(inner), canonical)
    return Plan.build(keys, session_id, body, meta, base, encoded, now, digest,
                      lambda: body.messages[:prefix], dumped if canonical else None,
                      (inner, running) if replayable else None)


@dataclass(frozen=True, slots=True)
class Proven:
    """A raw body whose message array begins with the stored messages' recorded bytes:
    ``raw[start:start + length]`` (codec/rawbody.py)."""

    raw: bytes
    start: int
    length: int
    hasher: hashlib._Hash  # SHA-256 state after exactly those bytes

    def messages(self) -> list[object]:
        """The body's messages, parsed whole: only when the session moved under the PUT."""
        parsed: list[object] = orjson.loads(self.raw)["messages"]
        return parsed

    def head(self) -> memoryview:
        """The kept messages as this body sent them."""
        return memoryview(self.raw)[self.start:self.start + self.length]


def provable(meta: Meta, raw: bytes, start: int) -> bool:
    """Whether the last PUT recorded anything ``raw`` could repeat from ``start``."""
    return bool(meta.count and meta.input_digest) and len(raw) >= start + meta.input_length


def prove(meta: Meta, known: KnownInput | None, raw: bytes, start: int) -> Proven | None:
    """Whether ``raw``'s message array, from ``start``, begins with the bytes the PUT that
    left ``meta`` recorded: one memcmp against the bytes kept with the cached tail
    (``known``, when it is that PUT's), else one SHA-256 pass (which releases the GIL: big
    bodies may be proven in a thread)."""
    if not provable(meta, raw, start):
        return None
    length = meta.input_length
    if known is not None and known.meta is meta:
        if raw.startswith(known.data, start):
            return Proven(raw, start, length, known.hasher)
        return None
    hasher = hashlib.sha256(memoryview(raw)[start:start + length])
    if hasher.digest() != meta.input_digest:
        return None
    return Proven(raw, start, length, hasher)


def plan_proven(keys: SessionKeys, session_id: str, body: codec.PutBody,
                new_raw: list[object], tail: SessionTail, proof: Proven,
                now: datetime) -> Plan:
    """The PUT whose stored prefix ``proof`` established, adding ``new_raw``. O(new
    messages): the kept prefix is neither parsed nor hashed."""
    meta = tail.meta
    encoded = codec.encode_messages(new_raw, now)
    new_bytes = orjson.dumps(new_raw)[1:-1] if new_raw else b""
    hasher = proof.hasher.copy()
    length = proof.length
    if new_bytes:
        hasher.update(b",")
        hasher.update(new_bytes)
        length += 1 + len(new_bytes)
    canonical = meta.input_canonical and b",".join(m.body for m in encoded) == new_bytes
    replayable = _replayable(new_raw, encoded)
    digest = InputDigest(hasher.digest() if replayable else b"", length, canonical)
    # The bytes the next PUT will begin with are in this body (no copy) when it sent its
    # new messages in the compact form too. A client that did not would not resend them
    # so either; its next PUT is parsed whole.
    keep = replayable and (not new_bytes or proof.raw.startswith(
        b"," + new_bytes, proof.start + proof.length))
    return Plan.build(keys, session_id, body, meta, meta, encoded, now, digest,
                      lambda: proof.messages()[:meta.count], None,
                      (memoryview(proof.raw)[proof.start:proof.start + length], hasher)
                      if keep else None)


def plan_rewrite(keys: SessionKeys, session_id: str, body: codec.PutBody,
                 encoded: list[codec.EncodedMessage], tail: SessionTail | None,
                 now: datetime | None = None) -> Plan:
    """Store ``encoded`` (already canonical, e.g. from the upstream) as the whole session."""
    inner = orjson.dumps(body.messages)[1:-1]
    digest = InputDigest(_hash(inner), len(inner), b",".join(m.body for m in encoded) == inner)
    return Plan.build(keys, session_id, body, tail.meta if tail else None, None, encoded,
                      now or datetime.now().astimezone(), digest)
