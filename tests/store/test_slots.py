"""A hash tag for every cluster slot, and the per-slot invalidation channels."""

from __future__ import annotations

from redis.crc import key_slot

from proxy.store import slots
from proxy.store.keys import SessionKeys


def test_every_slot_has_a_short_tag_that_lands_there() -> None:
    tags = [slots.tag(s) for s in range(slots.SLOTS)]
    assert all(key_slot(f"x:{{{t}}}:y".encode()) == s for s, t in enumerate(tags))
    assert max(map(len, tags)) <= 5
    assert len(set(tags)) == slots.SLOTS


def test_a_sessions_channel_is_in_the_sessions_slot() -> None:
    keys = SessionKeys.build("amp", "ns:user:chat-1")
    slot = slots.slot_of(keys.meta)
    assert slot == key_slot(keys.messages.encode())
    channel = slots.channel("amp", slot)
    assert channel.startswith("amp:invalidate:{") and channel.endswith("}")
    assert slots.slot_of(channel) == slot


def test_a_range_tag_sits_in_the_middle_of_its_run_of_slots() -> None:
    for ranges in (16, 64):
        span = slots.SLOTS // ranges
        for index in (0, 5, ranges - 1):
            slot = slots.slot_of(f"x:{{{slots.range_tag(index, ranges)}}}")
            assert slot == index * span + span // 2
            assert slots.range_of(f"y:{{{slots.range_tag(index, ranges)}}}", ranges) == index
    assert slots.range_of("{" + slots.tag(slots.SLOTS - 1) + "}", 16) == 15
