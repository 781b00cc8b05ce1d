"""What operators see: Prometheus metrics, structured logs with request ids, and the drain."""

from proxy.observability.metrics import Metrics

__all__ = ["Metrics"]
