"""What ``Engine.append`` builds: the session fields an append keeps, and, in the rare case
where the appended session would make the upstream summarize, the whole-session PUT that
hands it to the upstream for that.

Beyond the upstream's API, for clients that can use it: the query takes the PUT's
parameters (``model_name``, ``context_window_max``); session-level fields stay as stored and
``updated_at`` moves to now. Cost: O(new messages) in Python and in Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import orjson

from proxy import codec
from proxy.codec import timestamps
from proxy.store.store import Meta

_KEPT_FIELDS = ("memories", "data", "context", "tokens", "long_term_memory_strategy",
                "ttl_seconds")
_PUT_PARAMETERS = ("model_name", "context_window_max")


def session_body(doc: bytes | None, namespace: str | None, user_id: str | None,
                 now: datetime) -> codec.PutBody:
    """The stored session fields with updated_at moved to now (defaults when new)."""
    if doc is None:
        seed = orjson.dumps({"namespace": namespace, "user_id": user_id})
        return codec.parse_put(seed, "application/json", now)
    fields = orjson.loads(doc)
    fields["updated_at"] = timestamps.epoch_seconds(now)
    return codec.PutBody([], orjson.dumps(fields), b"", namespace, user_id,
                         fields.get("ttl_seconds"), fields.get("tokens", 0))


def summarizing_put(meta: Meta | None, stored: list[bytes], new: list[object],
                    namespace: str | None, user_id: str | None) -> bytes:
    """The whole session plus ``new`` as one PUT body, for the upstream to summarize."""
    put: dict[str, object] = {"namespace": namespace, "user_id": user_id}
    if meta is not None:
        fields = orjson.loads(meta.doc)
        put.update({k: fields[k] for k in _KEPT_FIELDS})
        put["created_at"] = timestamps.format_epoch(fields["created_at"])
        put["last_accessed"] = timestamps.format_epoch(fields["last_accessed"])
    put["messages"] = [orjson.loads(r) for r in stored] + new
    return orjson.dumps(put)


def put_query_string(query: Mapping[str, str]) -> str:
    """The append's query as the PUT's (only the parameters a PUT takes)."""
    return "&".join(f"{k}={v}" for k, v in query.items() if k in _PUT_PARAMETERS)
