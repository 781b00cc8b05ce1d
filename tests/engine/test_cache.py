"""The session tail cache: slicing, appending, trimming, and the byte-bounded LRU."""

from __future__ import annotations

from proxy.engine.cache import SessionCache, SessionTail
from proxy.store.keys import SessionKeys
from proxy.store.store import Meta


def tail(name: str, messages: list[bytes], cap: int = 100, pending: int = 0) -> SessionTail:
    entry = SessionTail(SessionKeys.build("t", name), Meta(count=len(messages)))
    entry.pending = pending
    entry.reset(0, messages, [len(m) for m in messages], cap)
    return entry


def grow(entry: SessionTail, new: list[bytes], cap: int) -> None:
    entry.meta.count += len(new)
    entry.extend(new, [len(m) for m in new], cap)


def test_slices_join_exactly_the_messages_asked_for() -> None:
    ms = [b'{"a":%d}' % i for i in range(10)]
    entry = tail("s", ms)
    assert entry.joined(0) == b",".join(ms)
    assert entry.joined(7) == b",".join(ms[7:])
    assert entry.joined(10) == b""
    assert entry.joined_range(2, 5) == b",".join(ms[2:5])
    assert entry.messages_from(3) == ms[3:]
    assert entry.messages_from(10) == []
    assert list(entry.tokens_from(8)) == [len(m) for m in ms[8:]]


def test_trimming_keeps_the_newest_messages_and_their_offsets() -> None:
    ms = [b'{"m":%d}' % i for i in range(1000)]
    entry = tail("s", ms[:5], cap=50)
    for i in range(5, 1000, 7):
        grow(entry, ms[i:i + 7], cap=50)
    assert 50 <= len(entry.offsets) < 100
    assert entry.start == 1000 - len(entry.offsets)
    assert not entry.covers(entry.start - 1) and entry.covers(entry.start)
    assert entry.joined(entry.start) == b",".join(ms[entry.start:])
    assert entry.messages_from(990) == ms[990:]
    assert entry.joined_range(995, 998) == b",".join(ms[995:998])


def test_a_pending_run_is_not_trimmed() -> None:
    ms = [b"%d" % i for i in range(30)]
    entry = tail("s", ms, cap=5, pending=1)
    assert entry.start == 0 and entry.messages_from(0) == ms


def test_lru_is_bounded_by_bytes_and_keeps_pinned_entries() -> None:
    cache = SessionCache(max_bytes=10_000, max_messages=100)
    big = [b"x" * 1000] * 3
    pinned = tail("pinned", big, pending=1)
    cache.put(pinned)
    for i in range(20):
        cache.put(tail(f"s{i}", big))
    assert cache.bytes_used <= 10_000
    assert cache.get("t") is None
    assert cache.get(pinned.keys.logical) is pinned  # evicted from the LRU, kept pinned
    assert cache.get(tail("s19", []).keys.logical) is not None
    assert cache.get(tail("s0", []).keys.logical) is None
    # Too large for the whole cache: not cached at all.
    cache.put(tail("huge", [b"y" * 20_000]))
    assert cache.get(tail("huge", []).keys.logical) is None
    pinned.pending = 0
    cache.put(pinned)
    cache.drop(pinned.keys.logical)
    assert cache.get(pinned.keys.logical) is None


def test_a_tail_accounts_for_what_it_keeps_alive() -> None:
    import hashlib

    from proxy.engine.cache import KnownInput

    entry = tail("s", [b'{"m":%d}' % i for i in range(100)])
    grow(entry, [b'{"m":100}'], cap=1000)  # a grown bytearray holds spare room
    assert entry.size() >= entry.blob.__sizeof__() + entry.offsets.__sizeof__()
    assert entry.blob.__sizeof__() > len(entry.blob)
    body = b'{"messages":[' + b"x" * 10_000 + b"]}"
    before = entry.size()
    entry.known = KnownInput(entry.meta, memoryview(body)[13:113], hashlib.sha256())
    assert entry.size() - before == len(body)  # the whole body it points into


def test_names_for_invalidation_leave_with_their_tails() -> None:
    cache = SessionCache(max_bytes=30_000, max_messages=100)
    entries = [tail(f"s{i}", [b"x" * 1000] * 3) for i in range(40)]
    for entry in entries:
        cache.put(entry)
    assert 0 < len(cache) < 40 and len(cache._by_meta) == len(cache)
    oldest = next(iter(cache._lru))
    grown = cache.peek(oldest)
    assert grown is not None
    grow(grown, [b"y" * 3000], cap=100)
    cache.put(grown)  # may evict itself while it grows: it must keep its name
    assert cache.peek(oldest) is grown and grown.keys.meta in cache._by_meta
    cache.invalidate(grown.keys.meta, grown.meta.version + 1)
    assert cache.peek(oldest) is None and grown.keys.meta not in cache._by_meta
    cache.clear()
    assert len(cache) == 0 and cache._by_meta == {}
