"""Redis Cluster slots: the slot of a key, and a short hash tag that lands in each slot.

The proxy names a few things that must live in a chosen slot rather than in the slot of
some session: the per-slot invalidation channel (a script may publish only to a sharded
channel in the slot of its own keys, see coherence/sharded.py) and the session index's
shards (index.py). ``tag(slot)`` gives for every slot the first hex number whose CRC16
falls there; the table (16,384 tags of at most 5 characters) is built on first use, in
~0.15 s, and only when the proxy runs on a cluster.
"""

from __future__ import annotations

import functools
import itertools

from redis.crc import key_slot

SLOTS = 16384


def slot_of(key: str) -> int:
    """The slot of ``key``, by its hash tag when it has one (as the cluster computes it)."""
    return int(key_slot(key.encode()))


@functools.cache
def _tags() -> tuple[str, ...]:
    found: list[str | None] = [None] * SLOTS
    missing = SLOTS
    for n in itertools.count():
        text = format(n, "x")
        slot = key_slot(text.encode())
        if found[slot] is None:
            found[slot] = text
            missing -= 1
            if not missing:
                break
    return tuple(t for t in found if t is not None)


def tag(slot: int) -> str:
    """A hash tag whose keys (``...{tag}...``) land in ``slot``."""
    return _tags()[slot]


def range_of(key: str, ranges: int) -> int:
    """Which of ``ranges`` equal runs of slots ``key``'s slot falls in."""
    return slot_of(key) * ranges // SLOTS


def range_tag(index: int, ranges: int) -> str:
    """A hash tag in the middle of the ``index``-th of ``ranges`` equal runs of slots: keys
    under it sit with the sessions of that run (on a cluster, on the same master)."""
    span = SLOTS // ranges
    return tag(index * span + span // 2)


def channel(prefix: str, slot: int) -> str:
    """The sharded pub/sub channel of ``slot``: every write to a session in that slot
    announces itself there, and lease releases for those sessions are announced there."""
    return f"{prefix}:invalidate:{{{tag(slot)}}}"
