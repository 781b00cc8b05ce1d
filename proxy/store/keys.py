"""Session identity: the upstream's key scheme, and the proxy's own Redis key names.

The upstream stores a session at ``working_memory[:<namespace>][:<user_id>]:<session_id>``
with empty parts left out and nothing escaped, so namespace and user_id can collide
(contract §5.1). The proxy keeps exactly that identity (the "logical key") so that it
finds and misses the same sessions the upstream would.

All keys of one session share one Redis Cluster hash tag, derived from the logical key
by hashing (a session id may itself contain braces).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def logical_key(session_id: str, namespace: str | None, user_id: str | None) -> str:
    parts = [p for p in (namespace, user_id) if p]
    return ":".join([*parts, session_id])


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The Redis keys of one session under the proxy's prefix."""

    logical: str
    meta: str  # hash: version, counts, token total, digests, session-level document
    messages: str  # list: canonical JSON of each message, in stored order
    tokens: str  # string: token count of each message as little-endian uint32
    leases: str  # hash: read-lease holder id -> lease end (ms, Redis clock); see leases.py

    @classmethod
    def build(cls, prefix: str, logical: str) -> SessionKeys:
        tag = hashlib.blake2b(logical.encode(), digest_size=10).hexdigest()
        base = f"{prefix}:{{{tag}}}"
        return cls(logical, f"{base}:meta", f"{base}:msgs", f"{base}:toks", f"{base}:rl")

    def all(self) -> tuple[str, str, str]:
        """The keys holding the session's data."""
        return self.meta, self.messages, self.tokens

    def for_scripts(self) -> tuple[str, str, str, str]:
        return self.meta, self.messages, self.tokens, self.leases
