"""Where agent-memory-server versions differ, side by side: the upstream and the proxy
(default settings) get the same requests and must give the same answers, whichever
version runs (this module runs against the default version, and against the others in
test_versions_parity.py). The cases are those verified live on 0.15.2 (notes §2-§5); the
explicit assertions say what each version answers, through ``dialect``."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from proxy.codec.dialect import Dialect
from proxy.localstack import Service
from tests.differential import WM, Sides, j

pytestmark = pytest.mark.v015

PROMPT = "/v1/memory/prompt"




def put_body(namespace: str | None = None, user_id: str | None = None,
             content: str = "hi") -> bytes:
    return j({"messages": [{"role": "user", "content": content, "id": "m1",
                            "created_at": "2024-01-01T00:00:00Z"}],
              "namespace": namespace, "user_id": user_id})


def found(dialect: Dialect) -> int:
    """A GET whose exact key is missing but whose id names one session."""
    return 200 if dialect.lookup_by_id else 404


async def test_lookup_by_id_with_and_without_scope(sides: Sides, dialect: Dialect) -> None:
    await sides.same("PUT", WM + "SIDE-fb1", put_body("SIDE-nsA", "SIDE-uA"))
    for path in ("SIDE-fb1", "EDIS-FB1", "SIDE-fb1?namespace=EDIS-NSA", "SIDE-fb1?user_id=SIDE-uA",
                 "SIDE-fb1?namespace=SIDE-nsA", "SIDE-fb1?user_id=SIDE-uA&namespace=",
                 "SIDE-fb1?recent_messages_limit=1&context_window_max=100"):
        got = await sides.same("GET", WM + path)
        assert got.status == found(dialect), path
    got = await sides.same("GET", WM + "EDIS-FB1?namespace=EDIS-NSA")
    if dialect.lookup_by_id:  # the path's id, the stored scope
        assert (got.json()["session_id"], got.json()["namespace"]) == ("EDIS-FB1", "SIDE-nsA")
    assert (await sides.same("GET", WM + "SIDE-fb1?namespace=other")).status == 404
    assert (await sides.same("GET", WM + "SIDE-fb1?user_id=SIDE-uA&namespace=SIDE-x")
            ).status == 404


async def test_several_found_is_404_and_delete_a_no_op(sides: Sides, dialect: Dialect) -> None:
    await sides.same("PUT", WM + "SIDE-amb", put_body("SIDE-n1", "SIDE-u1", "first"))
    await sides.same("PUT", WM + "SIDE-amb", put_body("SIDE-n2", "SIDE-u1", "second"))
    assert (await sides.same("GET", WM + "SIDE-amb")).status == 404
    assert (await sides.same("GET", WM + "SIDE-amb?user_id=SIDE-u1")).status == 404
    assert (await sides.same("GET", WM + "SIDE-amb?namespace=SIDE-n2")).status == found(dialect)
    await sides.same("DELETE", WM + "SIDE-amb")  # several: nothing deleted
    await sides.same("DELETE", WM + "SIDE-amb?user_id=SIDE-u1")
    both = "?namespace=SIDE-n2&user_id=SIDE-u1"
    assert (await sides.same("GET", WM + "SIDE-amb" + both)).status == 200
    await sides.same("DELETE", WM + "EDIS-AMB?namespace=EDIS-N2")  # one: deleted by id
    assert (await sides.same("GET", WM + "SIDE-amb" + both)).status == (
        404 if dialect.lookup_by_id else 200)
    got = await sides.same("GET", WM + "SIDE-amb")  # only n1 is left
    assert got.status == found(dialect)
    await sides.same("DELETE", WM + "SIDE-amb")
    got = await sides.same("GET", WM + "SIDE-amb?namespace=SIDE-n1&user_id=SIDE-u1")
    assert got.status == (404 if dialect.lookup_by_id else 200)
    await sides.same("GET", WM + "?user_id=SIDE-u1")


async def test_ids_and_scopes_are_tags_split_at_commas(sides: Sides, dialect: Dialect) -> None:
    await sides.same("PUT", WM + "SIDE-x,SIDE-y", put_body())
    for path in ("SIDE-x", "EDIS-Y", "SIDE-x,SIDE-y", "SIDE-x%2CSIDE-y"):
        await sides.same("GET", WM + path)
    assert (await sides.same("GET", WM + "SIDE-x")).status == found(dialect)
    await sides.same("PUT", WM + "SIDE-p,SIDE-q", put_body("SIDE-q"))
    assert (await sides.same("GET", WM + "SIDE-p,SIDE-q")).status == 404  # never a tag
    assert (await sides.same("GET", WM + "EDIS-P,EDIS-Q")).status == 404
    await sides.same("PUT", WM + "SIDE-cm", put_body("SIDE-a,SIDE-b"))
    got = await sides.same("GET", WM + "SIDE-cm?namespace=SIDE-b")
    assert got.status == found(dialect)
    await sides.same("DELETE", WM + "EDIS-Y")  # deletes "x,y" in 0.15.2
    assert (await sides.same("GET", WM + "SIDE-x,SIDE-y")).status == (
        404 if dialect.lookup_by_id else 200)


@pytest.mark.parametrize(("stored", "asked"), [
    ("SIDE-a%7Cb", "EDIS-A%7CB"), ("SIDE-a%7Cb", "SIDE-a"), ("SIDE-star*x", "EDIS-STAR*X"),
    ("SIDE-star*x", "SIDE-star*"), ("SIDE-m:n.o", "EDIS-M:N.O"),
    ("SIDE-caf%C3%A9", "SIDE-CAF%C3%89"),  # RediSearch 2.10 folds ASCII letters only
    ("SIDE-Stra%C3%9Fe", "SIDE-stra%C3%9Fe"), ("SIDE-Stra%C3%9Fe", "SIDE-STRASSE"),
    ("%20SIDE-pad%20", "SIDE-pad"), ("%20SIDE-pad%20", "SIDE-pad%20"),
    ("SIDE-%7Bt%7D", "EDIS-%7BT%7D"), ("SIDE-q%3Fx", "EDIS-Q%3FX"),
])
async def test_what_a_tag_matches(sides: Sides, stored: str, asked: str) -> None:
    await sides.same("PUT", WM + stored, put_body("SIDE-tags"))
    await sides.same("GET", WM + asked)
    await sides.same("DELETE", WM + asked)
    await sides.same("GET", WM + stored + "?namespace=SIDE-tags")


async def test_get_scope_stored_or_query(sides: Sides, dialect: Dialect) -> None:
    await sides.same("PUT", WM + "SIDE-col", put_body("SIDE-X"))
    got = await sides.same("GET", WM + "SIDE-col?user_id=SIDE-X")
    expected = ["SIDE-X", "SIDE-X"] if dialect.scope_from_store else [None, None]
    assert [got.json()["user_id"], got.json()["namespace"]] == expected
    await sides.same("PUT", WM + "SIDE-col2", put_body(None, "SIDE-Y"))
    got = await sides.same("GET", WM + "SIDE-col2?namespace=SIDE-Y")
    assert [got.json()["user_id"], got.json()["namespace"]] == ["SIDE-Y", "SIDE-Y"]
    await sides.same("PUT", WM + "SIDE-plain", put_body())
    got = await sides.same("GET", WM + "SIDE-plain?namespace=")
    assert [got.json()["user_id"], got.json()["namespace"]] == [None, ""]
    await sides.same("PUT", WM + "SIDE-blank", put_body("", ""))
    await sides.same("GET", WM + "SIDE-blank?namespace=&user_id=SIDE-u")


async def test_prompt_reads_the_session_found_by_id(sides: Sides, dialect: Dialect) -> None:
    body = j({"namespace": "SIDE-n1", "user_id": "SIDE-u1", "context": "earlier",
              "messages": [{"role": "user", "content": "hello", "id": "a",
                            "created_at": "2024-01-01T00:00:00Z"},
                           {"role": "tool", "content": "result", "id": "b",
                            "created_at": "2024-01-01T00:00:01Z"}]})
    await sides.same("PUT", WM + "SIDE-p1", body)
    for session in ({"session_id": "SIDE-p1"}, {"session_id": "EDIS-P1", "namespace": "EDIS-N1"},
                    {"session_id": "SIDE-p1", "context_window_max": 5},
                    {"session_id": "SIDE-p1", "namespace": "SIDE-other"}):
        got = await sides.same("POST", PROMPT, j({"query": "what?", "session": session}))
        assert got.status == 200
    got = await sides.same("POST", PROMPT, j({"query": "what?",
                                              "session": {"session_id": "SIDE-p1"}}))
    assert len(got.json()["messages"]) == (4 if dialect.lookup_by_id else 1)


async def test_comma_tags_in_memories(sides: Sides, dialect: Dialect) -> None:
    memory = {"id": "r3", "text": "t", "topics": ["a,b"], "entities": ["c,d"],
              "extracted_from": ["e,f"]}
    put = await sides.same("PUT", WM + "SIDE-m3", j({"memories": [memory]}))
    # 0.15.2's server MemoryRecord refuses the commas: the client shape (16 keys) is taken.
    assert len(put.json()["memories"][0]) == (16 if dialect.comma_tags_unreadable else 20)
    got = await sides.same("GET", WM + "SIDE-m3")
    assert got.status == (404 if dialect.comma_tags_unreadable else 200)
    await sides.same("PUT", WM + "SIDE-m4", j({"memories": [{"text": "no id",
                                                             "topics": ["a,b"]}]}))
    await sides.same("GET", WM + "SIDE-m4")
    await sides.same("GET", WM + "?namespace=SIDE-none")
    await sides.same("POST", PROMPT, j({"query": "q", "session": {"session_id": "SIDE-m3"}}))
    await sides.same("DELETE", WM + "SIDE-m3")



async def test_the_proxy_never_deletes_an_upstream_session_found_by_id(
        sides: Sides, upstream_redis: Service) -> None:
    """An upstream-only session "FB1" (written before the proxy, say) must survive the
    proxy creating and deleting "fb1": those delete exactly their own upstream key, where
    a bare DELETE of a missing key would make 0.15.2 delete the one session found by id."""
    token = sides.tokens["proxy"]
    legacy = f"{token.upper()}-FB1"
    up = aioredis.Redis.from_url(upstream_redis.url)
    try:
        resp = await sides.direct.put(WM + legacy, data=put_body(f"{token}-x"),
                                      headers={"Content-Type": "application/json"})
        assert resp.status == 200
        resp.release()
        key = f"working_memory:{token}-x:{legacy}"
        assert await up.exists(key)
        await sides.one("proxy", "PUT", WM + "SIDE-fb1", put_body("SIDE-x"))  # a new session
        await sides.one("proxy", "GET", WM + "SIDE-fb1?namespace=SIDE-x")
        assert (await sides.one("proxy", "DELETE", WM + "SIDE-fb1?namespace=SIDE-x")
                ).status == 200
        for _ in range(40):  # the create's own clean-up runs behind the PUT's answer
            if not await up.keys(f"working_memory:*{token}-fb1*"):
                break
            await asyncio.sleep(0.05)
        assert await up.keys(f"working_memory:*{token}-fb1*") == []
        assert await up.exists(key)
    finally:
        await up.delete(f"working_memory:{token}-x:{legacy}")
        await up.aclose()


async def test_list_filters_fold_case_in_ascii_only(sides: Sides) -> None:
    await sides.same("PUT", WM + "SIDE-l1", put_body("SIDE-café"))
    await sides.same("PUT", WM + "SIDE-l2", put_body("SIDE-Stra\u00dfe"))
    for query in ("namespace=SIDE-CAF%C3%89", "namespace=SIDE-caf%C3%A9",
                  "namespace=EDIS-CAF%C3%A9", "namespace=SIDE-stra%C3%9Fe",
                  "namespace=SIDE-STRASSE"):
        await sides.same("GET", WM + "?" + query)
