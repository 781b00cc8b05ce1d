"""A composable digest of a byte string, to prove "the stored messages are a prefix of
this PUT's messages" at C speed.

The digest of ``b`` is ``(int(b) mod P, len(b))`` with ``P = 2**127 - 1``, reading ``b`` as
a big-endian integer. Two digests compose without rereading either part::

    digest(a + b) == extend(digest(a), digest(b))

so the session keeps one running digest of its messages, and a PUT checks its prefix
with one ``orjson.dumps`` and one ``int.from_bytes`` (both C) instead of a Python loop
over thousands of stored messages. The length is part of the digest, so leading zero
bytes cannot alias. Not cryptographic: the input is the client's own data, and a
collision would need two different transcripts of equal length agreeing mod P.
"""

from __future__ import annotations

from typing import NamedTuple

P = (1 << 127) - 1


class Digest(NamedTuple):
    value: int
    length: int

    def encode(self) -> bytes:
        return b"%x:%d" % (self.value, self.length)

    @classmethod
    def decode(cls, raw: bytes | str | None) -> Digest | None:
        if not raw:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        value, _, length = text.partition(":")
        return cls(int(value, 16), int(length))


EMPTY = Digest(0, 0)


def digest(data: bytes) -> Digest:
    return Digest(int.from_bytes(data, "big") % P, len(data))


def extend(head: Digest, tail: Digest) -> Digest:
    return Digest((head.value * pow(256, tail.length, P) + tail.value) % P,
                  head.length + tail.length)


def join_digest(items: list[bytes]) -> Digest:
    """Digest of ``b",".join(items)``: the inside of a JSON array of these items."""
    return digest(b",".join(items))


def append_items(head: Digest, items: list[bytes]) -> Digest:
    """Digest of the comma-joined items after ``head`` (itself comma-joined items)."""
    if not items:
        return head
    joined = b",".join(items)
    return extend(head, digest(b"," + joined if head.length else joined))
