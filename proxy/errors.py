"""Every exception the proxy raises, in one tree; ``http/middleware.py`` maps it to answers.

    ProxyError
    +-- HttpError                       answer with this HTTP error ({"detail": ...})
    |   +-- InvalidRequest      (422)   the proxy's own routes: a body it cannot accept
    |   +-- PayloadTooLarge     (413)
    |   +-- BodyTimeout         (408)   the client did not send its body in time
    |   +-- Refused             (401/403, the upstream's own answer) the upstream would
    |   |                               refuse this client's credential
    |   +-- UpstreamError       (502)   upstream unreachable, or refused a call of our own
    |   |   +-- UpstreamTimeout (504)   upstream too slow
    |   +-- StoreUnavailable    (503 + Retry-After)  the proxy's Redis does not answer
    |   |   +-- NotReplicated           written on the primary, but fewer replicas than
    |   |                               write_replicas confirmed it: not acknowledged
    |   +-- Overloaded          (503 + Retry-After)  write queue full, bodies in flight
    |   |   |                           past their budget, no upstream connection free,
    |   |   |                           or shutting down
    |   |   +-- CannotVerify            the upstream could not judge a credential (fail
    |   |                               closed)
    |   +-- ServiceCredentialMissing (503) a call of the proxy's own needs
    |   |                               upstream_service_token
    |   +-- ClientDisconnected  (499)   the client went away mid-request: logged, never sent
    +-- UseUpstream                     answer with the upstream's answer instead
    |   +-- Unsupported                 the codec cannot answer exactly as the upstream would
    |   +-- ForwardToUpstream           send the client's request on unchanged
    +-- Conflict                        a write's base version moved on; the engine
                                        re-plans, it never reaches a client
    SettingsError (ValueError)          a setting is missing or malformed (start-up only)
"""

from __future__ import annotations

import orjson


def detail_body(detail: str) -> bytes:
    """The ``{"detail": ...}`` body every error answer carries, as the upstream's do."""
    return orjson.dumps({"detail": detail})


class ProxyError(Exception):
    """Root of everything the proxy raises while serving a request."""


class HttpError(ProxyError):
    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> bytes:
        return detail_body(self.detail)


class InvalidRequest(HttpError):
    status = 422

    def __init__(self, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.status = status


class PayloadTooLarge(HttpError):
    status = 413


class BodyTimeout(HttpError):
    status = 408


class Refused(HttpError):
    """The upstream's refusal of the client's credential, replayed byte for byte."""

    def __init__(self, status: int, body: bytes, www_authenticate: str | None) -> None:
        super().__init__(body.decode(errors="replace"))
        self.status = status
        self._body = body
        self._www_authenticate = www_authenticate

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self._www_authenticate} if self._www_authenticate else {}

    def body(self) -> bytes:
        return self._body


class UpstreamError(HttpError):
    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504


class StoreUnavailable(HttpError):
    status = 503

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}  # Redis is back within seconds, or failed over


class NotReplicated(StoreUnavailable):
    """The write is on the primary, but WAIT saw fewer replicas than asked: a failover
    could still lose it, so it is not acknowledged (the client retries it)."""


class Overloaded(HttpError):
    status = 503

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class CannotVerify(Overloaded):
    """The upstream did not judge a credential (error, timeout): refuse, never guess."""


class ServiceCredentialMissing(HttpError):
    status = 503


class ClientDisconnected(HttpError):
    """The client closed its connection before its request was complete."""

    status = 499  # nginx's "client closed request"; nobody receives it


class UseUpstream(ProxyError):
    """The fast path cannot answer this exactly as the upstream would: the upstream does."""


class Unsupported(UseUpstream):
    """The codec's refusal: invalid, or valid but unusual. A PUT goes to the upstream for
    validation; a read is forwarded."""


class ForwardToUpstream(UseUpstream):
    """Forward the client's request to the upstream as it came, and relay its answer."""


class Conflict(ProxyError):
    """The session's version moved on since the write was planned."""

    def __init__(self, current_version: int) -> None:
        super().__init__(current_version)
        self.current_version = current_version


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the key."""
