"""Load tests and benchmarks: the upstream and the proxy measured side by side.

``load/locustfile.py`` is the Locust load test; ``python -m load.bench`` (``make bench``) starts
the local stack and writes ``results/``.
"""
