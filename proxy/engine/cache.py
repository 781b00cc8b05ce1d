"""The in-memory tail of recent sessions: a ring buffer per session, one LRU for all.

A session's cached tail is one bytes object (its recent messages' canonical JSON joined
by commas) plus the start offset and token count of each message in C arrays, so a
GET of the last k messages is one slice and an append is one concatenation: no
per-message Python objects. All tails share one LRU bounded by total bytes; a tail with
writes not yet in Redis (buffered mode) is pinned and never evicted.
"""

from __future__ import annotations

import array
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from weakref import WeakValueDictionary

from cachetools import LRUCache

from proxy.observability.metrics import Metrics
from proxy.store.keys import SessionKeys
from proxy.store.store import Meta

# Bytes of bookkeeping per cached tail, measured (tracemalloc, plus OpenSSL's hash state):
# its keys, meta and tail objects, its LRU, index and weak-map entries, a kept hash.
_OVERHEAD = 2048


@dataclass(frozen=True, slots=True)
class KnownInput:
    """The last PUT's messages as sent (orjson's compact form) and the SHA-256 state after
    them: the next PUT proves it repeats them with one memcmp and extends the digest by
    its new bytes alone (engine/plan.py). Valid while the tail's meta is ``meta``."""

    meta: Meta
    data: bytes | memoryview  # usually a view into that PUT's own body: no copy
    hasher: hashlib._Hash

    def held(self) -> int:
        """Bytes this keeps alive: all of the buffer a view points into."""
        data = self.data
        return len(data.obj) if isinstance(data, memoryview) else len(data)  # type: ignore[arg-type]


@dataclass(slots=True, weakref_slot=True)
class SessionTail:
    keys: SessionKeys
    meta: Meta
    start: int = 0  # session index of the first cached message
    # Growable in place: an append costs its own bytes, not a copy of the session.
    blob: bytearray = field(default_factory=bytearray)
    base: int = 0  # offset in the original stream where blob[0] sits
    offsets: array.array[int] = field(default_factory=lambda: array.array("Q"))
    tokens: array.array[int] = field(default_factory=lambda: array.array("I"))
    pending: int = 0  # writes acknowledged but not yet durable
    checked: int = -1  # invalidation messages seen when this tail was last known current
    known: KnownInput | None = None  # the last PUT's input, for the next PUT's proof

    @property
    def count(self) -> int:
        return self.meta.count

    @property
    def version(self) -> int:
        return self.meta.version

    @property
    def expires(self) -> bool:
        return self.meta.expires

    def size(self) -> int:
        """Bytes this tail keeps alive, as allocated: growable buffers hold spare room
        (``__sizeof__``), a kept input holds the whole body it points into."""
        known = self.known.held() if self.known is not None else 0
        meta = self.meta
        return (self.blob.__sizeof__() + self.offsets.__sizeof__() + self.tokens.__sizeof__()
                + len(meta.doc) + len(meta.index_member) + known + _OVERHEAD)

    def covers(self, first: int) -> bool:
        return self.start <= first <= self.count

    def joined(self, first: int) -> bytes:
        """Comma-joined messages ``first`` .. the end (``first`` must be covered)."""
        if first >= self.count:
            return b""
        return self._slice(self.offsets[first - self.start] - self.base, len(self.blob))

    def _slice(self, start: int, stop: int) -> bytes:
        return bytes(memoryview(self.blob)[start:stop])  # one copy, as bytes

    def joined_range(self, first: int, stop: int) -> bytes:
        """Comma-joined messages ``first`` .. ``stop - 1`` (both covered)."""
        if stop >= self.count:
            return self.joined(first)
        start = self.offsets[first - self.start] - self.base
        return self._slice(start, self.offsets[stop - self.start] - self.base - 1)

    def messages_from(self, first: int) -> list[bytes]:
        """Messages ``first`` .. the end as separate bytes (``first`` must be covered)."""
        if first >= self.count:
            return []
        blob, base, offsets = self.blob, self.base, self.offsets
        ends = [o - base - 1 for o in offsets[first - self.start + 1:]] + [len(blob)]
        return [self._slice(o - base, end) for o, end in zip(offsets[first - self.start:], ends,
                                                             strict=True)]

    def tokens_from(self, first: int) -> array.array[int]:
        return self.tokens[first - self.start:]

    def extend(self, messages: list[bytes], tokens: list[int], cap: int) -> None:
        """Append messages already counted in ``meta``; keep at most ``cap`` of them."""
        if not messages:
            return
        position = self.base + len(self.blob)
        joined = b",".join(messages)
        if self.blob:
            position += 1
            self.blob += b","
        self.blob += joined
        for message in messages:
            self.offsets.append(position)
            position += len(message) + 1
        self.tokens.extend(tokens)
        self._trim(cap)

    def reset(self, first: int, messages: list[bytes], tokens: list[int], cap: int) -> None:
        """Replace the cached run with ``messages``, which start at session index ``first``."""
        self.start, self.blob, self.base = first, bytearray(), 0
        self.offsets = array.array("Q")
        self.tokens = array.array("I")
        self.extend(messages, tokens, cap)

    def _trim(self, cap: int) -> None:
        if self.pending:
            return  # Redis does not hold these yet: keep them until they land
        excess = len(self.offsets) - cap
        # Trim in steps of a tenth so the memmove is amortised over many appends.
        if excess <= 0 or (excess < cap // 10 and len(self.offsets) < 2 * cap):
            return
        cut = self.offsets[excess]
        del self.blob[:cut - self.base]
        self.base = cut
        del self.offsets[:excess]
        del self.tokens[:excess]
        self.start += excess


class _Tails(LRUCache[str, SessionTail]):
    """The LRU, counting what it evicts to stay within its size."""

    def __init__(self, max_bytes: int, metrics: Metrics | None,
                 evicted: Callable[[SessionTail], None]) -> None:
        super().__init__(maxsize=max(max_bytes, 1), getsizeof=SessionTail.size)
        self._evicted = metrics.cache_evictions if metrics is not None else None
        self._on_evict = evicted

    def popitem(self) -> tuple[str, SessionTail]:
        item = super().popitem()
        if self._evicted is not None:
            self._evicted.inc()
        self._on_evict(item[1])
        return item


class SessionCache:
    def __init__(self, max_bytes: int, max_messages: int,
                 metrics: Metrics | None = None) -> None:
        self.max_messages = max_messages
        self._lru = _Tails(max_bytes, metrics, self._gone)
        # Counted in plain ints on the hot path; handed to the metrics at each sample.
        self.hits = self.misses = 0
        if metrics is not None:
            metrics.add_sampler(lambda: self._hand_over_lookups(metrics))
        self._pinned: dict[str, SessionTail] = {}
        # meta key -> logical key of each cached tail, for invalidations
        self._by_meta: dict[str, str] = {}
        # session id -> the tail its last PUT wrote: a PUT finds its session before it
        # parses the scope (namespace, user_id) out of its body. Gone with the tail.
        self._by_session: WeakValueDictionary[str, SessionTail] = WeakValueDictionary()

    def get(self, logical: str) -> SessionTail | None:
        entry = self._lookup(logical)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def _hand_over_lookups(self, metrics: Metrics) -> None:
        hits, misses, self.hits, self.misses = self.hits, self.misses, 0, 0
        metrics.cache_lookups.labels("hit").inc(hits)
        metrics.cache_lookups.labels("miss").inc(misses)

    def _lookup(self, logical: str) -> SessionTail | None:
        entry = self._pinned.get(logical)
        if entry is not None:
            return entry
        return self._lru.get(logical)

    peek = _lookup  # a lookup that is not a client's read (no hit/miss counted)

    def note_put(self, session_id: str, entry: SessionTail) -> None:
        """``entry`` is what the last PUT of ``session_id`` wrote."""
        self._by_session[session_id] = entry

    def by_session(self, session_id: str) -> SessionTail | None:
        """The cached tail the last PUT of ``session_id`` wrote, if still cached (its scope
        is only a guess until the body is read)."""
        entry = self._by_session.get(session_id)
        if entry is None or self._lookup(entry.keys.logical) is not entry:
            return None
        return entry

    def put(self, entry: SessionTail) -> None:
        """Insert or refresh (its size may have changed) an entry."""
        key = entry.keys.logical
        if entry.pending:
            self._pinned[key] = entry
        else:
            self._pinned.pop(key, None)
        try:
            self._lru[key] = entry  # may evict others, or this key's older size itself
        except ValueError:  # larger than the whole cache: keep it out
            self._lru.pop(key, None)
        if key in self._pinned or key in self._lru:
            self._by_meta[entry.keys.meta] = key
        else:
            self._gone(entry)

    def drop(self, logical: str) -> None:
        entry = self._lru.pop(logical, None)
        pinned = self._pinned.pop(logical, None)
        for gone in (entry, pinned):
            if gone is not None:
                self._gone(gone)

    def _gone(self, entry: SessionTail) -> None:
        """``entry`` left the LRU: forget its name unless it is still held (pinned)."""
        keys = entry.keys
        if keys.logical not in self._pinned and self._by_meta.get(keys.meta) == keys.logical:
            del self._by_meta[keys.meta]

    def invalidate(self, meta_key: str, version: int) -> None:
        """Another writer moved this session to ``version`` (0: deleted)."""
        logical = self._by_meta.get(meta_key)
        entry = self._lookup(logical) if logical is not None else None
        if entry is None:
            self._by_meta.pop(meta_key, None)
        elif not entry.pending and entry.meta.version != version:
            self.drop(entry.keys.logical)

    def clear(self) -> None:
        """Forget every tail not holding unflushed writes."""
        for logical in list(self._lru.keys()):
            if logical not in self._pinned:
                self.drop(logical)

    @property
    def bytes_used(self) -> int:
        return int(self._lru.currsize)

    def __len__(self) -> int:
        return len(self._lru)
