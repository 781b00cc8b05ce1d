"""The Grafana dashboard asks only for series a real proxy exports, with labels they have."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from proxy.observability.metrics import Metrics
from tests.conftest import ProxyFactory

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/agent-memory-proxy.json"
TARGET_LABELS = {"instance", "job"}  # added by Prometheus at scrape time
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def _queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"])
    return exprs


def _exported(text: str) -> dict[str, str]:
    """Series name -> family name, for every family in a scrape."""
    names: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = family.name
    return names


def _labels() -> dict[str, set[str]]:
    families = [m for m in vars(Metrics()).values() if isinstance(m, MetricWrapperBase)]
    return {m._name: set(m._labelnames) for m in families}


async def test_dashboard_references_only_exported_series(proxy_factory: ProxyFactory,
                                                          redis_client: Any) -> None:
    proxy = await proxy_factory()
    exported = _exported(await (await proxy.get("/-/metrics")).text())
    labels = _labels()
    dashboard = json.loads(DASHBOARD.read_text())
    queries = _queries(dashboard)
    assert len(queries) > 20
    used: set[str] = set()
    for expr in queries:
        names = re.findall(r"\b(amp_[a-z0-9_]+)", expr)
        assert names, expr
        allowed = set(TARGET_LABELS) | {"le"}
        for name in names:
            assert name in exported, f"{name} is not exported (in {expr})"
            used.add(exported[name])
            allowed |= labels[exported[name]]
        for _, matchers in re.findall(r"(amp_[a-z0-9_]+)\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
                assert label in allowed, f"no label {label!r} in {expr}"
        for grouping in re.findall(r"by \(([^)]*)\)", expr):
            for label in grouping.split(","):
                assert label.strip() in allowed, f"no label {label!r} in {expr}"
    # The panels the dashboard promises: request rate and latency, cache hit ratio,
    # queue and flush, sync lag.
    for family in ("amp_http_requests", "amp_http_request_duration_seconds",
                   "amp_cache_lookups", "amp_write_queue_depth", "amp_flush_duration_seconds",
                   "amp_flush_batch_size", "amp_sync_lag_seconds"):
        assert family in used, family


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "agent-memory-proxy"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
