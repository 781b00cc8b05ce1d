"""What the engine answers a request with: status, body bytes, headers."""

from __future__ import annotations

from dataclasses import dataclass, field

from multidict import CIMultiDict

from proxy.errors import detail_body


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    content_type: str = "application/json"


def not_found(session_id: str) -> Answer:
    """The upstream's 404 for a session it does not hold."""
    return Answer(404, detail_body(f"Session {session_id} not found"))
