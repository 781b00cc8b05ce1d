"""Every Prometheus metric the proxy exports, in one place (served at ``/-/metrics``).

Conventions (prometheus.io/docs/practices/naming): one prefix ``amp_``, base units
(seconds, bytes), counters end in ``_total``, and no label ever holds a session id, a user
id or a path: requests are labelled by the route *template*.

One ``Metrics`` object per application, each on its own ``CollectorRegistry``: several
proxies in one process (as the tests run them) count apart. Components receive the object
when app.py builds them. What happens once per request (the request itself, the cache
lookup) is counted in plain Python numbers, about 0.3 us against ~5 us for a
prometheus_client counter and histogram update, and handed to the metric families by
``sample``, which runs at each scrape (and once a second with several workers); rarer
events (a flush, an upstream call) update their families directly. Gauges that mirror
state (cache size, queue depth) are set by ``sample`` too.

Several worker processes (``serve --workers N``): prometheus_client's multiprocess mode.
The parent sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker imports prometheus_client;
every value then lives in a per-process mmap file there, and a scrape, whichever worker
answers it, merges the files of the whole group (``MultiProcessCollector``). Gauges say how
to merge (``livesum`` for sizes, ``livemax`` for lags and build info).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

PREFIX = "amp"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format (0.0.4), which every Prometheus version and scraper reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Seconds: from a warm GET (~0.2 ms) to a slow upstream call.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Methods outside this set are counted as "other": a client must not mint label values.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def package_version() -> str:
    try:
        return version("agent-memory-proxy")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def add_observations(child: Histogram, buckets: list[int], total: float) -> None:
    """Add many observations to a histogram child at once: ``buckets[i]`` of them fell in
    its i-th bucket (not cumulative, as the child keeps them), summing ``total``.

    prometheus_client offers only one ``observe`` at a time, so this writes its per-bucket
    values directly; test_metrics checks it against ``observe``."""
    for value, n in zip(child._buckets, buckets, strict=True):
        if n:
            value.inc(n)
    child._sum.inc(total)


def multiprocess_dir() -> str | None:
    """The shared directory when prometheus_client runs in multiprocess mode (it chose its
    value store from the environment variable when first imported), else None."""
    if values.ValueClass is values.MutexValue:
        return None
    return os.environ.get(MULTIPROC_ENV)


class Metrics:
    """The proxy's metric families; one instance per application."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=r)

        def gauge(name: str, doc: str, mode: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=r,
                         multiprocess_mode=mode)  # type: ignore[arg-type]

        def histogram(name: str, doc: str, buckets: tuple[float, ...],
                      labels: tuple[str, ...] = ()) -> Histogram:
            return Histogram(f"{PREFIX}_{name}", doc, labels, registry=r, buckets=buckets)

        # --- build ------------------------------------------------------------------------
        self.build_info = gauge("build_info", "Always 1; the version is in its label",
                                "livemax", ("version",))
        self.build_info.labels(package_version()).set(1)

        # --- HTTP -------------------------------------------------------------------------
        self.http_requests = counter(
            "http_requests_total", "Requests answered, by route template, method and status",
            ("route", "method", "status"))
        self.http_request_duration = histogram(
            "http_request_duration_seconds", "Time from request to response, by route "
            "template and method", LATENCY_BUCKETS, ("route", "method"))

        # --- session cache ----------------------------------------------------------------
        self.cache_lookups = counter("cache_lookups_total",
                                     "Session cache lookups, by result (hit, miss)", ("result",))
        self.cache_evictions = counter("cache_evictions_total",
                                       "Session tails evicted to stay within cache_max_bytes")
        self.cache_bytes = gauge("cache_bytes", "Bytes held by cached session tails", "livesum")
        self.cache_sessions = gauge("cache_sessions", "Session tails held in the cache",
                                    "livesum")

        # --- writes (group commit) --------------------------------------------------------
        self.write_queue_depth = gauge("write_queue_depth",
                                       "Writes waiting for the flusher", "livesum")
        self.flush_batch_size = histogram("flush_batch_size",
                                          "Writes per Redis pipeline", BATCH_BUCKETS)
        self.flush_duration = histogram("flush_duration_seconds",
                                        "Time to send one pipeline and read its replies",
                                        LATENCY_BUCKETS)
        self.flushed_writes = counter(
            "flushed_writes_total",
            "Writes sent to Redis, by result (written, conflict, failed)", ("result",))
        self.write_queue_rejections = counter(
            "write_queue_rejections_total",
            "Writes refused with 503 + Retry-After (queue full or shutting down)", ("reason",))

        # --- coherence (read leases) ------------------------------------------------------
        self.lease_grants = counter("lease_grants_total",
                                    "Read leases taken or renewed by this proxy")
        self.lease_revocations = counter(
            "lease_revocations_total",
            "Read leases of this proxy ended by another proxy's write")
        self.lease_release_wait = histogram(
            "lease_release_wait_seconds",
            "How long a write waited for other proxies to drop their leased copies",
            LATENCY_BUCKETS)
        self.invalidation_connected = gauge(
            "invalidation_connected",
            "1 while the invalidation subscription is up (leases are trusted only then)",
            "livemin")

        # --- upstream ---------------------------------------------------------------------
        self.upstream_requests = counter(
            "upstream_requests_total",
            "Requests sent to the upstream, by use (pass_through, call)", ("use",))
        self.upstream_errors = counter(
            "upstream_errors_total",
            "Upstream requests that failed, by use and kind (unreachable, timeout)",
            ("use", "kind"))
        self.upstream_duration = histogram(
            "upstream_request_duration_seconds",
            "Time until the upstream's response headers, by use", LATENCY_BUCKETS, ("use",))

        # --- auth verdict cache -----------------------------------------------------------
        self.auth_checks = counter(
            "auth_checks_total",
            "Credential checks, by result (accepted, refused, error)", ("result",))
        self.auth_cache_lookups = counter(
            "auth_cache_lookups_total",
            "Credential verdict cache lookups, by result (hit, miss)", ("result",))
        self.auth_cache_entries = gauge("auth_cache_entries",
                                        "Credential verdicts held", "livesum")

        # --- upstream sync ----------------------------------------------------------------
        # Backlog and lag are read from the Redis all proxies share: the same in each.
        self.sync_backlog = gauge("sync_backlog_sessions",
                                  "Sessions changed here and due to be handed to the upstream",
                                  "livemax")
        self.sync_lag = gauge(
            "sync_lag_seconds",
            "Age of the oldest change not yet handed to the upstream (0: none)", "livemax")
        self.sync_marks_owed = gauge(
            "sync_marks_owed",
            "Writes that landed whose due mark failed (sent again every second)", "livesum")
        self.sync_handovers = counter(
            "sync_handovers_total",
            "Sessions handed to the upstream, by result (ok, failed, ...)", ("result",))
        self.sync_round_duration = histogram(
            "sync_round_duration_seconds",
            "Time a hand-over round took (read both copies, merge, PUT when they differ)",
            LATENCY_BUCKETS)
        self.sync_divergences = counter(
            "sync_divergences_total",
            "Upstream copies found changed by something other than the proxy, by kind "
            "(foreign, leftover, missing, unreadable)", ("kind",))

        self._samplers: list[Callable[[], None]] = [self._hand_over_requests]
        self._bounds = LATENCY_BUCKETS
        self._counts: dict[tuple[str, str, int], int] = {}
        # (route, method) -> per-bucket counts (the last one +Inf) and the sum of seconds
        self._latency: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    # --- hot path ---------------------------------------------------------------------------

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request (plain numbers; ``sample`` hands them over)."""
        key = (route, method, status)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        latency = self._latency.get((route, method))
        if latency is None:
            latency = self._latency[(route, method)] = ([0] * (len(self._bounds) + 1), [0.0])
        latency[0][bisect_left(self._bounds, seconds)] += 1  # the first bound >= seconds
        latency[1][0] += seconds

    def _hand_over_requests(self) -> None:
        counts, self._counts = self._counts, {}
        latency, self._latency = self._latency, {}
        for (route, method, status), n in counts.items():
            label = method if method in METHODS else "other"
            self.http_requests.labels(route, label, str(status)).inc(n)
        for (route, method), (buckets, total) in latency.items():
            label = method if method in METHODS else "other"
            add_observations(self.http_request_duration.labels(route, label), buckets,
                             total[0])

    # --- gauges sampled from component state ------------------------------------------------

    def add_sampler(self, sampler: Callable[[], None]) -> None:
        """Register a function that sets gauges from a component's current state."""
        self._samplers.append(sampler)

    def sample(self) -> None:
        for sampler in self._samplers:
            sampler()

    # --- exposition -------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text format of every family: this process's, or in multiprocess mode the
        whole worker group's."""
        self.sample()
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
