"""The lookup by id of agent-memory-server 0.15.2, for the engine: when a session's exact
key is missing, the one session the upstream's search index would find (store/idindex.py
holds that index, so a lookup costs one Redis command, not a scan); and, since the upstream
itself looks up by id on a DELETE of a missing key, a delete of exactly one upstream key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import orjson

from proxy import codec
from proxy.codec.dialect import Dialect, imported_scope
from proxy.errors import ForwardToUpstream, UpstreamError
from proxy.store.idindex import Found
from proxy.store.keys import SessionKeys, logical_key
from proxy.store.store import Store
from proxy.upstream.sessions import WM_PATH, UpstreamSessions

if TYPE_CHECKING:
    from proxy.engine.engine import Engine

Scope = tuple[str, str | None, str | None]  # session_id, namespace, user_id


def imported(dialect: Dialect, doc: bytes, session_id: str, namespace: str | None,
             user_id: str | None) -> tuple[codec.PutBody, list[codec.EncodedMessage]]:
    """The session an upstream GET (scoped by ``namespace``/``user_id``) answered with
    ``doc``, to import at that GET's key. Under 0.15.2 the answer's namespace and user_id
    are ``stored or query``: the stored ones are worked out and kept in the document; an
    answer that cannot lie at that key was found by the upstream's own lookup by id, and
    the request goes to the upstream instead (ForwardToUpstream)."""
    body, encoded = codec.import_upstream_document(doc)
    if not dialect.scope_from_store:
        return body, encoded
    scope = imported_scope(logical_key, session_id, (namespace or None, user_id or None),
                           (body.namespace or None, body.user_id or None))
    if scope is None:
        raise ForwardToUpstream("found by id in the upstream")
    return codec.import_upstream_document(doc, scope)


async def delete_target(engine: Engine, session_id: str, q: codec.Query
                        ) -> tuple[SessionKeys, Scope, bool] | None:
    """What a DELETE deletes under 0.15.2's rules: the exact key when held here, else the
    one session found by id (with its own scope, for the upstream's copy too); None when
    several are found (a no-op). The flag says whether it is held here: when not, the
    exact scope goes to the upstream, which applies its own rule to what only it holds."""
    store = engine.store
    exact: Scope = (session_id, q.namespace, q.user_id)
    keys = store.keys(logical_key(*exact))
    await engine.writes.settle(keys.logical)
    if engine.cache.get(keys.logical) is not None or await store.version(keys):
        return keys, exact, True
    found = await store.ids.find(session_id, q.namespace, q.user_id)
    if found.ambiguous:
        return None
    if found.member is None or not await _still(store, found):
        return keys, exact, False
    namespace, user_id, stored_id = found.scope
    return store.keys(found.logical), (stored_id, namespace, user_id), True


async def delete_upstream_copy(upstream: UpstreamSessions, dialect: Dialect, session_id: str,
                               namespace: str | None, user_id: str | None) -> None:
    """Delete the upstream's document at exactly this key. Under 0.15.2 a DELETE of a
    missing key deletes the one session it finds by id instead (some other session). So
    a GET of one message asks first: 404 means no document at that key (nor one found by
    id), and nothing is sent; else the key is made to exist, by an empty PUT (no messages
    or memories: nothing is summarized or promoted), and then deleted."""
    if dialect.lookup_by_id:
        path = WM_PATH + quote(session_id, safe="") + "?" + urlencode(
            {k: v for k, v in (("namespace", namespace), ("user_id", user_id)) if v}
            | {"recent_messages_limit": "1"})
        found = await upstream.upstream.call("GET", path, None, upstream.credentials.headers())
        if found.status == 404:
            return
        body = orjson.dumps({"namespace": namespace, "user_id": user_id})
        answer = await upstream.store_put(session_id, body, "application/json", "")
        if answer.status != 200:
            raise UpstreamError(f"upstream answered {answer.status} writing {session_id!r}")
    await upstream.delete(session_id, namespace, user_id)


async def _still(store: Store, found: Found) -> bool:
    """Whether the session found is still the one at its key (else forget the leftover)."""
    assert found.member is not None
    meta = await store.meta(store.keys(found.logical))
    if meta is not None and meta.index_member == found.member:
        return True
    await store.ids.forget(found.member)
    return False
