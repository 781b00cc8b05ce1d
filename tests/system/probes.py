"""Small blocking HTTP and polling helpers for the container tests (standard library only)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any


def request(method: str, url: str, body: object = None) -> tuple[int, Any]:
    """(status, parsed JSON or text); status 0 when nothing answered."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            if resp.headers.get_content_type() == "application/json":
                return resp.status, json.loads(raw or b"null")
            return resp.status, raw.decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def get(url: str) -> tuple[int, Any]:
    return request("GET", url)


def wait_until(ready: Callable[[], bool], timeout: float, explain: Callable[[], str]) -> float:
    """Poll ``ready`` until it holds; returns the seconds it took, or fails with ``explain``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if ready():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"not ready after {timeout:.0f} s: {explain()}")
