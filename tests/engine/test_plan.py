"""PUT planning: what is proven already stored (by digest, never per message), what is
new, and the session facts (count, tokens, order, timestamp kinds) a plan carries."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from proxy import codec
from proxy.codec import rawbody
from proxy.engine.cache import SessionTail
from proxy.engine.plan import Plan, plan_proven, plan_put, prove
from proxy.store.keys import SessionKeys
from tests.engine_fixtures import Message, msg, msgs

NOW = datetime(2025, 1, 1, tzinfo=UTC)
KEYS = SessionKeys.build("t", "s")


def plan(messages: list[Any], before: Plan | None = None, **fields: Any) -> Plan:
    body = codec.parse_put(orjson.dumps({"messages": messages, **fields}), "application/json",
                           NOW)
    tail = None
    if before is not None:
        tail = SessionTail(KEYS, replace(before.write.meta, version=7))
    return plan_put(KEYS, "s", body, tail, NOW)


def test_a_new_session_is_written_whole() -> None:
    p = plan(msgs(3))
    assert p.write.rewrite and p.write.expected_version == 0 and p.prefix_count == 0
    assert [orjson.loads(m) for m in p.write.messages] == msgs(3)
    assert p.write.meta.count == 3 and p.tokens_total == sum(p.write.tokens)
    assert p.echo == orjson.dumps(msgs(3))  # canonical input is echoed as it came


def test_appends_carry_only_the_new_messages() -> None:
    first = plan(msgs(5))
    p = plan(msgs(7), first)
    assert not p.write.rewrite and p.write.expected_version == 7 and p.prefix_count == 5
    assert [orjson.loads(m) for m in p.write.messages] == msgs(7)[5:]
    assert p.write.meta.count == 7
    assert p.tokens_total == first.tokens_total + sum(p.write.tokens)
    same = plan(msgs(5), first, context="new")  # nothing new, other session fields
    assert not same.write.rewrite and same.write.messages == [] and same.write.meta.count == 5


def edited(messages: list[Message], i: int, **change: Any) -> list[Message]:
    return [*messages[:i], {**messages[i], **change}, *messages[i + 1:]]


def test_any_change_to_stored_messages_is_a_rewrite() -> None:
    base = msgs(6)
    first = plan(base)
    for changed in (edited(base, 2, content="x"), edited(base, 5, id="other"),
                    edited(base, 0, role="system"), base[:2] + base[3:], base[:5],
                    [base[1], base[0], *base[2:]], [msg(9)]):
        p = plan(changed + [msg(6)], first)
        assert p.write.rewrite and p.prefix_count == 0, changed
        assert [orjson.loads(m) for m in p.write.messages] == changed + [msg(6)]


def test_messages_without_ids_are_never_proven() -> None:
    anonymous = [{"role": "user", "content": "hi", "created_at": "2024-01-01T00:00:00Z"}]
    first = plan(anonymous)
    assert first.write.meta.input_digest == b""
    p = plan(anonymous + [msg(1)], first)
    assert p.write.rewrite  # the upstream would give the first message a new id


def test_non_canonical_input_is_proven_but_not_echoed() -> None:
    short = [{k: m[k] for k in ("role", "content", "id", "created_at")} for m in msgs(4)]
    first = plan(short[:3])
    assert first.echo is None and not first.write.meta.input_canonical
    p = plan(short, first)
    assert not p.write.rewrite and p.prefix_count == 3 and p.echo is None
    assert orjson.loads(p.write.messages[0]) == msgs(4)[3]


def test_order_and_timestamp_kinds_are_tracked() -> None:
    first = plan(msgs(3))
    assert first.write.meta.sorted and first.write.meta.tz == "a"
    late = plan(msgs(3) + [msg(9, at=1)], first)
    assert not late.write.rewrite and not late.write.meta.sorted
    naive = {**msg(10), "created_at": "2024-01-01T00:10:00"}
    mixed = plan(msgs(3) + [naive], first)
    assert mixed.write.meta.tz == "m"
    assert plan([naive]).write.meta.tz == "n"


def test_as_rewrite_keeps_the_whole_message_list() -> None:
    first = plan(msgs(4))
    p = plan(msgs(6), first).as_rewrite()
    assert p.write.rewrite and p.prefix_count == 0
    assert [orjson.loads(m) for m in p.write.messages] == msgs(6)
    assert len(p.write.tokens) == 6 and p.write.meta.count == 6


# --- the raw path: proven from the body's bytes (plan.prove, plan.plan_proven) ---------


def remembered(p: Plan) -> SessionTail:
    """The cached tail as the write of ``p`` leaves it, with its input kept."""
    tail = SessionTail(KEYS, replace(p.write.meta, version=7))
    p.remember_input(tail)
    return tail


def proven_put(raw: bytes, tail: SessionTail) -> tuple[Plan, bytes]:
    start = rawbody.array_start(raw)
    assert start is not None
    proof = prove(tail.meta, tail.known, raw, start)
    assert proof is not None
    body = codec.parse_put(rawbody.with_sentinel(raw, start, proof.length), "application/json",
                           NOW)
    new = rawbody.after_sentinel(body.messages)
    assert new is not None
    return plan_proven(KEYS, "s", body, new, tail, proof, NOW), raw


def test_a_proven_put_records_the_digest_a_whole_parse_would() -> None:
    tail = remembered(plan(msgs(5)))
    p, raw = proven_put(orjson.dumps({"messages": msgs(8)}), tail)
    whole = plan(msgs(8))
    assert p.write.meta.input_digest == whole.write.meta.input_digest
    assert p.write.meta.input_length == whole.write.meta.input_length
    assert not p.write.rewrite and p.prefix_count == 5
    assert [orjson.loads(m) for m in p.write.messages] == msgs(8)[5:]
    assert p.known is not None and bytes(p.known[0]) == orjson.dumps(msgs(8))[1:-1]
    assert isinstance(p.known[0], memoryview) and p.known[0].obj is raw  # no copy
    assert p.raw_prefix() == msgs(5)  # parsed whole only for a rewrite


def test_the_proof_compares_kept_bytes_or_else_the_digest() -> None:
    first = plan(msgs(3))
    tail = remembered(first)
    assert tail.known is not None and tail.known.meta is tail.meta
    raw = orjson.dumps({"messages": msgs(4)})
    edited = orjson.dumps({"messages": [*msgs(2), msg(2, "changed"), msg(3)]})
    assert prove(tail.meta, tail.known, raw, 13) is not None
    assert prove(tail.meta, tail.known, edited, 13) is None
    tail.meta = replace(tail.meta)  # a newer write: the kept bytes no longer apply
    assert prove(tail.meta, tail.known, edited, 13) is None
    by_digest = prove(tail.meta, tail.known, raw, 13)
    assert by_digest is not None and by_digest.hasher.digest() == first.write.meta.input_digest
    assert prove(replace(tail.meta, input_digest=b""), None, raw, 13) is None


def test_new_messages_sent_in_another_form_keep_nothing_for_the_next_put() -> None:
    tail = remembered(plan(msgs(3)))
    spaced = orjson.dumps({"messages": msgs(3)})[:-2] + b', ' + orjson.dumps(msg(3)) + b"]}"
    p, _ = proven_put(spaced, tail)
    assert p.known is None and p.write.meta.input_digest == plan(msgs(4)).write.meta.input_digest
    anonymous = {"role": "user", "content": "hi", "created_at": "2024-01-01T00:00:00Z"}
    p, _ = proven_put(orjson.dumps({"messages": [*msgs(3), anonymous]}), tail)
    assert p.known is None and p.write.meta.input_digest == b""
