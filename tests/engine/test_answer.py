"""The engine's answers, and the upstream's 404 for a session it does not hold."""

from __future__ import annotations

import orjson

from proxy.engine.answer import Answer, not_found


def test_not_found_is_the_upstreams_404() -> None:
    answer = not_found('a "quoted" id')
    assert answer.status == 404
    assert orjson.loads(answer.body) == {"detail": 'Session a "quoted" id not found'}
    assert answer.content_type == "application/json" and not answer.headers


def test_answers_do_not_share_headers() -> None:
    one, two = Answer(200, b"{}"), Answer(200, b"{}")
    one.headers["x-a"] = "1"
    assert "x-a" not in two.headers
