"""Whose credential an upstream call carries.

* On a client's behalf: the client's own ``Authorization`` header(s), exactly as sent. The
  request pipeline (http/middleware.py) records the client as the ``Caller`` of the
  request in a context variable, so engine code calls the upstream without passing
  credentials along, and tasks spawned while serving the request (``spawn`` copies the
  context) carry them too: the import of an upstream-only session, the delete of a
  shadowed upstream copy.
* As the proxy itself (no client behind the call: the upstream sync, start-up checks):
  ``upstream_service_token``. Run the calls inside ``acting_as_proxy()``, or send
  ``Credentials.service_headers()`` yourself. When the upstream enforces auth and no
  service token is set, both raise ``ServiceCredentialMissing`` (503, naming the setting)
  rather than send a call the upstream would refuse.

``verify_caller()`` is the gate the engine passes before it answers from its own state: it
raises the upstream's own refusal when the upstream would not serve this client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from multidict import CIMultiDict

from proxy.errors import ServiceCredentialMissing

AUTHORIZATION = "Authorization"


@dataclass(frozen=True, slots=True)
class Caller:
    """The client a request is served for."""

    authorization: tuple[str, ...]  # its Authorization header values, as sent (maybe none)
    verify: Callable[[], Awaitable[None]] | None = None  # raises the upstream's refusal


_caller: ContextVar[Caller | None] = ContextVar("amp_upstream_caller", default=None)


def current_caller() -> Caller | None:
    """The client being served, or None when the proxy acts on its own."""
    return _caller.get()


class acting_for:  # noqa: N801 - a context manager used like a function
    """Upstream calls inside the block (and tasks spawned in it) act for ``caller``.
    A class, not a generator: it is entered on every request (the request pipeline)."""

    __slots__ = ("caller", "token")

    def __init__(self, caller: Caller | None) -> None:
        self.caller = caller

    def __enter__(self) -> None:
        self.token = _caller.set(self.caller)

    def __exit__(self, *exc: object) -> None:
        _caller.reset(self.token)


@contextmanager
def acting_as_proxy() -> Iterator[None]:
    """Upstream calls inside the block carry the proxy's own credential."""
    with acting_for(None):
        yield


async def verify_caller() -> None:
    """Raise the upstream's refusal (``Refused``) when it would not serve the current client;
    no-op when the proxy acts on its own or auth is not checked."""
    caller = _caller.get()
    if caller is not None and caller.verify is not None:
        await caller.verify()


class Credentials:
    """The proxy's own credential, and what each upstream call carries."""

    def __init__(self, service_token: str = "",
                 auth_enforced: Callable[[], bool] = lambda: False) -> None:
        self._service = f"Bearer {service_token}" if service_token else ""
        self._auth_enforced = auth_enforced

    @property
    def has_service_token(self) -> bool:
        return bool(self._service)

    def service_headers(self) -> dict[str, str]:
        """Headers for a call of the proxy's own: its service credential; none when the
        upstream does not enforce auth; ``ServiceCredentialMissing`` when it does and
        ``upstream_service_token`` is not set."""
        if self._service:
            return {AUTHORIZATION: self._service}
        if self._auth_enforced():
            raise ServiceCredentialMissing(
                "the upstream enforces auth and upstream_service_token is not set: the "
                "proxy cannot call it on its own")
        return {}

    def headers(self) -> CIMultiDict[str]:
        """Headers for a call made now: the current client's credential, or the proxy's."""
        caller = _caller.get()
        if caller is None:
            return CIMultiDict(self.service_headers())
        return CIMultiDict((AUTHORIZATION, value) for value in caller.authorization)
