"""The JSON log format: one object per line, with the request id while serving one."""

from __future__ import annotations

import logging
import os

import orjson
import pytest

from proxy.observability import accesslog, context
from proxy.observability.logs import setup_logging


@pytest.fixture
def restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    accesslog.install(None)  # set_logging installed a sink on the captured stream
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_lines(capsys: pytest.CaptureFixture[str], restore_logging: object) -> None:
    setup_logging("INFO", "json")
    log = logging.getLogger("proxy.test")
    log.info("plain %s", "line")
    token = context.current.set("rid-1")
    try:
        logging.getLogger("proxy.access").info(
            "GET / 200", extra={"route": "/", "status": 200, "duration_ms": 1.5})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        context.current.reset(token)
    log.debug("not shown")
    lines = [orjson.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [x["message"] for x in lines] == ["plain line", "GET / 200", "failed"]
    assert "request_id" not in lines[0]
    assert lines[1] | {"time": None} == {
        "time": None, "pid": os.getpid(), "level": "INFO", "logger": "proxy.access",
        "message": "GET / 200", "request_id": "rid-1", "route": "/", "status": 200,
        "duration_ms": 1.5}
    assert lines[2]["level"] == "ERROR" and "ValueError: boom" in lines[2]["exception"]


def test_text_is_the_default(capsys: pytest.CaptureFixture[str],
                             restore_logging: object) -> None:
    setup_logging("warning")
    logging.getLogger("proxy.test").warning("careful")
    err = capsys.readouterr().err
    assert "WARNING proxy.test: careful" in err and not err.startswith("{")
