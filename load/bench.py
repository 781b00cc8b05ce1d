"""``python -m load.bench`` (``make bench``): the upstream and the proxy measured in one run.

Starts the local stack (upstream + Redis, proxy + its Redis, floor server), then:

a) grows one session per target to 20,000 messages, sampling full-session PUT, the append
   endpoint, GET recent and GET full at each size, interleaved A/B, with the floor alongside;
b) runs headless Locust at 1, 5 and 25 users against each target;
c) writes ``results/bench-<date>.md`` (+ ``results/latest.md``), ``results/bench-<date>.csv``
   and ``results/latency-vs-size.png``;
d) where a target is missed, profiles the proxy under load with py-spy;
e) sets the proxy (upstream sync on, the default) beside one with the sync off, and reports
   what the sync did (load/syncreport.py).

``--quick`` does the same with fewer samples, sizes up to 10,000 and short Locust runs
(under 3 minutes on a 2-core machine). Everything listens on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from load.alone import alone_section, sample_alone
from load.locustrun import LocustRow, run_locust
from load.profile import Profile, profile_proxy
from load.report import Meta, plot, write_markdown
from load.sampling import Sample, SizePlan, sample_sizes
from load.stack import REPO, running_stack
from load.stats import size_table, write_samples_csv
from load.syncreport import SyncFigures, cpu_seconds, read_figures, sync_section
from load.verdicts import concurrency_verdict, size_verdicts

USERS = (1, 5, 25)
LOCUST_SEED, LOCUST_MAX = 1_000, 1_990  # keeps every looped request in the 1k-2k bucket
# An agent's turn includes an LLM call, so real users pause between turns. With no pause a
# closed loop saturates any server and latency grows with the user count by Little's law.
THINK_S = 0.5


@dataclass(frozen=True)
class Mode:
    name: str
    plan: SizePlan
    locust_seconds: int
    profile_seconds: int
    alone_samples: int


FULL = Mode("full", SizePlan((10, 100, 1_000, 4_000, 5_000, 10_000, 20_000), samples=25,
                             budget_s=45.0), locust_seconds=30, profile_seconds=15,
            alone_samples=60)
QUICK = Mode("quick", SizePlan((10, 100, 1_000, 4_000, 10_000), samples=10, budget_s=4.0,
                               timeout_s=30.0),
             locust_seconds=6, profile_seconds=5, alone_samples=20)


class Progress:
    """tqdm when it is installed, else a plain bar on stderr."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.label = total, 0, ""
        self._bar: Any = None
        try:
            tqdm = importlib.import_module("tqdm").tqdm
            self._bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            pass

    def describe(self, label: str) -> None:
        self.label = label
        if self._bar is not None:
            self._bar.set_description(label)
        else:
            self._draw()

    def advance(self, n: int) -> None:
        self.done = min(self.total, self.done + n)
        if self._bar is not None:
            self._bar.update(n)
        else:
            self._draw()

    def _draw(self) -> None:
        width = 30
        filled = int(width * self.done / max(1, self.total))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] "
                         f"{100 * self.done / max(1, self.total):5.1f}% {self.label:<40}")
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            sys.stderr.write("\n")


def _git_commit() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                             check=False, timeout=10)
        return out.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" + uncommitted changes in proxy/" if git("status", "--porcelain",
                                                                "proxy") else "")


def _machine() -> str:
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}")


def run(mode: Mode, out: Path, think_s: float) -> Path:
    started = time.monotonic()
    date = datetime.now().strftime("%Y-%m-%d")
    stem = f"bench-{date}" + ("-quick" if mode.name == "quick" else "")
    raw = out / "raw" / stem
    out.mkdir(parents=True, exist_ok=True)
    locust_runs = len(USERS) * 4
    bar = Progress(mode.plan.units + locust_runs * mode.locust_seconds + mode.profile_seconds)
    samples: list[Sample] = []
    alone: list[str] = []
    locust: list[LocustRow] = []
    prof: Profile | None = None
    figures: SyncFigures | None = None
    notes: list[str] = []
    try:
        with running_stack() as targets:
            assert targets.sync_upstream is not None
            sync_pid, sync_started = targets.sync_upstream.process.pid, time.monotonic()
            sync_cpu = cpu_seconds(sync_pid)
            bar.describe("a) sizes")
            try:
                samples = asyncio.run(sample_sizes(targets.urls, mode.plan, bar.advance))
            except RuntimeError:
                sys.stderr.write(f"\nproxy log tail:\n{targets.proxy.tail_log()}\n")
                raise
            bar.describe("c) proxy alone")
            alone = alone_section(asyncio.run(sample_alone(targets.urls["proxy"],
                                                           mode.alone_samples)))
            append_ok = any(s.op == "append" and s.status == 200 for s in samples)
            if not append_ok:
                notes.append("the proxy's append endpoint did not answer 200 (working memory "
                             "is passed through to the upstream), so append rows are empty")
            for users in USERS:
                runs = [("upstream", "FullPutUser"), ("proxy", "FullPutUser"),
                        ("proxy-nosync", "FullPutUser")]
                runs += [("proxy", "AppendUser")] if append_ok else []
                for target, user_class in runs:
                    bar.describe(f"b) locust {target} {user_class} {users}u")
                    locust += run_locust(targets.urls[target], target, user_class, users,
                                         mode.locust_seconds, raw, LOCUST_SEED, LOCUST_MAX,
                                         think_s)
                    bar.advance(mode.locust_seconds)
                if not append_ok:
                    bar.advance(mode.locust_seconds)
            try:
                figures = read_figures(targets.proxy.url, sync_pid, sync_cpu,
                                       time.monotonic() - sync_started)
            except OSError as exc:
                notes.append(f"the upstream sync's figures could not be read: {exc}")
            table = size_table(samples)
            verdicts = size_verdicts(table) + [concurrency_verdict(locust)]
            if any(v.passed is False for v in verdicts):
                bar.describe("d) profile")
                prof = profile_proxy(targets.proxy.process.pid, targets.proxy.url,
                                     mode.profile_seconds, raw, LOCUST_SEED)
            bar.advance(mode.profile_seconds)
    finally:
        bar.close()
    write_samples_csv(samples, out / f"{stem}.csv")
    plot(out / "latency-vs-size.png", table)
    meta = Meta(date, mode.name, _git_commit(), _machine(), time.monotonic() - started,
                mode.plan.gap_s, notes)
    report = out / f"{stem}.md"
    write_markdown(report, meta, table, locust,
                   (mode.locust_seconds, LOCUST_SEED, LOCUST_MAX, think_s),
                   verdicts, prof, "latency-vs-size.png",
                   [*alone, *sync_section(figures, locust)])
    shutil.copyfile(report, out / "latest.md")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the short version (< 3 min)")
    parser.add_argument("--think", type=float, default=THINK_S, metavar="SECONDS",
                        help="each Locust user's pause between turns (default %(default)s; "
                        "0 makes every run saturate the server)")
    parser.add_argument("--out", type=Path, default=REPO / "results", help="output directory")
    args = parser.parse_args(argv)
    report = run(QUICK if args.quick else FULL, args.out, args.think)
    print(report.read_text())
    print(f"\nwrote {report}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
