"""Every typed AppKey is filled at start-up with an object of its type."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.http import appkeys
from tests.conftest import ProxyFactory, app_of


async def test_every_key_is_set_with_its_type(proxy_factory: ProxyFactory) -> None:
    client = await proxy_factory()
    app: Any = app_of(client)
    keys = [v for v in vars(appkeys).values() if isinstance(v, web.AppKey)]
    assert len(keys) >= 8
    for key in keys:
        assert key in app, key
        declared = key._t  # noqa: SLF001 - the key's declared type
        assert declared is not None and isinstance(app[key], declared), key
