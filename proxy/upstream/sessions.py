"""Working-memory calls the engine makes to the upstream (the rare, heavy cases).

* ``validate_put``: a PUT the fast path does not answer itself (invalid, unusual, or one
  that would make the upstream summarize) goes to the upstream under a scratch session id,
  so the upstream validates, summarizes or fails exactly as it would. Its scratch
  document is deleted at once; on 200 the engine stores what the upstream answered.
  Nothing lands in the upstream that the proxy does not see.
* ``store_put``: a session the proxy cannot reproduce is stored in the upstream itself.
* ``fetch``: a session that exists only in the upstream (written before the proxy was
  deployed) is read once from it, to be imported.
* ``delete``: a DELETE also deletes the upstream's copy, so an imported session cannot
  come back.
* ``hand_over``: the upstream sync (proxy/sync/) PUTs a session's whole state, with a
  context window no session can fill, so that the upstream stores exactly what it is
  given (it never summarizes) and starts its long-term promotion as for any PUT.

Every call carries the credential of the client being served, or the proxy's own when
none is (see credentials.py).
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from urllib.parse import quote, urlencode

import orjson

from proxy.errors import Refused, UpstreamError
from proxy.upstream.client import Upstream, UpstreamAnswer
from proxy.upstream.credentials import Credentials, current_caller

log = logging.getLogger("proxy.upstream.sessions")

WM_PATH = "/v1/working-memory/"
SCRATCH_PREFIX = "amp-scratch-"
# The upstream summarizes once a session's tokens pass 0.7 x the window (contract §6.4);
# 2^31 - 1 tokens is ~8 GB of text, far beyond any body the proxy accepts.
HAND_OVER_QUERY = "?context_window_max=2147483647"
# Answers given before the upstream's handler stores anything: no scratch copy to delete.
NOTHING_STORED = frozenset((400, 401, 403, 422))


def _path(session_id: str) -> str:
    return WM_PATH + quote(session_id, safe="")


def _raise_refusal(answer: UpstreamAnswer) -> None:
    """A client's credential refused mid-request (revoked since it was checked): the
    client gets the upstream's own refusal, not a 502."""
    if answer.status in (401, 403) and current_caller() is not None:
        raise Refused(answer.status, answer.body, answer.headers.get("WWW-Authenticate"))


def _scope_query(namespace: str | None, user_id: str | None) -> str:
    params = {k: v for k, v in (("namespace", namespace), ("user_id", user_id)) if v}
    return ("?" + urlencode(params)) if params else ""


class UpstreamSessions:
    def __init__(self, upstream: Upstream, credentials: Credentials | None = None) -> None:
        self.upstream = upstream
        self.credentials = credentials if credentials is not None else Credentials()

    async def _call(self, method: str, path: str, body: bytes | None = None,
                    content_type: str | None = None) -> UpstreamAnswer:
        headers = self.credentials.headers()
        if content_type:
            headers["Content-Type"] = content_type
        # A file-like body is sent in chunks (aiohttp warns about big bytes bodies).
        data = io.BytesIO(body) if body is not None and len(body) > 1 << 20 else body
        return await self.upstream.call(method, path, data, headers)

    async def store_put(self, session_id: str, body: bytes, content_type: str | None,
                        query_string: str) -> UpstreamAnswer:
        """PUT ``body`` for the upstream to store under ``session_id`` itself."""
        path = _path(session_id) + ("?" + query_string if query_string else "")
        return await self._call("PUT", path, body, content_type)

    async def validate_put(self, session_id: str, body: bytes, content_type: str | None,
                           query_string: str) -> UpstreamAnswer:
        """PUT ``body`` under a scratch id, deleted at once; the answer reads as if made
        for ``session_id``."""
        scratch_id = SCRATCH_PREFIX + uuid.uuid4().hex
        path = _path(scratch_id) + ("?" + query_string if query_string else "")
        answer = None
        try:
            answer = await self._call("PUT", path, body, content_type)
        finally:
            # Even a 500 can leave a stored document behind (contract §4.6).
            if answer is None or answer.status not in NOTHING_STORED:
                await asyncio.shield(self._drop_scratch(scratch_id, body))
        if answer.status == 200:
            answer.body = answer.body.replace(
                b'"session_id":' + orjson.dumps(scratch_id),
                b'"session_id":' + orjson.dumps(session_id), 1)
            answer.headers.popall("content-length", None)
        return answer

    async def _drop_scratch(self, scratch: str, body: bytes) -> None:
        scopes: set[tuple[str | None, str | None]] = {(None, None)}
        try:
            parsed = orjson.loads(body)
            if isinstance(parsed, dict):
                ns, uid = parsed.get("namespace"), parsed.get("user_id")
                scopes.add((ns if isinstance(ns, str) else None,
                            uid if isinstance(uid, str) else None))
        except orjson.JSONDecodeError:
            pass
        for ns, uid in scopes:
            try:
                await self._call("DELETE", _path(scratch) + _scope_query(ns, uid))
            except UpstreamError as exc:
                log.error("could not delete scratch session %s: %s", scratch, exc.detail)

    async def fetch(self, session_id: str, namespace: str | None,
                    user_id: str | None) -> bytes | None:
        """The upstream's GET of a whole session, or None when it has none."""
        path = _path(session_id) + _scope_query(namespace, user_id)
        answer = await self._call("GET", path)
        if answer.status == 200:
            return answer.body
        if answer.status == 404:
            return None
        _raise_refusal(answer)
        raise UpstreamError(f"upstream answered {answer.status} reading {session_id!r}")

    async def hand_over(self, session_id: str, body: bytes) -> UpstreamAnswer:
        """PUT the session's whole state (a JSON body with its namespace and user_id)."""
        return await self._call("PUT", _path(session_id) + HAND_OVER_QUERY, body,
                                "application/json")

    async def delete(self, session_id: str, namespace: str | None, user_id: str | None) -> None:
        answer = await self._call("DELETE", _path(session_id) + _scope_query(namespace, user_id))
        if answer.status != 200:
            _raise_refusal(answer)
            raise UpstreamError(f"upstream answered {answer.status} deleting {session_id!r}")
