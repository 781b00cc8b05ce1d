"""The lookup by id of agent-memory-server 0.15.2, for the engine's GET and DELETE: when a
session's exact key is missing, the one session the upstream's search index would find
(store/idindex.py holds that index, so a lookup costs one Redis command, not a scan)."""

from __future__ import annotations

from proxy import codec
from proxy.codec.dialect import Dialect, imported_scope
from proxy.engine.writes import Writes
from proxy.errors import ForwardToUpstream
from proxy.store.idindex import Found
from proxy.store.keys import SessionKeys, logical_key
from proxy.store.store import Store

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


async def delete_target(store: Store, writes: Writes, session_id: str, q: codec.Query
                        ) -> tuple[SessionKeys, Scope] | None:
    """What a DELETE deletes under 0.15.2's rules: the exact key when held here, else the
    one session found by id (with its own scope, for the upstream's copy too); None when
    several are found (a no-op). With none found here, the upstream applies its own rule
    to what only it holds (the exact scope is passed on)."""
    exact: Scope = (session_id, q.namespace, q.user_id)
    keys = store.keys(logical_key(*exact))
    await writes.settle(keys.logical)
    if await store.version(keys):
        return keys, exact
    found = await store.ids.find(session_id, q.namespace, q.user_id)
    if found.ambiguous:
        return None
    if found.member is None or not await _still(store, found):
        return keys, exact
    namespace, user_id, stored_id = found.scope
    return store.keys(found.logical), (stored_id, namespace, user_id)


async def _still(store: Store, found: Found) -> bool:
    """Whether the session found is still the one at its key (else forget the leftover)."""
    assert found.member is not None
    meta = await store.meta(store.keys(found.logical))
    if meta is not None and meta.index_member == found.member:
        return True
    await store.ids.forget(found.member)
    return False
