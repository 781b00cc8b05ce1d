"""Access lines in batches: the same lines as through logging, one write per flush."""

from __future__ import annotations

import asyncio
import io
import os

import orjson

from proxy.observability import accesslog


async def test_json_lines_batched_until_the_timer() -> None:
    out = io.StringIO()
    sink = accesslog.AccessSink(out, json=True)
    sink.line("GET", "/v1/working-memory/s", 200, 0.0012, "rid-1", "/v1/working-memory/{x}")
    sink.line("PUT", "/v1/working-memory/s", 503, 0.5, "rid-2", "/v1/working-memory/{x}")
    assert out.getvalue() == ""  # nothing written per line
    await asyncio.sleep(accesslog.FLUSH_AFTER + 0.1)
    lines = [orjson.loads(x) for x in out.getvalue().splitlines()]
    assert [x["request_id"] for x in lines] == ["rid-1", "rid-2"]
    first = lines[0]
    assert first | {"time": None} == {
        "time": None, "level": "INFO", "logger": "proxy.access", "pid": os.getpid(),
        "message": "GET /v1/working-memory/s 200 1.2ms id=rid-1", "request_id": "rid-1",
        "route": "/v1/working-memory/{x}", "status": 200, "duration_ms": 1.2}
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-01-01T00:00:00.000Z")


async def test_text_lines_and_flush_on_demand_and_when_full() -> None:
    out = io.StringIO()
    sink = accesslog.AccessSink(out, json=False)
    sink.line("GET", "/-/healthz", 200, 0.0001, "r", "/-/healthz")
    sink.flush()
    line = out.getvalue()
    assert line.endswith(" INFO proxy.access: GET /-/healthz 200 0.1ms id=r\n")
    assert line[19] == ","  # "YYYY-mm-dd HH:MM:SS,mmm", as logging's default asctime
    for i in range(accesslog.FLUSH_LINES):
        sink.line("GET", "/", 200, 0.0, str(i), "/")
    assert out.getvalue().count("\n") == 1 + accesslog.FLUSH_LINES
