"""The proxy's exception tree, mapped to HTTP answers in one middleware (``app.py``).

    ProxyError                      (500)
    +-- UpstreamError               (502)  upstream refused or broke the connection
    |   +-- UpstreamTimeout         (504)  upstream too slow
    +-- StoreUnavailable            (503)  the proxy's Redis does not answer
    +-- Overloaded                  (503 + Retry-After)  write queue full
    +-- PayloadTooLarge             (413)
"""

from __future__ import annotations


class ProxyError(Exception):
    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def headers(self) -> dict[str, str]:
        return {}


class UpstreamError(ProxyError):
    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504


class StoreUnavailable(ProxyError):
    status = 503


class Overloaded(ProxyError):
    status = 503

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class PayloadTooLarge(ProxyError):
    status = 413
