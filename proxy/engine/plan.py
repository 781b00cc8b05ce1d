"""Plan a PUT: decide what of it is new, and build the one Write that stores it.

The proof that a PUT "begins with exactly the stored messages" costs no Python work per
stored message: the body's messages are dumped once (orjson, C), and the leading bytes
are hashed (hashlib, C) and compared with the digest kept from the previous PUT, whose
byte length is known. Equal bytes at a message boundary mean equal messages: same ids,
contents and order. Any edit, drop or reorder changes those bytes and the session is
rewritten. Messages without an id or created_at get new ones on every PUT (as upstream),
so such a PUT never records a digest and the next one rewrites.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime

import orjson

from proxy import codec
from proxy.engine.cache import SessionTail
from proxy.store.keys import SessionKeys
from proxy.store.store import Meta, Write, index_member

COMMA = ord(",")


def _hash(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()  # SHA-NI makes it the fastest hashlib choice here


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
    raw_prefix: list[object]
    now: datetime

    @classmethod
    def build(cls, keys: SessionKeys, session_id: str, body: codec.PutBody, meta: Meta | None,
              base: Meta | None, encoded: list[codec.EncodedMessage], now: datetime,
              digest: InputDigest = InputDigest(), raw_prefix: list[object] | None = None,
              echo: bytes | None = None) -> Plan:
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
        member = index_member(session_id, body.namespace, body.user_id)
        new_meta = Meta(
            count=(base.count if base else 0) + len(encoded), tokens_total=tokens_total,
            doc=body.doc, sorted=in_order, last_created_us=last or 0, tz=tz,
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
                   any(not m.had_created_at for m in encoded), echo, raw_prefix or [], now)

    def as_rewrite(self) -> Plan:
        """The same PUT as a whole rewrite, for when the session moved under it."""
        if self.write.rewrite:
            return self
        head = codec.encode_messages(self.raw_prefix, self.now)
        write = replace(self.write, rewrite=True,
                        messages=[m.body for m in head] + self.write.messages,
                        tokens=[m.tokens for m in head] + self.write.tokens)
        return replace(self, write=write, prefix_count=0, raw_prefix=[])


def _stored_prefix(meta: Meta | None, inner: memoryview, count: int) -> tuple[int, bytes]:
    """How many stored messages the body repeats byte for byte at its start, and the
    digest of all of ``inner``: one hashing pass serves both (the prefix digest is a
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
    return prefix, running.digest()


def plan_put(keys: SessionKeys, session_id: str, body: codec.PutBody,
             tail: SessionTail | None, now: datetime) -> Plan:
    meta = tail.meta if tail else None
    dumped = orjson.dumps(body.messages)
    inner = memoryview(dumped)[1:-1]
    prefix, digest = _stored_prefix(meta, inner, len(body.messages))
    new_raw = body.messages[prefix:]
    encoded = codec.encode_messages(new_raw, now)
    base = meta if prefix else None
    new_bytes = inner[meta.input_length + 1:] if (prefix and meta) else inner
    canonical = (base is None or base.input_canonical) and (
        b",".join(m.body for m in encoded) == new_bytes)
    replayable = all(type(m) is dict and "id" in m for m in new_raw) and all(
        m.had_created_at for m in encoded)
    return Plan.build(keys, session_id, body, meta, base, encoded, now,
                      InputDigest(digest if replayable else b"", len(inner), canonical),
                      body.messages[:prefix], dumped if canonical else None)


def plan_rewrite(keys: SessionKeys, session_id: str, body: codec.PutBody,
                 encoded: list[codec.EncodedMessage], tail: SessionTail | None,
                 now: datetime | None = None) -> Plan:
    """Store ``encoded`` (already canonical, e.g. from the upstream) as the whole session."""
    inner = orjson.dumps(body.messages)[1:-1]
    digest = InputDigest(_hash(inner), len(inner), b",".join(m.body for m in encoded) == inner)
    return Plan.build(keys, session_id, body, tail.meta if tail else None, None, encoded,
                      now or datetime.now().astimezone(), digest)
