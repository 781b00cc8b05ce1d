"""``python -m load.bench`` (``make bench``): the upstream and the proxy measured in one run.

Starts the local stack (upstream + Redis, proxy + its Redis, floor server), then:

a) grows one session per target to 50,000 messages (the upstream to 20,000), sampling
   full-session PUT, the append
   endpoint, GET recent and GET full at each size, interleaved A/B, with the floor alongside
   (GET recent and PUT); then the whole-session PUT once more with short chat turns;
b) runs headless Locust at 1, 25 and 250 users against the proxy with the upstream sync on
   and off (the upstream at the sizes it bears: 1 and 25);
c) the proxy alone, back to back, up to 50,000 messages, against the floor;
d) where a target is missed, profiles the proxy under load with py-spy;
e) sets the proxy (upstream sync on, the default) beside one with the sync off, and reports
   what the sync did (load/syncreport.py);
f) throughput at saturation with wrk, pinned: GET recent and PUT, proxy against the floor,
   and ``serve --workers 2``;
g) memory: per cached session and message, and the cache's bound;
h) what an idle pause costs on this host: PUTs (4,000 chat turns) to the proxy and the
   floor and Redis PINGs, back to back and after part a's pause (load/idle.py);

and writes ``results/bench-<date>.md`` (+ ``results/latest.md``), ``results/bench-<date>.csv``
(``bench-<date>-2`` and on for later runs that day) and ``results/latency-vs-size.png``.
``--quick`` does the same with fewer samples, sizes up to 10,000, short Locust runs up to 25
users and smaller memory runs (a few minutes on a 2-core machine; the full run about half an
hour). Everything listens on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import redis.asyncio as aioredis

from load.alone import AloneRow, alone_section, sample_alone
from load.idle import IdleRow, idle_section
from load.idle import measure as measure_idle
from load.locustrun import LocustRow, run_locust
from load.memory import MemoryFigures, memory_runs, memory_section
from load.profile import Profile, profile_proxy
from load.progress import Progress
from load.report import Meta, plot, write_markdown
from load.sampling import Sample, SizePlan, sample_sizes
from load.saturation import SatRow, Server, best, ensure_wrk, saturate, saturation_section
from load.stack import REPO, Targets, running_stack, start_proxy
from load.stats import size_table, write_samples_csv
from load.syncreport import SyncFigures, cpu_seconds, read_figures, sync_section
from load.verdicts import (
    Verdict,
    concurrency_verdict,
    get_floor_verdict,
    load_verdict,
    memory_verdict,
    put_verdicts,
    saturation_verdict,
    size_verdicts,
)

LOCUST_SEED, LOCUST_MAX = 1_000, 1_990  # keeps every looped request in the 1k-2k bucket
# An agent's turn includes an LLM call, so real users pause between turns. With no pause a
# closed loop saturates any server and latency grows with the user count by Little's law.
# 2 s keeps 250 users (~125 turns/s of 1k-2k-message PUTs) within what one Locust process
# generates on this 2-core machine beside the servers it measures.
THINK_S = 2.0
SEED_ALLOWANCE_S = 0.25  # per user: seeding 1,000 messages, before the counted loop


@dataclass(frozen=True)
class Mode:
    name: str
    plan: SizePlan
    chat: SizePlan  # the whole-session PUT with short chat turns
    locust_seconds: int
    profile_seconds: int
    alone_samples: int
    alone_sizes: tuple[int, ...]
    users: tuple[int, ...]
    upstream_users: tuple[int, ...]  # the upstream (and the sync-off proxy) at these only
    sat_seconds: float
    sat_rounds: int
    quick_memory: bool
    idle_samples: int  # part h, per target and pause


FULL = Mode("full", SizePlan((10, 100, 1_000, 4_000, 5_000, 10_000, 20_000, 50_000),
                             samples=25, budget_s=45.0, upstream_max=20_000),
            SizePlan((4_000, 20_000), samples=25, budget_s=30.0, mix="chat",
                     ops=("put_full",), upstream_max=4_000),
            locust_seconds=30, profile_seconds=15, alone_samples=60,
            alone_sizes=(10, 1_000, 10_000, 50_000), users=(1, 25, 250),
            upstream_users=(1, 25), sat_seconds=5.0, sat_rounds=3, quick_memory=False,
            idle_samples=40)
# The sync-off proxy runs every Locust level: the 250-user target is judged on it, since
# the sync's own upstream shares this machine's two cores (part e tells the sync's cost).
LOAD_TARGET = "proxy-nosync"
QUICK = Mode("quick", SizePlan((10, 1_000, 4_000, 10_000), samples=10, budget_s=4.0,
                               timeout_s=30.0),
             SizePlan((4_000,), samples=10, budget_s=4.0, timeout_s=30.0, mix="chat",
                      ops=("put_full",)),
             locust_seconds=6, profile_seconds=5, alone_samples=12,
             alone_sizes=(10, 1_000, 10_000), users=(1, 25), upstream_users=(1, 25),
             sat_seconds=2.0, sat_rounds=1, quick_memory=True, idle_samples=10)
IDLE_SIZE, IDLE_MIX = 4_000, "chat"  # part h: the PUT whose ratio to the floor is tightest


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


@dataclass
class Results:
    samples: list[Sample] = field(default_factory=list)
    chat: list[Sample] = field(default_factory=list)
    alone: list[AloneRow] = field(default_factory=list)
    locust: list[LocustRow] = field(default_factory=list)
    saturation: list[SatRow] = field(default_factory=list)
    memory: list[MemoryFigures] = field(default_factory=list)
    idle: list[IdleRow] = field(default_factory=list)
    sync: SyncFigures | None = None
    notes: list[str] = field(default_factory=list)


def _locust(targets: Targets, mode: Mode, think_s: float, raw: Path, bar: Progress,
            append_ok: bool) -> list[LocustRow]:
    rows: list[LocustRow] = []
    for users in mode.users:
        classes = ("FullPutUser", "AppendUser") if append_ok else ("FullPutUser",)
        runs = [(target, user_class) for target in ("proxy", LOAD_TARGET)
                for user_class in classes]
        if users in mode.upstream_users:
            runs.insert(0, ("upstream", "FullPutUser"))
        seconds = mode.locust_seconds + int(users * SEED_ALLOWANCE_S)
        for target, user_class in runs:
            bar.describe(f"b) locust {target} {user_class} {users}u")
            rows += run_locust(targets.urls[target], target, user_class, users, seconds, raw,
                               LOCUST_SEED, LOCUST_MAX, think_s)
            bar.advance(mode.locust_seconds)
    return rows


def _saturation(targets: Targets, mode: Mode, raw: Path, res: Results) -> None:
    wrk = ensure_wrk()
    if wrk is None:
        res.notes.append("wrk is not installed and could not be (apt-get install wrk): no "
                         "saturation figures")
        return
    # Fresh proxies with the sync off, so that no hand-over of an earlier part's sessions
    # runs meanwhile and the figures are the request path's own.
    settings = {"upstream_sync": "false"}
    one = start_proxy(targets.group, targets.upstream.url, targets.proxy_redis.url,
                      name="proxy-1w", settings={**settings, "key_prefix": "w1"})
    two = start_proxy(targets.group, targets.upstream.url, targets.proxy_redis.url,
                      name="proxy-2w", workers=2, settings={**settings, "key_prefix": "w2"})
    try:
        res.saturation = saturate(
            wrk, Server("proxy", one.url, one.process.pid),
            Server("floor", targets.floor.url, targets.floor.process.pid), 1_000,
            mode.sat_seconds, mode.sat_rounds, raw,
            (Server("proxy-2w", two.url, two.process.pid),))
    finally:
        targets.group.stop(two)
        targets.group.stop(one)


def _idle(targets: Targets, mode: Mode) -> list[IdleRow]:
    """Part h, on the proxy with the sync off (no hand-over runs meanwhile). It gives the
    floor the proxy's PUT answer: no later part uses the floor."""

    async def run() -> list[IdleRow]:
        async with aioredis.Redis.from_url(targets.proxy_redis.url) as redis:
            return await measure_idle(targets.urls[LOAD_TARGET], targets.floor.url, redis,
                                      size=IDLE_SIZE, mix=IDLE_MIX, samples=mode.idle_samples)

    return asyncio.run(run())


def _verdicts(res: Results) -> tuple[list[Verdict], list[Verdict]]:
    """(issue 15's targets, issue 5's)."""
    table = size_table(res.samples)
    new = put_verdicts({"bench": table, "chat": size_table(res.chat)})
    new.append(get_floor_verdict(table))
    proxy, floor = best(res.saturation, "GET recent (20)", "proxy"), \
        best(res.saturation, "GET recent (20)", "floor")
    new.append(saturation_verdict(proxy.rps if proxy else 0.0,
                                  floor.rps if floor else 0.0))
    new.append(load_verdict(res.locust, target=LOAD_TARGET))
    if res.memory:
        bound = res.memory[-1]
        new.append(memory_verdict(bound.rss, bound.cache_max_bytes, bound.constant))
    return new, size_verdicts(table) + [concurrency_verdict(res.locust)]


def report_stem(out: Path, date: str, mode: str) -> str:
    """The name of this run's files: ``bench-<date>[-quick]``, then ``-2``, ``-3``... for
    later runs of the day, so a rerun never overwrites an earlier run's record."""
    stem = f"bench-{date}" + ("-quick" if mode == "quick" else "")
    name, count = stem, 1
    while (out / f"{name}.md").exists():
        count += 1
        name = f"{stem}-{count}"
    return name


def run(mode: Mode, out: Path, think_s: float) -> Path:
    started = time.monotonic()
    date = datetime.now().strftime("%Y-%m-%d")
    stem = report_stem(out, date, mode.name)
    raw = out / "raw" / stem
    raw.mkdir(parents=True, exist_ok=True)
    runs = sum(4 + (u in mode.upstream_users) for u in mode.users)
    bar = Progress(mode.plan.units + mode.chat.units + runs * mode.locust_seconds
                   + mode.profile_seconds)
    res = Results()
    prof: Profile | None = None
    try:
        with running_stack() as targets:
            assert targets.sync_upstream is not None
            sync_pid, sync_started = targets.sync_upstream.process.pid, time.monotonic()
            sync_cpu = cpu_seconds(sync_pid)
            bar.describe("a) sizes")
            try:
                res.samples = asyncio.run(sample_sizes(targets.urls, mode.plan, bar.advance))
                bar.describe("a) chat turns")
                res.chat = asyncio.run(sample_sizes(targets.urls, mode.chat, bar.advance))
            except RuntimeError:
                sys.stderr.write(f"\nproxy log tail:\n{targets.proxy.tail_log()}\n")
                raise
            bar.describe("c) proxy alone")
            res.alone = asyncio.run(sample_alone(targets.urls["proxy"], mode.alone_samples,
                                                 mode.alone_sizes, targets.urls["floor"]))
            append_ok = any(s.op == "append" and s.status == 200 for s in res.samples)
            if not append_ok:
                res.notes.append("the proxy's append endpoint did not answer 200 (working "
                                 "memory is passed through to the upstream), so append rows "
                                 "are empty")
            res.locust = _locust(targets, mode, think_s, raw, bar, append_ok)
            try:
                res.sync = read_figures(targets.proxy.url, sync_pid, sync_cpu,
                                        time.monotonic() - sync_started)
            except OSError as exc:
                res.notes.append(f"the upstream sync's figures could not be read: {exc}")
            bar.describe("f) saturation")
            _saturation(targets, mode, raw, res)
            bar.describe("g) memory")
            res.memory = memory_runs(targets.group, targets.upstream.url,
                                     targets.proxy_redis.url, mode.quick_memory)
            bar.describe("h) idle pause")
            res.idle = _idle(targets, mode)
            verdicts, earlier = _verdicts(res)
            if any(v.passed is False for v in verdicts):
                bar.describe("d) profile")
                prof = profile_proxy(targets.proxy.process.pid, targets.proxy.url,
                                     mode.profile_seconds, raw, LOCUST_SEED)
            bar.advance(mode.profile_seconds)
    finally:
        bar.close()
    table = size_table(res.samples)
    write_samples_csv(res.samples + res.chat, out / f"{stem}.csv")
    plot(out / "latency-vs-size.png", table)
    meta = Meta(date, mode.name, _git_commit(), _machine(), time.monotonic() - started,
                mode.plan.gap_s, res.notes)
    report = out / f"{stem}.md"
    extra = [*alone_section(res.alone), *sync_section(res.sync, res.locust),
             *saturation_section(res.saturation, mode.sat_seconds),
             *memory_section(res.memory), *idle_section(res.idle, IDLE_SIZE, IDLE_MIX)]
    write_markdown(report, meta, table, res.locust,
                   (mode.locust_seconds, LOCUST_SEED, LOCUST_MAX, think_s),
                   verdicts, prof, "latency-vs-size.png", extra, earlier,
                   size_table(res.chat))
    shutil.copyfile(report, out / "latest.md")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the short version (minutes)")
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
