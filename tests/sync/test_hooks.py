"""What the engine tells the sync: imports keep the upstream's copy, DELETEs remove both
and keep a late hand-over from being imported, PUTs left to the upstream land there."""

from __future__ import annotations

import pytest
from aiohttp import ClientSession

from proxy.store.keys import logical_key
from tests.engine_fixtures import WM
from tests.sync.conftest import ENGINE, SYNC, SyncProxy, divergences
from tests.sync.sessions import msgs
from tests.sync.test_handover import get, put, sid, until_handed_over

pytestmark = pytest.mark.upstream


async def test_an_imported_session_stays_upstream_and_is_known_as_ours(
        sync_proxy: SyncProxy, direct: ClientSession) -> None:
    s = sid()
    await put(direct, s, {"messages": msgs(3), "context": "before the proxy"})
    proxy = await sync_proxy()
    assert (await get(proxy, s)) == (await get(direct, s))  # imported on first read
    assert await get(direct, s) is not None  # and kept there: it is the synced copy
    engine = proxy.app[ENGINE]
    keys = engine.store.keys(logical_key(s, None, None))
    assert await engine.store.redis.exists(keys.synced)
    await put(proxy, s, {"messages": msgs(4), "context": "before the proxy"})
    await until_handed_over(proxy, direct, s)
    assert divergences(proxy, "foreign") == 0


async def test_delete_removes_both_copies_and_blocks_a_late_import(
        sync_proxy: SyncProxy, direct: ClientSession) -> None:
    proxy = await sync_proxy()
    s = sid()
    await put(proxy, s, {"messages": msgs(2)})
    await until_handed_over(proxy, direct, s)
    resp = await proxy.delete(f"{WM}{s}")
    assert resp.status == 200
    assert await get(proxy, s) is None and await get(direct, s) is None
    # A copy showing up upstream right after (as a hand-over that started before the
    # DELETE would leave it) is not imported over the delete.
    await put(direct, s, {"messages": msgs(2)})
    assert await get(proxy, s) is None
    (await direct.delete(f"{WM}{s}")).release()


async def test_a_put_left_to_the_upstream_is_stored_there_under_its_own_id(
        sync_proxy: SyncProxy, direct: ClientSession) -> None:
    proxy = await sync_proxy()
    s = sid()
    # lax types: valid for the upstream, not for the fast path, which hands it on
    answer = await put(proxy, s, {"messages": msgs(2), "tokens": "7"})
    assert answer["tokens"] == 7
    theirs = await get(direct, s)
    assert theirs is not None and theirs["tokens"] == 7
    await put(proxy, s, {"messages": msgs(3), "tokens": 7})
    await until_handed_over(proxy, direct, s)
    assert divergences(proxy, "foreign") == 0
    assert proxy.app[SYNC].results["failed"] == 0
