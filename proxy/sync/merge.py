"""The merge rule: what the proxy stores and hands over, given its copy of a session, the
upstream's copy and the record of what it last handed over (records.py).

1. **Stamps flow back, by id.** A message or memory that has the same id and the same
   content on both sides takes the upstream's stamps (copies.py) where the proxy has none:
   ``persisted_at`` once set stays set, ``discrete_memory_extracted`` goes "f" -> "t",
   never back. Promotion and extraction therefore run once per message and memory, even
   for a client that re-sends its transcript unstamped.
2. **The proxy's content wins over the upstream's own write-backs.** The upstream's copy
   is *ours* when its content is that of one of the proxy's recent hand-overs (or equals
   the proxy's): then only stamps are taken. Whatever else differs was written through
   the proxy since (clients' PUTs replace the session, as upstream) or was lost by the
   upstream's extraction writing back an older read of the session; the next hand-over
   sends it again.
3. **A foreign write is detected and kept, never silently overwritten.** Otherwise the
   upstream's copy was written by something else (its MCP tools, a client talking to it
   directly). Counted and logged, and merged by id:
   - a message or memory only the upstream has, and not one the proxy handed over (so
     not one a client since deleted through the proxy), is kept, placed after the item it
     follows in the upstream's copy;
   - an item both have, changed upstream since the last hand-over while unchanged here,
     takes the upstream's version; changed on both sides, the proxy's wins;
   - a session field (context, data, ...) likewise: the upstream's when only it changed;
   - an item the upstream dropped is kept: deletes go through the proxy.
   The merged session is stored here (clients see it) and handed over.
4. **A leftover is replaced.** An upstream copy last written before the proxy created its
   copy, and never handed over by it, is an older session under the same id: the proxy's
   (a client's PUT) replaces it, as a PUT to the upstream would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from proxy.sync.copies import (
    FIELDS,
    MEMORY_STAMPS,
    Copy,
    Item,
    digest,
    field_value,
    id_key,
)
from proxy.sync.records import Record

Kind = Literal["absent", "ours", "stale", "foreign"]
Stamps = Callable[[Item, Item], Item | None]  # mine with upstream's stamps, None: no change


@dataclass(slots=True)
class Merged:
    copy: Copy  # what the proxy stores and hands over
    kind: Kind
    kept: int = 0  # upstream-only messages and memories kept (foreign additions)
    taken: int = 0  # items and fields taken from the upstream (foreign edits)
    stamped: int = 0  # items given the upstream's stamps

    @property
    def content_changed(self) -> bool:
        """The proxy's content changes (not only its stamps)."""
        return bool(self.kept or self.taken)


def merge(ours: Copy, theirs: Copy | None, record: Record | None, created_s: float) -> Merged:
    """``created_s``: when the proxy created its copy (epoch seconds)."""
    if theirs is None:
        return Merged(ours, "absent")
    if theirs.same_as(ours):
        return Merged(ours, "ours")  # the usual poll: nothing moved on either side
    same = theirs.content() == ours.content() or (record is not None
                                                  and record.knows(theirs.content()))
    if same:
        kind: Kind = "ours"
    elif record is None and theirs.times["updated_at"] < int(created_s):
        kind = "stale"
    else:
        kind = "foreign"
    out = Merged(Copy([], [], dict(ours.fields), dict(ours.times)), kind)
    foreign = record if kind == "foreign" else None
    (mine_m, mine_k), (their_m, their_k) = ours.digests(), theirs.digests()
    messages, message_digests = _items(Side(ours.messages, mine_m),
                                       Side(theirs.messages, their_m), "m",
                                       _message_stamps, foreign, out)
    memories, memory_digests = _items(Side(ours.memories, mine_k),
                                      Side(theirs.memories, their_k), "M",
                                      _memory_stamps, foreign, out)
    out.copy = Copy(messages, memories, out.copy.fields, out.copy.times,
                    _digests=(message_digests, memory_digests))
    if kind == "foreign" and record is not None:
        for name in FIELDS:
            last = record.fields.get(name)
            mine, upstream = field_value(ours.fields, name), field_value(theirs.fields, name)
            if last == digest(mine) and digest(upstream) != last:
                out.copy.fields[name] = theirs.fields[name]
                out.taken += 1
    return out


@dataclass(slots=True)
class Side:
    """Items of one copy with their content digests, in order."""

    items: list[Item]
    digests: list[bytes]


def _message_stamps(mine: Item, upstream: Item) -> Item | None:
    persisted = mine["persisted_at"] or upstream["persisted_at"]
    extracted = "t" if "t" in (mine["discrete_memory_extracted"],
                               upstream["discrete_memory_extracted"]) else "f"
    if (persisted, extracted) == (mine["persisted_at"], mine["discrete_memory_extracted"]):
        return None
    return {**mine, "persisted_at": persisted, "discrete_memory_extracted": extracted}


def _memory_stamps(mine: Item, upstream: Item) -> Item | None:
    if mine["persisted_at"] is not None or upstream["persisted_at"] is None:
        return None
    return {**mine, **{k: upstream[k] for k in MEMORY_STAMPS}}


def _items(mine: Side, upstream: Side, kind: str, stamps: Stamps, record: Record | None,
           out: Merged) -> tuple[list[Item], list[bytes]]:
    """``mine`` with stamps (and, for a foreign write, additions and edits) merged from
    ``upstream``; ``record`` is given only for a foreign write."""
    theirs = {(u["id"], d): u for u, d in zip(upstream.items, upstream.digests, strict=True)}
    merged = Side([], list(mine.digests))
    for m, d in zip(mine.items, mine.digests, strict=True):
        u = theirs.get((m["id"], d))
        stamped = stamps(m, u) if u is not None else None
        if stamped is not None:
            out.stamped += 1
        merged.items.append(stamped or m)
    if out.kind == "foreign":
        merged = _take_edits(merged, upstream, kind, stamps, record, out)
        merged = _keep_additions(merged, upstream, kind, record, out)
    return merged.items, merged.digests


def _take_edits(merged: Side, upstream: Side, kind: str, stamps: Stamps,
                record: Record | None, out: Merged) -> Side:
    if record is None:
        return merged  # nothing was handed over: nothing to have changed since
    by_id = {u["id"]: (u, d) for u, d in zip(upstream.items, upstream.digests, strict=True)}
    result = Side([], [])
    for m, d in zip(merged.items, merged.digests, strict=True):
        u, ud = by_id.get(m["id"], (None, b""))
        last = record.items.get(id_key(kind, m["id"]))
        if u is not None and last is not None and d == last != ud:
            m, d = stamps(u, m) or u, ud
            out.taken += 1
        result.items.append(m)
        result.digests.append(d)
    return result


def _keep_additions(merged: Side, upstream: Side, kind: str, record: Record | None,
                    out: Merged) -> Side:
    """Upstream-only items, each placed after the item it follows upstream."""
    have = {m["id"] for m in merged.items}
    after: dict[str | None, list[tuple[Item, bytes]]] = {}
    anchor: str | None = None
    for u, d in zip(upstream.items, upstream.digests, strict=True):
        if u["id"] in have:
            anchor = u["id"]
        elif record is None or id_key(kind, u["id"]) not in record.items:
            after.setdefault(anchor, []).append((u, d))
            out.kept += 1
    if not after:
        return merged
    pairs = list(after.pop(None, []))
    for m, d in zip(merged.items, merged.digests, strict=True):
        pairs.append((m, d))
        pairs.extend(after.pop(m["id"], []))
    return Side([p[0] for p in pairs], [p[1] for p in pairs])
