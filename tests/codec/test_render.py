"""The codec against the contract's examples (E1-E18, §6.2, §6.3) and its refusals."""

from typing import Any

import orjson

from proxy import codec
from proxy.codec import Query
from tests.codec.samples import JSON, NOW, ULID_RE, put


def render_get_like_engine(body: Any, query: dict[str, str]) -> dict[str, Any]:
    pb = codec.parse_put(orjson.dumps(body), JSON, NOW)
    enc = codec.encode_messages(pb.messages, NOW)
    q = codec.parse_query(query, "get")
    if q.recent_messages_limit and q.recent_messages_limit > 0:
        enc = sorted(enc, key=lambda e: e.created_at_us)[-q.recent_messages_limit :]
    limit = codec.truncation_limit(q)
    if enc and limit is not None:
        enc = enc[codec.truncate_count([e.tokens for e in enc], limit) :]
    msgs = codec.join_messages([e.body for e in enc])
    out = codec.render_get("s", pb.doc, q.namespace, msgs, sum(e.tokens for e in enc), q)
    parsed: dict[str, Any] = orjson.loads(out)
    return parsed


E4_BODY = {
    "messages": [
        {
            "role": "user",
            "content": "one two three four five",
            "id": "t1",
            "created_at": "2024-01-01T00:00:03Z",
        },
        {
            "role": "assistant",
            "content": "six seven eight",
            "id": "t2",
            "created_at": "2024-01-01T00:00:01Z",
        },
        {
            "role": "user",
            "content": "nine ten",
            "id": "t3",
            "created_at": "2024-01-01T00:00:02+00:00",
        },
    ],
    "data": {"k": [1, None]},
    "ttl_seconds": 600,
    "tokens": 5,
}


def test_e1_put_without_created_at_renders_generated_values() -> None:
    body = {
        "messages": [{"role": "user", "content": "Hi, we am Ana"}],
        "user_id": "spec-ana",
        "namespace": "spec-app",
    }
    out, _ = put(body, sid="spec-ex1")
    masked = ULID_RE.sub("ULID", out.decode())
    now = "2026-11-23T19:52:03.347265Z"
    assert masked == (
        '{"messages":[{"role":"user","content":"Hi, we am Ana","id":"ULID",'
        f'"created_at":"{now}","persisted_at":null,"discrete_memory_extracted":"f"}}],'
        '"memories":[],"data":null,"context":null,"user_id":"spec-ana","tokens":0,'
        '"session_id":"spec-ex1","namespace":"spec-app",'
        '"long_term_memory_strategy":{"strategy":"discrete","config":{}},"ttl_seconds":null,'
        f'"last_accessed":"{now}","created_at":"{now}","updated_at":"{now}",'
        '"context_percentage_total_used":null,"context_percentage_until_summarization":null}'
    )
    enc = codec.encode_messages([{"role": "user", "content": "x"}], NOW)
    assert enc[0].had_created_at is False  # the handler adds x-deprecation-warning


def test_e3_get_floors_timestamps_data_becomes_object_and_namespace_is_the_query() -> None:
    body = {
        "messages": [{"role": "user", "content": "Hi, we am Ana"}],
        "user_id": "spec-ana",
        "namespace": "spec-app",
    }
    _, got = put(
        body,
        {"namespace": "spec-app", "user_id": "spec-ana", "context_window_max": "100"},
        sid="spec-ex1",
    )
    text = got.decode()
    assert '"data":{},"context":null,"user_id":"spec-ana","tokens":0,' in text
    assert '"session_id":"spec-ex1","namespace":"spec-app",' in text
    assert text.endswith(
        '"ttl_seconds":null,"last_accessed":"2026-11-23T19:52:03Z",'
        '"created_at":"2026-11-23T19:52:03Z","updated_at":"2026-11-23T19:52:03Z",'
        '"context_percentage_total_used":7.000000000000001,'
        '"context_percentage_until_summarization":10.0}'
    )


def test_get_namespace_echo_is_the_query_value_even_empty() -> None:
    pb = codec.parse_put(b'{"namespace":"ns"}', JSON, NOW)
    assert b'"namespace":null,' in codec.render_get("s", pb.doc, None, b"[]", 0, Query())
    assert b'"namespace":"",' in codec.render_get("s", pb.doc, "", b"[]", 0, Query())


def test_e4_put_keeps_body_order_and_writes_utc_offsets_as_z() -> None:
    out, _ = put(E4_BODY, {"context_window_max": "100"})
    doc = orjson.loads(out)
    assert [m["id"] for m in doc["messages"]] == ["t1", "t2", "t3"]
    assert doc["messages"][2]["created_at"] == "2024-01-01T00:00:02Z"
    assert doc["data"] == {"k": [1, None]} and doc["ttl_seconds"] == 600 and doc["tokens"] == 5
    assert out.endswith(
        b'"context_percentage_total_used":16.0,'
        b'"context_percentage_until_summarization":22.857142857142858}'
    )


def test_e5_recent_messages_limit_sorts_oldest_first() -> None:
    doc = render_get_like_engine(E4_BODY, {"recent_messages_limit": "2"})
    assert [m["id"] for m in doc["messages"]] == ["t3", "t1"]
    assert doc["context_percentage_total_used"] is None


def test_e6_truncation_drops_oldest_in_stored_order() -> None:
    doc = render_get_like_engine(E4_BODY, {"context_window_max": "12"})
    assert [m["id"] for m in doc["messages"]] == ["t2", "t3"]
    assert doc["context_percentage_total_used"] == 75.0
    assert doc["context_percentage_until_summarization"] == 100.0


def test_import_of_a_get_document_reproduces_it() -> None:
    _, got = put(E4_BODY)
    body, msgs = codec.import_upstream_document(got)
    again = codec.render_get(
        "s",
        body.doc,
        None,
        codec.join_messages([m.body for m in msgs]),
        sum(m.tokens for m in msgs),
        Query(),
    )
    assert again == got
    assert body.ttl_seconds == 600 and [m.tokens for m in msgs] == [7, 5, 4]


# §6.3 percentages, each with the IEEE result the upstream renders.


def _fresh_get(session_id: str, doc: bytes, namespace_query: str | None, messages_json: bytes,
               tokens: int, q: Query, dialect: Any) -> bytes:
    """render_get as it rendered before it kept session fields: everything every time."""
    from proxy.codec import render, timestamps
    from proxy.codec.window import percentages

    d = orjson.loads(doc)
    namespace, d["user_id"] = dialect.response_scope(d.get("namespace"), d["user_id"],
                                                     namespace_query, q.user_id)
    fmt = timestamps.format_epoch
    times = (fmt(d["last_accessed"]), fmt(d["created_at"]), fmt(d["updated_at"]))
    pct = percentages(tokens, len(messages_json) > 2, q, dialect.threshold)
    return render._render(session_id, d, namespace, messages_json, times, pct)


def test_get_answers_reuse_their_session_fields_byte_for_byte() -> None:
    """A GET's session fields are rendered once per stored document: the answer is the
    same bytes a fresh render gives, whatever the messages, query and percentages."""
    from proxy.codec import render
    from proxy.codec.dialect import V0_14, V0_15

    pb = codec.parse_put(orjson.dumps({**E4_BODY, "user_id": "u", "namespace": "n",
                                       "data": {"k": [1.5, "x"]}}), JSON, NOW)
    msgs = codec.join_messages([e.body for e in codec.encode_messages(pb.messages, NOW)])
    render._envelopes.clear()
    for query in ({}, {"context_window_max": "100"}, {"model_name": "gpt-4o"},
                  {"context_window_max": "7"}, {"namespace": "n", "user_id": "other"},
                  {"namespace": ""}):
        q = codec.parse_query(query, "get")
        for dialect in (V0_14, V0_15):
            for sid in ("s", "t"):
                for messages_json, tokens in ((msgs, 12), (b"[]", 0)):
                    want = _fresh_get(sid, pb.doc, q.namespace, messages_json, tokens, q,
                                      dialect)
                    for _ in range(2):  # rendered, then from the kept fields
                        assert codec.render_get(sid, pb.doc, q.namespace, messages_json,
                                                tokens, q, dialect) == want
    assert 0 < render._envelopes.currsize <= render.ENVELOPES_MAX_BYTES
