"""The metric families: names follow the conventions, apps count apart, children are cached."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.observability.metrics import Metrics, package_version


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.exposition().decode())
            for s in family.samples}


def test_every_family_has_the_prefix_and_counters_end_in_total() -> None:
    families = list(text_string_to_metric_families(Metrics().exposition().decode()))
    assert families
    for family in families:
        assert family.name.startswith("amp_"), family.name
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_created"):
                assert sample.name.endswith("_total"), sample.name
            assert "session" not in "".join(sample.labels), sample


def test_two_apps_in_one_process_count_apart() -> None:
    a, b = Metrics(), Metrics()
    a.request_done("/v1/working-memory/{session_id}", "GET", 200, 0.002)
    a.request_done("/v1/working-memory/{session_id}", "GET", 200, 0.002)
    key = ("amp_http_requests_total",
           (("method", "GET"), ("route", "/v1/working-memory/{session_id}"), ("status", "200")))
    assert _samples(a)[key] == 2
    assert key not in _samples(b)


def test_unknown_methods_do_not_mint_labels() -> None:
    m = Metrics()
    m.request_done("pass-through", "BREW", 404, 0.001)
    labels = [dict(k[1]) for k in _samples(m) if k[0] == "amp_http_requests_total"]
    assert labels == [{"route": "pass-through", "method": "other", "status": "404"}]


def test_build_info_names_the_version() -> None:
    key = ("amp_build_info", (("version", package_version()),))
    assert _samples(Metrics())[key] == 1


def test_samplers_run_at_each_scrape() -> None:
    m = Metrics()
    m.add_sampler(lambda: m.cache_bytes.set(1234))
    assert _samples(m)[("amp_cache_bytes", ())] == 1234


def test_requests_counted_in_bulk_match_one_observe_each() -> None:
    bulk, one_by_one = Metrics(), Metrics()
    durations = [0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.2, 7.0, 31.0, 120.0]
    for seconds in durations:
        bulk.request_done("/r", "GET", 200, seconds)
        one_by_one.http_requests.labels("/r", "GET", "200").inc()
        one_by_one.http_request_duration.labels("/r", "GET").observe(seconds)
    got, want = _samples(bulk), _samples(one_by_one)
    histogram = {k: v for k, v in want.items() if k[0].startswith("amp_http_request")
                 and not k[0].endswith("_created")}
    assert len(histogram) == 1 + 2 + 16  # requests_total; sum, count; 15 bounds + Inf
    for key, value in histogram.items():
        assert got[key] == pytest.approx(value), key
    # Handed over once: a second scrape does not count them again.
    assert _samples(bulk)[("amp_http_requests_total",
                           (("method", "GET"), ("route", "/r"), ("status", "200")))] == 9
