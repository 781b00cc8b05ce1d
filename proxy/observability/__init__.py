"""What operators see: Prometheus metrics (metrics.py), logs with request ids (logs.py,
context.py) and the per-request access record that feeds both (access.py).

Importing this package imports nothing else: prometheus_client must first be imported
after ``serve --workers`` has chosen multiprocess mode (see metrics.py)."""
