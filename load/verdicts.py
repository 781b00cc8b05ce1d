"""The benchmark's targets, checked against one run's numbers (ratios within the run):
issue 15's (``issue15_verdicts``) and issue 5's before them (``size_verdicts``,
``concurrency_verdict``)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from load.locustrun import LocustRow
from load.stats import Stat, lookup

LOCUST_BUCKET = "1k-2k"


@dataclass(frozen=True)
class Verdict:
    target: str  # what issue 5 asks for
    measured: str
    passed: bool | None  # None: could not be measured in this run
    detail: str

    @property
    def mark(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.passed]


def _upper(target: str, measured: str, value: float, limit: float) -> Verdict:
    """Passes when ``value <= limit``."""
    if math.isnan(value):
        return Verdict(target, measured, None, "not measured")
    if value <= limit:
        return Verdict(target, measured, True, f"{value:.2f}x <= {limit:g}x")
    return Verdict(target, measured, False, f"missed: {value:.2f}x against <= {limit:g}x, "
                   f"{value / limit:.1f}x over the limit")


def _lower(target: str, measured: str, value: float, limit: float) -> Verdict:
    """Passes when ``value >= limit``."""
    if math.isnan(value):
        return Verdict(target, measured, None, "not measured")
    if value >= limit:
        shown = f"{value:.2f}" if value < 10 else f"{value:.1f}"  # 0.53x, not 0.5x
        return Verdict(target, measured, True, f"{shown}x >= {limit:g}x")
    return Verdict(target, measured, False, f"missed: {value:.2f}x against >= {limit:g}x, "
                   f"{limit / value:.1f}x short")


def _p50(t: dict[tuple[str, int, str], Stat], op: str, size: int, target: str) -> float:
    row = t.get((op, size, target))
    return row.p50_ms if row and row.n else math.nan


def _nearest(sizes: list[int], want: int) -> int:
    return min(sizes, key=lambda s: abs(math.log(s) - math.log(want))) if sizes else want


def size_verdicts(table: list[Stat]) -> list[Verdict]:
    t = lookup(table)
    sizes = sorted({r.size for r in table})
    if not sizes:
        return []
    small, big, mid = sizes[0], sizes[-1], _nearest(sizes, 4_000)
    note = "" if big == 20_000 else f" (this run's largest size is {big:,}; the target says 20,000)"
    out = []
    for op, label in (("get_recent", "GET recent"), ("append", "Append endpoint")):
        ratio = _p50(t, op, big, "proxy") / _p50(t, op, small, "proxy")
        out.append(_upper(f"{label}: proxy p50 at 20,000 <= 1.2 x its p50 at 10",
                          f"p50 {_p50(t, op, big, 'proxy'):.2f} ms at {big:,} / "
                          f"{_p50(t, op, small, 'proxy'):.2f} ms at {small:,}{note}",
                          ratio, 1.2))
    for op, label, limit in (("get_recent", "GET recent", 40.0), ("put_full", "PUT full", 20.0)):
        up, px = _p50(t, op, mid, "upstream"), _p50(t, op, mid, "proxy")
        out.append(_lower(f"{label} at 4,000 messages: proxy >= {limit:g} x faster than upstream",
                          f"upstream p50 {up:.2f} ms / proxy p50 {px:.2f} ms at {mid:,}",
                          up / px, limit))
    ratios = {s: _p50(t, "get_recent", s, "proxy") / _p50(t, "get_recent", s, "floor")
              for s in sizes}
    ratios = {s: r for s, r in ratios.items() if not math.isnan(r)}
    worst = max(ratios, key=lambda s: ratios[s]) if ratios else small
    out.append(_upper("Proxy GET recent p50 within 2 x a bare aiohttp handler (same bytes)",
                      f"worst size {worst:,}: proxy {_p50(t, 'get_recent', worst, 'proxy'):.2f} "
                      f"ms / floor {_p50(t, 'get_recent', worst, 'floor'):.2f} ms",
                      ratios.get(worst, math.nan), 2.0))
    return out


def concurrency_ratios(rows: Iterable[LocustRow], target: str, bucket: str = LOCUST_BUCKET,
                       many: int = 25) -> dict[str, tuple[float, float, float]]:
    """Per request kind: (1-user p95, ``many``-user p95, ratio) in one size bucket."""
    p95: dict[tuple[str, int], float] = {}
    for r in rows:
        if r.target == target and r.bucket == bucket and r.p95 is not None and r.count > 0 \
                and r.failures < r.count and r.kind != "PUT seed":
            p95[(r.kind, r.users)] = r.p95
    out = {}
    for kind in sorted({k for k, _ in p95}):
        one, at_many = p95.get((kind, 1), math.nan), p95.get((kind, many), math.nan)
        out[kind] = (one, at_many, at_many / one)
    return out


def concurrency_verdict(rows: list[LocustRow]) -> Verdict:
    proxy = concurrency_ratios(rows, "proxy")
    upstream = concurrency_ratios(rows, "upstream")
    shown = "; ".join(f"{k}: {v[0]:.0f} -> {v[1]:.0f} ms ({v[2]:.1f}x)"
                      for k, v in proxy.items())
    up = "; ".join(f"{k}: {v[2]:.1f}x" for k, v in upstream.items())
    valid = [v[2] for v in proxy.values() if not math.isnan(v[2])]
    worst = max(valid) if valid else math.nan
    return _upper(f"25 users: proxy p95 <= 2 x its 1-user p95 (bucket {LOCUST_BUCKET})",
                  f"proxy {shown or 'n/a'}; upstream alongside: {up or 'n/a'}", worst, 2.0)


# --- issue 15 -------------------------------------------------------------------------------

PUT_SIZES = (4_000, 20_000)
MANY = 250


def _worst(ratios: dict[str, float]) -> tuple[str, float]:
    valid = {k: v for k, v in ratios.items() if not math.isnan(v)}
    if not valid:
        return "", math.nan
    key = max(valid, key=lambda k: valid[k])
    return key, valid[key]


def put_verdicts(tables: dict[str, list[Stat]]) -> list[Verdict]:
    """Whole-session PUT against the floor (<= 2x at 4,000 and 20,000) and the upstream
    (>= 50x at 4,000), per message mix (``tables``: mix -> size table)."""
    out = []
    for mix, table in tables.items():
        t = lookup(table)
        sizes = sorted({r.size for r in table if r.op == "put_full"})
        wanted = [_nearest(sizes, s) for s in PUT_SIZES] if sizes else list(PUT_SIZES)
        ratios = {f"{s:,}": _p50(t, "put_full", s, "proxy") / _p50(t, "put_full", s, "floor")
                  for s in dict.fromkeys(wanted)}
        cells = "; ".join(f"{s}: {_p50(t, 'put_full', int(s.replace(',', '')), 'proxy'):.2f}"
                          f" / {_p50(t, 'put_full', int(s.replace(',', '')), 'floor'):.2f} ms"
                          for s in ratios)
        note = "" if set(wanted) == set(PUT_SIZES) else " (sizes this run has)"
        size, worst = _worst(ratios)
        out.append(_upper(f"PUT full ({mix} mix): proxy p50 <= 2 x a bare handler moving the "
                          "same bytes, at 4,000 and 20,000", f"proxy / floor {cells}{note}; "
                          f"worst {size}", worst, 2.0))
        mid = _nearest(sizes, 4_000) if sizes else 4_000
        up, px = _p50(t, "put_full", mid, "upstream"), _p50(t, "put_full", mid, "proxy")
        out.append(_lower(f"PUT full ({mix} mix) at 4,000 messages: proxy >= 50 x faster than "
                          "the upstream", f"upstream p50 {up:.2f} ms / proxy p50 {px:.2f} ms at "
                          f"{mid:,}", up / px, 50.0))
    return out


def get_floor_verdict(table: list[Stat]) -> Verdict:
    """GET recent p50 <= 1.5 x the floor at every size of part a) (each sample after the
    same idle pause, interleaved)."""
    t = lookup(table)
    sizes = sorted({r.size for r in table if r.op == "get_recent"})
    ratios = {f"{s:,}": _p50(t, "get_recent", s, "proxy") / _p50(t, "get_recent", s, "floor")
              for s in sizes}
    size, worst = _worst(ratios)
    shown = ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items() if not math.isnan(v))
    note = "" if sizes and sizes[-1] >= 50_000 else " (this run's largest size is " \
        f"{sizes[-1] if sizes else 0:,})"
    return _upper("GET recent: proxy p50 <= 1.5 x a bare handler (same bytes) at every size "
                  "from 10 to 50,000", f"worst {size}; all: {shown or 'n/a'}{note}", worst, 1.5)


def saturation_verdict(proxy_rps: float, floor_rps: float) -> Verdict:
    measured = f"proxy {proxy_rps:,.0f} req/s, floor {floor_rps:,.0f} req/s (wrk, pinned)"
    value = proxy_rps / floor_rps if floor_rps else math.nan
    return _lower("GET recent at saturation: proxy >= 50% of a bare handler's throughput",
                  measured, value, 0.5)


def load_verdict(rows: list[LocustRow], many: int = MANY, target: str = "proxy") -> Verdict:
    """``target``'s p95 at ``many`` users against 1 user; the other proxy and the upstream
    (at 25 users) alongside."""
    proxy = concurrency_ratios(rows, target, many=many)
    other = "proxy" if target != "proxy" else "proxy-nosync"
    beside = concurrency_ratios(rows, other, many=many)
    upstream = concurrency_ratios(rows, "upstream", many=25)
    shown = "; ".join(f"{k}: {v[0]:.1f} -> {v[1]:.1f} ms ({v[2]:.1f}x)"
                      for k, v in proxy.items())
    other_shown = "; ".join(f"{k}: {v[2]:.1f}x" for k, v in beside.items())
    up = "; ".join(f"{k}: {v[0]:.0f} -> {v[1]:.0f} ms at 25 users ({v[2]:.1f}x)"
                   for k, v in upstream.items())
    _, worst = _worst({k: v[2] for k, v in proxy.items()})
    return _upper(f"{many} users: proxy p95 <= 3 x its 1-user p95 (GET recent, append, PUT "
                  f"full; bucket {LOCUST_BUCKET})",
                  f"{target} {shown or 'n/a'}; {other} alongside: {other_shown or 'n/a'}; "
                  f"upstream alongside: {up or 'n/a'}", worst, 3.0)


def memory_verdict(rss: int, cache_max: int, constant: int) -> Verdict:
    mb = 1024 * 1024
    return _upper("Memory: RSS <= cache_max_bytes + a documented constant (10,000 sessions "
                  "of 200 messages, 64 MB cache)",
                  f"RSS {rss / mb:.1f} MB; cache_max_bytes {cache_max / mb:.0f} MB + "
                  f"constant {constant / mb:.1f} MB", rss / (cache_max + constant), 1.0)
