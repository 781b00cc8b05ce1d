"""Warm GET answers: the same read of an unchanged session answered with the same bytes.

A GET's answer is a function of the session as stored (its cached tail's meta: a write
replaces it), of the request's query and of the upstream's rules (the dialect). So the
last answer to each (session id, query) is kept, and served again while the tail it came
from is still the cached one, with the same meta, and still trusted by coherence exactly
as a full read would require (a read lease, or writes of its own still landing). Anything
else, and every first read after a write, takes the full path, which keeps its answer.

Bounded by bytes (``MAX_BYTES``, answers up to ``MAX_ANSWER`` only), oldest kept first out
(a plain dict: a hit costs one lookup, no recency upkeep). Entries point at their tail
weakly, so an evicted tail is not kept alive here.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass

from proxy.codec.dialect import Dialect
from proxy.coherence import Coherence
from proxy.engine.cache import SessionCache, SessionTail
from proxy.store.store import Meta

MAX_BYTES = 8 * 1024 * 1024
MAX_ANSWER = 64 * 1024  # GETs of whole long sessions are rendered afresh
_OVERHEAD = 400  # bytes of bookkeeping per kept answer, roughly

Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class _Kept:
    tail: weakref.ref[SessionTail]
    meta: Meta  # the tail's meta the answer was rendered from
    dialect: Dialect
    first: int  # the first message the answer needs cached (as _tail_for_read checks)
    body: bytes
    weight: int


class Answers:
    def __init__(self, cache: SessionCache, coherence: Coherence,
                 max_bytes: int = MAX_BYTES) -> None:
        self.cache = cache
        self.coherence = coherence
        self.max_bytes = max_bytes
        self.bytes_used = 0
        self._kept: dict[Key, _Kept] = {}

    @staticmethod
    def key(session_id: str, query: Mapping[str, str]) -> Key:
        return session_id, tuple(query.items())

    def find(self, key: Key, dialect: Dialect) -> bytes | None:
        """The kept answer when it still is the answer, else None."""
        kept = self._kept.get(key)
        if kept is None:
            return None
        tail = kept.tail()
        if (tail is None or tail.meta is not kept.meta or kept.dialect is not dialect
                or self.cache.get(tail.keys.logical) is not tail):
            self._forget(key)
            return None
        if tail.pending:
            return kept.body  # ahead of Redis: acknowledged writes not yet landed
        covered = tail.covers(kept.first) or tail.count > self.cache.max_messages
        if covered and self.coherence.trusted(tail):
            return kept.body
        return None  # the full path checks the version in Redis

    def keep(self, key: Key, tail: SessionTail, limit: int | None, dialect: Dialect,
             body: bytes) -> None:
        if len(body) > MAX_ANSWER:
            return
        first = max(0, tail.count - limit) if limit else 0
        weight = len(body) + len(key[0]) + sum(len(k) + len(v) for k, v in key[1]) + _OVERHEAD
        if weight > self.max_bytes:
            return
        self._forget(key)
        while self.bytes_used + weight > self.max_bytes:
            self._forget(next(iter(self._kept)))  # the oldest
        self._kept[key] = _Kept(weakref.ref(tail), tail.meta, dialect, first, body, weight)
        self.bytes_used += weight

    def _forget(self, key: Key) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            self.bytes_used -= kept.weight

    def __len__(self) -> int:
        return len(self._kept)
