"""Session identity and key names."""

from __future__ import annotations

from proxy.store.keys import SessionKeys


def test_session_keys_share_one_hash_tag() -> None:
    keys = SessionKeys.build("amp", "ns:u:{odd}")
    tags = {k[k.index("{") + 1:k.index("}")] for k in keys.all()}
    assert len(tags) == 1
    assert keys.logical == "ns:u:{odd}"
