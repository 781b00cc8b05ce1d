"""Copies of a session as the sync compares them: content, stamps and the PUT it sends."""

from __future__ import annotations

import orjson

from proxy.sync.copies import Copy
from tests.sync.sessions import PERSISTED, copy_of, memory, msgs, stamped


def upstream_get(copy: Copy, session_id: str = "s") -> bytes:
    """The upstream's GET of ``copy`` (its shape: session fields, floored timestamps)."""
    f = copy.fields
    return orjson.dumps({
        "messages": copy.messages, "memories": copy.memories, "data": f["data"],
        "context": f["context"], "user_id": f["user_id"], "tokens": f["tokens"],
        "session_id": session_id, "namespace": f["namespace"],
        "long_term_memory_strategy": f["long_term_memory_strategy"],
        "ttl_seconds": f["ttl_seconds"], "last_accessed": "2025-06-01T00:00:00Z",
        "created_at": "2025-06-01T00:00:00Z", "updated_at": "2025-06-01T00:00:09Z",
        "context_percentage_total_used": None,
        "context_percentage_until_summarization": None})


def test_the_upstream_document_reads_as_the_stored_copy() -> None:
    ours = copy_of(msgs(3), [memory("a")], context="c", data={"k": 1}, namespace="ns")
    theirs = Copy.from_upstream(upstream_get(ours))
    assert theirs.same_as(ours) and theirs.content() == ours.content()
    assert theirs.times["updated_at"] == ours.times["updated_at"] + 9


def test_stamps_are_not_content() -> None:
    plain = copy_of(msgs(3), [memory("a")])
    promoted = copy_of([stamped(m, PERSISTED) for m in msgs(3)],
                       [memory("a", persisted=PERSISTED, memory_hash="h")])
    assert promoted.content() == plain.content()
    assert not promoted.same_as(plain)
    assert plain.pending() and not promoted.pending()


def test_the_ttl_is_each_sides_own() -> None:
    assert copy_of(msgs(1), ttl_seconds=60).same_as(copy_of(msgs(1), ttl_seconds=59))


def test_content_covers_messages_memories_and_fields() -> None:
    base = copy_of(msgs(3), [memory("a")], context="c")
    assert copy_of(msgs(3), [memory("a")], context="d").content() != base.content()
    assert copy_of(msgs(4), [memory("a")], context="c").content() != base.content()
    assert copy_of(msgs(3), [memory("a", "other")], context="c").content() != base.content()
    # data null and {} are the same: the upstream stores null as {}
    assert copy_of(msgs(1), data=None).content() == copy_of(msgs(1), data={}).content()


def test_put_body_sends_the_whole_session_and_keeps_its_times() -> None:
    ours = copy_of(msgs(2), [memory("a")], context="c", namespace="ns", user_id="u",
                   ttl_seconds=60, created_at="2025-01-01T00:00:00Z")
    body = orjson.loads(ours.put_body(42))
    assert body["messages"] == msgs(2) and body["memories"] == ours.memories
    assert (body["namespace"], body["user_id"], body["ttl_seconds"]) == ("ns", "u", 42)
    assert orjson.loads(ours.put_body())["ttl_seconds"] is None  # keeps the running TTL
    assert body["created_at"] == 1735689600 and "updated_at" not in body
    assert Copy.from_stored(ours.doc(), [orjson.dumps(m) for m in ours.messages]).same_as(ours)
