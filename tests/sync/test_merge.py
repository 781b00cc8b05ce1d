"""The merge rule (proxy/sync/merge.py), case by case."""

from __future__ import annotations

from proxy.sync.copies import Copy
from proxy.sync.merge import merge
from proxy.sync.records import Record
from tests.sync.sessions import PERSISTED, copy_of, memory, msg, msgs, stamped

LATER = 10**10  # "the proxy created its copy long after the upstream's was written"


def handed(copy: Copy, before: Record | None = None) -> Record:
    return Record.after(copy, before)


def ids(copy: Copy) -> list[str]:
    return [m["id"] for m in copy.messages]


def test_no_upstream_copy_hands_over_ours() -> None:
    ours = copy_of(msgs(3))
    out = merge(ours, None, None, LATER)
    assert out.kind == "absent" and out.copy is ours


def test_stamps_flow_back_by_id_and_never_backwards() -> None:
    ours = copy_of([msgs(3)[0], stamped(msg(1)), msg(2)], [memory("a"), memory("b")])
    theirs = copy_of([stamped(msg(0), PERSISTED), msg(1), msg(2)],
                     [memory("a", persisted=PERSISTED, memory_hash="h"), memory("b")])
    out = merge(ours, theirs, handed(ours), LATER)
    assert out.kind == "ours" and not out.content_changed
    assert [m["discrete_memory_extracted"] for m in out.copy.messages] == ["t", "t", "f"]
    assert out.copy.messages[0]["persisted_at"] == PERSISTED
    assert out.copy.memories[0]["persisted_at"] == PERSISTED
    assert out.copy.memories[0]["memory_hash"] == "h"
    assert out.copy.memories[1]["persisted_at"] is None
    assert out.stamped == 2
    assert ours.messages[0]["discrete_memory_extracted"] == "f"  # the input is left alone


def test_stamps_need_equal_content() -> None:
    ours = copy_of([msg(0, "edited here")])
    theirs = copy_of([stamped(msg(0))])
    out = merge(ours, theirs, handed(copy_of([msg(0)])), LATER)
    assert out.copy.messages[0]["discrete_memory_extracted"] == "f"


def test_an_older_hand_over_written_back_is_ours() -> None:
    # The upstream's extraction read hand-over 1, then wrote it back (stamped) over
    # hand-over 2: the proxy's copy wins, and keeps the stamps.
    first, second = copy_of(msgs(2)), copy_of(msgs(4))
    record = handed(second, handed(first))
    theirs = copy_of([stamped(m) for m in msgs(2)])
    out = merge(second, theirs, record, LATER)
    assert out.kind == "ours" and ids(out.copy) == ids(second)
    assert [m["discrete_memory_extracted"] for m in out.copy.messages] == ["t", "t", "f", "f"]


def test_a_foreign_message_is_kept_where_it_was_put() -> None:
    last = copy_of(msgs(3))
    ours = copy_of(msgs(4))  # a client appended m3 through the proxy since
    theirs = copy_of([msg(0), msg(1), msg(9, "added by MCP", mid="x"), msg(2)])
    out = merge(ours, theirs, handed(last), LATER)
    assert out.kind == "foreign" and out.kept == 1 and out.content_changed
    assert ids(out.copy) == ["m0", "m1", "x", "m2", "m3"]


def test_what_a_client_deleted_here_is_not_brought_back() -> None:
    last = copy_of(msgs(3))
    ours = copy_of(msgs(3)[1:])  # m0 dropped by a client's PUT
    theirs = copy_of([*msgs(3), msg(9, mid="x")])  # and something else added x
    out = merge(ours, theirs, handed(last), LATER)
    assert ids(out.copy) == ["m1", "m2", "x"]


def test_an_item_dropped_upstream_is_sent_again() -> None:
    last = copy_of(msgs(3))
    theirs = copy_of([msg(0), msg(2), msg(7, mid="x")])
    out = merge(last, theirs, handed(last), LATER)
    assert ids(out.copy) == ["m0", "m1", "m2", "x"]


def test_edits_win_where_only_one_side_changed() -> None:
    last = copy_of([msg(0), msg(1)], [memory("a"), memory("b")], context="c0")
    ours = copy_of([msg(0), msg(1, "client edit")], [memory("a"), memory("b")], context="c0")
    theirs = copy_of([msg(0, "mcp edit"), msg(1, "mcp edit too")],
                     [memory("a", "mcp text"), memory("b")], context="mcp context")
    out = merge(ours, theirs, handed(last), LATER)
    assert out.kind == "foreign"
    assert [m["content"] for m in out.copy.messages] == ["mcp edit", "client edit"]
    assert out.copy.memories[0]["text"] == "mcp text"
    assert out.copy.fields["context"] == "mcp context"
    assert out.taken == 3


def test_a_field_changed_on_both_sides_stays_ours() -> None:
    last = copy_of(msgs(1), context="c0", data={"k": 0})
    ours = copy_of(msgs(1), context="client", data={"k": 0})
    theirs = copy_of(msgs(1), context="mcp", data={"k": 1})
    out = merge(ours, theirs, handed(last), LATER)
    assert out.copy.fields["context"] == "client" and out.copy.fields["data"] == {"k": 1}


def test_a_leftover_older_than_our_copy_is_replaced() -> None:
    ours = copy_of(msgs(2))
    leftover = copy_of([msg(5, mid="old")])
    out = merge(ours, leftover, None, LATER)
    assert out.kind == "stale" and ids(out.copy) == ["m0", "m1"]


def test_without_a_record_a_newer_upstream_copy_is_foreign() -> None:
    ours = copy_of(msgs(2))
    theirs = copy_of([msg(5, mid="new")])
    out = merge(ours, theirs, None, created_s=0)
    assert out.kind == "foreign" and ids(out.copy) == ["new", "m0", "m1"]


def test_equal_content_is_never_a_divergence() -> None:
    ours = copy_of(msgs(2))
    out = merge(ours, copy_of([stamped(m) for m in msgs(2)]), None, created_s=0)
    assert out.kind == "ours" and out.stamped == 2
