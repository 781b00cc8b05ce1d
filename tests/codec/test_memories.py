"""Structured memories: client-shaped ones turn full-shaped, identical on PUT and GET."""


import orjson

from proxy import codec
from proxy.codec import Query
from proxy.codec.memories import FULL_KEYS
from tests.codec.samples import put


def test_e17_e18_client_shaped_memory_ingested_from_upstream_turns_full_on_get() -> None:
    upstream_put = (
        b'{"messages":[],"memories":[{"id":"01M84ZECFEVMCMREYR2N4XTXWE","text":"Ana likes tea",'
        b'"session_id":null,"user_id":null,"namespace":null,'
        b'"last_accessed":"2026-11-23T19:52:03.1Z","created_at":"2026-11-23T19:52:03.1Z",'
        b'"updated_at":"2026-11-23T19:52:03.1Z","topics":null,"entities":null,"memory_hash":null,'
        b'"discrete_memory_extracted":"f","memory_type":"semantic","persisted_at":null,'
        b'"extracted_from":null,"event_date":null}],"data":null,"context":null,"user_id":null,'
        b'"tokens":0,"session_id":"scratch","namespace":null,'
        b'"long_term_memory_strategy":{"strategy":"discrete","config":{}},"ttl_seconds":null,'
        b'"last_accessed":"2026-11-23T19:52:03.347297Z","created_at":"2026-11-23T19:52:03.347298Z",'
        b'"updated_at":"2026-11-23T19:52:03.347504Z","context_percentage_total_used":null,'
        b'"context_percentage_until_summarization":null}'
    )
    body, msgs = codec.ingest_upstream_put_response(upstream_put)
    assert msgs == []
    assert codec.render_put("scratch", body, b"[]", 0, Query()) == upstream_put
    got = codec.render_get("spec-ex5", body.doc, None, b"[]", 0, Query())
    mem = orjson.loads(got)["memories"][0]
    assert list(mem)[8:10] == ["pinned", "access_count"]
    assert mem["pinned"] is False and mem["access_count"] == 0
    assert list(mem)[-2:] == ["extraction_strategy", "extraction_strategy_config"]
    assert mem["extraction_strategy_config"] == {}
    assert b'"data":{},' in got and b'"updated_at":"2026-11-23T19:52:03Z"' in got


def test_full_shape_memory_renders_the_same_on_put_and_get() -> None:
    mem = {
        "id": "m1",
        "text": "fact",
        "memory_type": "semantic",
        "topics": ["a"],
        "created_at": "2024-01-01T00:00:00+00:00",
        "bogus": 1,
    }
    out, got = put({"memories": [mem]})
    put_mem = orjson.loads(out)["memories"][0]
    assert put_mem == orjson.loads(got)["memories"][0]
    assert tuple(put_mem) == FULL_KEYS
    assert put_mem["created_at"] == "2024-01-01T00:00:00Z" and "bogus" not in put_mem
