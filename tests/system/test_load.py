"""Smoke tests of the load suite: the sampler, report and Locust file against the real stack."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from load.common import bucket, history, put_body
from load.floor import create_app as create_floor
from load.locustrun import LOCUSTFILE, locust_exe, read_timings, run_locust
from load.profile import parse_collapsed
from load.report import Meta, plot, write_markdown
from load.sampling import OPS, SizePlan, sample_sizes
from load.stats import SIZE_COLUMNS, percentile, read_samples_csv, size_table, write_samples_csv
from load.verdicts import concurrency_verdict, size_verdicts
from proxy.localstack import Service

needs_locust = pytest.mark.skipif(
    not Path(locust_exe()[0]).exists() and shutil.which("locust") is None,
    reason="locust is not installed (pip install -e '.[load]')")


def test_buckets_and_bodies() -> None:
    assert [bucket(n) for n in (0, 499, 500, 1_999, 2_000, 5_000, 90_000)] == [
        "0-500", "0-500", "500-1k", "1k-2k", "2k-5k", "5k+", "5k+"]
    body = put_body("s1", history(3))
    assert body.startswith(b'{"messages":[{"role":"user"') and b'"created_at":"' in body
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def test_collapsed_stacks_give_self_and_inclusive_shares() -> None:
    prof = parse_collapsed("main (/x/proxy/app.py:3);put (/x/proxy/engine.py:9) 3\n"
                           "main (/x/proxy/app.py:4) 1\n")
    assert prof.samples == 4
    assert prof.top(prof.self_counts)[0] == ("put (/x/proxy/engine.py)", 75.0)
    assert prof.total_counts["main (/x/proxy/app.py)"] == 4


async def test_sampler_and_report_against_the_real_stack(
        proxy: TestClient[Any, Any], upstream: Service, aiohttp_server: Any,
        tmp_path: Path) -> None:
    floor = await aiohttp_server(create_floor())
    urls = {"upstream": upstream.url, "proxy": str(proxy.make_url("")).rstrip("/"),
            "floor": str(floor.make_url("")).rstrip("/")}
    steps: list[int] = []
    plan = SizePlan((4, 30), samples=2, budget_s=10.0, min_samples=1, timeout_s=30.0,
                    gap_s=0.01)
    samples = await sample_sizes(urls, plan, steps.append)
    assert sum(steps) == plan.units
    table = size_table(samples)
    seen = {(r.op, r.size, r.target) for r in table}
    for size in plan.sizes:
        for op in ("get_recent", "get_full", "put_full"):
            assert {(op, size, "upstream"), (op, size, "proxy")} <= seen
        assert ("get_recent", size, "floor") in seen
        assert ("put_full", size, "floor") in seen  # the same body, the same answer
    assert {r.op for r in table} <= set(OPS)
    assert all(r.n > 0 for r in table if r.op != "append")
    assert all(r.errors == 0 for r in table if r.op != "append")
    assert list(vars(table[0])) == list(SIZE_COLUMNS)

    csv_path = tmp_path / "raw.csv"
    write_samples_csv(samples, csv_path)
    assert len(read_samples_csv(csv_path)) == len(samples)
    verdicts = size_verdicts(table) + [concurrency_verdict([])]
    assert len(verdicts) == 6
    report = tmp_path / "report.md"
    write_markdown(report, Meta("today", "test", "abc", "here", 1.0, 0.1), table, [],
                   (1, 10, 20, 0.0), verdicts, None, "plot.png")
    text = report.read_text()
    assert "| messages | upstream p50 | p95 | p99 | proxy p50 | p95 | p99 | speedup" in text
    assert "## Verdicts" in text and "GET recent" in text
    plot(tmp_path / "plot.png", table)
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


@needs_locust
def test_locustfile_lists_both_user_classes() -> None:
    out = subprocess.run([*locust_exe(), "-f", str(LOCUSTFILE), "--list"], capture_output=True,
                         text=True, timeout=60, check=True, cwd="/")
    assert "FullPutUser" in out.stdout and "AppendUser" in out.stdout


@needs_locust
def test_locust_run_names_requests_by_size_bucket(upstream: Service, tmp_path: Path) -> None:
    rows = run_locust(upstream.url, "upstream", "FullPutUser", 1, 2, tmp_path, seed=600,
                      max_messages=0)
    names = {r.name for r in rows}
    assert {"PUT seed [500-1k]", "PUT full [500-1k]", "GET recent [500-1k]"} <= names
    assert all(r.failures == 0 for r in rows)
    # Exact times, one per counted request, are where the percentiles come from.
    exact = read_timings(tmp_path / "upstream-FullPutUser-1u.timings.csv")
    loop = next(r for r in rows if r.name == "PUT full [500-1k]")
    assert loop.count > 0 and len(exact[loop.name]) == loop.count
    assert loop.p50 == percentile(exact[loop.name], 50)
