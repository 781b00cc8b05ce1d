"""The engine's dealings with the upstream's copy of a session: a PUT the fast path leaves
to the upstream (validated under a scratch id, or stored under its own id with the upstream
sync on), a session the proxy cannot reproduce left in the upstream, an old upstream copy
forgotten when a new session here shadows it, and a session that so far exists only in the
upstream imported once."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import orjson
from multidict import CIMultiDict

from proxy import codec
from proxy.engine import lookup
from proxy.engine.answer import Answer
from proxy.engine.cache import SessionTail
from proxy.engine.plan import plan_rewrite
from proxy.errors import Conflict, ForwardToUpstream, HttpError
from proxy.store.keys import SessionKeys, logical_key

if TYPE_CHECKING:
    from proxy.engine.engine import Engine

log = logging.getLogger("proxy.engine.upstream_copy")

# The upstream's headers a handed-off PUT passes on (a refusal's challenge included).
KEPT_HEADERS = ("x-deprecation-warning", "www-authenticate")


async def put_via_upstream(engine: Engine, session_id: str, raw: bytes,
                           content_type: str | None, query_string: str) -> Answer:
    """A PUT the fast path does not answer, answered by the upstream; on 200 what it
    answered is stored here as any PUT's outcome."""
    if engine.sync is None:
        answer = await engine.upstream.validate_put(session_id, raw, content_type,
                                                    query_string)
    else:  # the upstream's copy is the synced one: it summarizes and stores it itself
        answer = await engine.upstream.store_put(session_id, raw, content_type, query_string)
    if answer.status == 200:
        try:
            body, encoded = codec.ingest_upstream_put_response(answer.body)
        except codec.Unsupported:
            return await leave_in_upstream(engine, session_id, raw, content_type,
                                           query_string)
        keys = engine.store.keys(logical_key(session_id, body.namespace, body.user_id))
        async with engine.session_lock(keys.logical):
            tail = await engine.tail_for_write(keys)
            plan = plan_rewrite(keys, session_id, body, encoded, tail)
            await engine.writes.commit(plan, tail)
            if engine.sync is not None:
                await engine.sync.holds(keys, body.doc, plan.write.messages, False)
    headers = CIMultiDict((k, v) for k, v in answer.headers.items()
                          if k.lower() in KEPT_HEADERS)
    return Answer(answer.status, answer.body, headers,
                  answer.headers.get("content-type", "application/json"))


async def leave_in_upstream(engine: Engine, session_id: str, raw: bytes,
                            content_type: str | None, query_string: str) -> Answer:
    """A session the upstream accepts but the proxy cannot reproduce byte for byte
    (say, integers beyond 64 bits in ``data``) lives in the upstream: PUT it there
    under its own id, and drop any copy here so reads fall through to it."""
    answer = await engine.upstream.store_put(session_id, raw, content_type, query_string)
    scope = orjson.loads(raw) if answer.status == 200 else {}
    keys = engine.store.keys(logical_key(session_id, scope.get("namespace"),
                                         scope.get("user_id")))
    async with engine.session_lock(keys.logical):
        engine.cache.drop(keys.logical)
        await engine.delete_stored(keys)
    log.info("session %s kept in the upstream (not representable here)", session_id)
    return Answer(answer.status, answer.body, CIMultiDict(
        (k, v) for k, v in answer.headers.items() if k.lower() in KEPT_HEADERS),
        answer.headers.get("content-type", "application/json"))


async def forget_upstream_copy(engine: Engine, session_id: str, namespace: str | None,
                               user_id: str | None) -> None:
    """A new session here shadows any old upstream copy; delete that copy so it can
    never be imported over this one later."""
    try:  # under the session's lock, as a DELETE's upstream delete: never interleaved
        async with engine.session_lock(logical_key(session_id, namespace, user_id)):
            await lookup.delete_upstream_copy(engine.upstream, engine.dialect, session_id,
                                              namespace, user_id)
    except HttpError as exc:
        log.warning("could not delete upstream copy of %s: %s", session_id, exc.detail)


async def import_session(engine: Engine, session_id: str, namespace: str | None,
                         user_id: str | None, keys: SessionKeys) -> SessionTail | None:
    """Bring over a session that so far exists only in the upstream, once."""
    async with engine.session_lock(keys.logical):
        meta = await engine.store.meta(keys)
        if meta is None:
            if engine.sync is not None and not await engine.sync.may_import(keys):
                return None  # deleted here: a hand-over may still land upstream
            doc = await engine.upstream.fetch(session_id, namespace, user_id)
            if doc is None:
                return None
            try:
                body, encoded = lookup.imported(engine.dialect, doc, session_id, namespace,
                                                user_id)
            except codec.Unsupported:
                # Not reproducible here: leave it where it is, the upstream serves it.
                log.warning("session %s in the upstream cannot be imported", session_id)
                raise ForwardToUpstream("not for the fast path") from None
            body = replace(body, namespace=namespace or None, user_id=user_id or None)
            plan = plan_rewrite(keys, session_id, body, encoded, None)
            # The upstream holds it already: nothing to hand over.
            write = replace(plan.write, handover=engine.sync is None)
            try:
                # Create only: if another proxy imported it first, theirs stands.
                await (await engine.writes.flusher.submit(write))
                if engine.sync is not None:
                    await engine.sync.holds(keys, body.doc, write.messages, True)
            except Conflict:
                pass
            if engine.sync is None:
                await lookup.delete_upstream_copy(engine.upstream, engine.dialect, session_id,
                                                  namespace, user_id)
            log.info("imported session %s (%d messages)", session_id, len(encoded))
    return await engine.tail_for_read(keys, None)

