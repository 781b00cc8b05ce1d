"""A session as the sync compares it: the proxy's stored copy or the upstream's document,
both parsed into one shape, and what it means for two of them to hold the same content.

*Content* is what a client writes: messages (role, content, id, created_at), memories
(every field but the stamps below) and the session fields (context, data, user_id,
namespace, tokens, long_term_memory_strategy). *Stamps* are what the upstream's long-term
promotion writes back on its own: ``persisted_at`` and ``discrete_memory_extracted`` on
messages; ``persisted_at``, ``memory_hash`` and the extraction strategy fields on
memories. Session timestamps and ``ttl_seconds`` are neither: each side keeps its own
clock, and a hand-over sends the TTL the proxy's copy has left, so both expire together.
Digests are 8-byte BLAKE2b of canonical JSON, kept per item (by id) and for the whole
content.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.codec import jsonsafe, timestamps
from proxy.codec.memories import to_full_shape
from proxy.errors import Unsupported

Item = dict[str, Any]
MESSAGE_KEYS = ("role", "content", "id", "created_at", "persisted_at",
                "discrete_memory_extracted")  # as both sides render a message
MESSAGE_STAMPS = ("persisted_at", "discrete_memory_extracted")
MEMORY_STAMPS = ("persisted_at", "memory_hash", "extraction_strategy",
                 "extraction_strategy_config")
FIELDS = ("context", "data", "user_id", "namespace", "tokens", "long_term_memory_strategy")
TIMES = ("last_accessed", "created_at", "updated_at")


def digest(value: object) -> bytes:
    return hashlib.blake2b(orjson.dumps(value, option=orjson.OPT_SORT_KEYS),
                           digest_size=8).digest()


def message_content(m: Item) -> bytes:
    return digest([m["role"], m["content"], m["id"], m["created_at"]])


def memory_content(m: Item) -> bytes:
    return digest({k: v for k, v in m.items() if k not in MEMORY_STAMPS})


def id_key(kind: str, item_id: str) -> bytes:
    """Messages and memories have separate id spaces: ``kind`` is "m" or "M"."""
    return hashlib.blake2b((kind + item_id).encode(), digest_size=8).digest()


def field_value(fields: dict[str, Any], name: str) -> object:
    value = fields.get(name)
    return {} if name == "data" and value is None else value  # stored as {} upstream


@dataclass(slots=True)
class Copy:
    messages: list[Item]
    memories: list[Item]
    fields: dict[str, Any]
    times: dict[str, int]  # epoch seconds, as both sides store them
    _content: bytes | None = field(default=None, repr=False)
    _digests: tuple[list[bytes], list[bytes]] | None = field(default=None, repr=False)

    @classmethod
    def from_stored(cls, doc: bytes, messages: list[bytes]) -> Copy:
        """The proxy's copy: its meta ``doc`` and its stored (canonical) messages."""
        d = orjson.loads(doc)
        return cls(orjson.loads(b"[" + b",".join(messages) + b"]"), d["memories"],
                   {k: d[k] for k in (*FIELDS, "ttl_seconds")}, {k: d[k] for k in TIMES})

    @classmethod
    def from_upstream(cls, body: bytes) -> Copy:
        """The upstream's GET of a whole session, made without window parameters; raises
        Unsupported for a document the proxy could not store as it is. (Lighter than
        codec.import_upstream_document: no token counts, which a comparison needs not.)"""
        try:
            r = orjson.loads(body)
            messages = r["messages"]
            if type(messages) is not list or any(
                    type(m) is not dict or tuple(m) != MESSAGE_KEYS for m in messages):
                raise Unsupported("upstream messages not in the canonical shape")
            memories = [to_full_shape(m) for m in r["memories"]]
            fields = {k: r[k] for k in (*FIELDS, "ttl_seconds")}
            fields["data"] = field_value(fields, "data")
            jsonsafe.check_value([memories, fields])
            times = {k: timestamps.epoch_seconds(timestamps.parse(r[k])) for k in TIMES}
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise Unsupported(f"upstream document not readable: {exc!r}") from exc
        return cls(messages, memories, fields, times)

    def digests(self) -> tuple[list[bytes], list[bytes]]:
        """Content digests of the messages and of the memories, in order (computed once)."""
        if self._digests is None:
            self._digests = ([message_content(m) for m in self.messages],
                             [memory_content(m) for m in self.memories])
        return self._digests

    def content(self) -> bytes:
        """Digest of the whole content (stamps and timestamps left out)."""
        if self._content is None:
            h = hashlib.blake2b(digest_size=16)
            messages, memories = self.digests()
            h.update(b"".join(messages))
            h.update(b"|")
            h.update(b"".join(memories))
            h.update(b"|")
            h.update(digest({k: field_value(self.fields, k) for k in FIELDS}))
            self._content = h.digest()
        return self._content

    def same_as(self, other: Copy) -> bool:
        """Same content and same stamps (timestamps aside)."""
        return (self.messages == other.messages and self.memories == other.memories
                and all(field_value(self.fields, k) == field_value(other.fields, k)
                        for k in FIELDS))

    def pending(self) -> bool:
        """Work the upstream's promotion has left to stamp: a message not yet extracted
        or a memory not yet persisted."""
        return (any(m["discrete_memory_extracted"] == "f" for m in self.messages)
                or any(mem["persisted_at"] is None for mem in self.memories))

    def stamped(self) -> bool:
        """Something here carries a stamp (the upstream's promotion has run on it)."""
        return (any(m["discrete_memory_extracted"] == "t" or m["persisted_at"]
                    for m in self.messages)
                or any(mem["persisted_at"] is not None for mem in self.memories))

    def doc(self) -> bytes:
        """The meta ``doc`` the proxy stores (key order of codec/putbody.py)."""
        f = self.fields
        return orjson.dumps({
            "memories": self.memories, "data": field_value(f, "data"),
            "context": f["context"], "user_id": f["user_id"], "tokens": f["tokens"],
            "namespace": f["namespace"],
            "long_term_memory_strategy": f["long_term_memory_strategy"],
            "ttl_seconds": f["ttl_seconds"], **self.times})

    def put_body(self, ttl_seconds: int | None = None) -> bytes:
        """The hand-over PUT's body: the whole session, its creation and last access
        times kept (epoch seconds, as the upstream accepts them); ``ttl_seconds``: what
        the proxy's copy has left, if it expires (None keeps the upstream's running TTL,
        as any PUT without one does)."""
        f = self.fields
        return orjson.dumps({
            "messages": self.messages, "memories": self.memories,
            "data": field_value(f, "data"), "context": f["context"],
            "user_id": f["user_id"], "tokens": f["tokens"], "namespace": f["namespace"],
            "long_term_memory_strategy": f["long_term_memory_strategy"],
            "ttl_seconds": ttl_seconds, "last_accessed": self.times["last_accessed"],
            "created_at": self.times["created_at"]})
