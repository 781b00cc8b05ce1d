"""Part f) of the benchmark: throughput at saturation, measured with wrk (a C load generator,
so the client's own cost stays small and steady).

One process each, pinned: the server under test on core 0, wrk on core 1 (``taskset``), 32
connections. Rounds alternate proxy and floor, so machine noise hits both. Reported per
target: requests/s, latency percentiles from wrk, and the server's CPU time per request
(its own counters: the figure least disturbed by whatever else the machine runs).

* GET recent (limit 20) of a session of ``size`` messages: the proxy against the floor
  answering the same bytes.
* Whole-session PUT resending an unchanged session (each wrk thread its own session, one
  connection each, as one client per session): the proxy against the floor's PUT sink
  answering the same bytes.
* The same two with ``serve --workers 2`` (unpinned: both cores), to show what a second
  worker adds on this machine, where wrk needs a core too.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from load.common import (
    JSON_HEADERS,
    history,
    new_session_id,
    put_body,
    put_path,
    recent_path,
)

CONNECTIONS = 32
PUT_SESSIONS = 8  # wrk threads (and connections) for PUTs: one session each
SERVER_CORE, CLIENT_CORE = 0, 1


@dataclass(frozen=True)
class SatRow:
    op: str  # "GET recent" or "PUT unchanged"
    size: int
    target: str  # proxy, floor, proxy-2w
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU per request (all its processes)
    errors: int


def ensure_wrk() -> str | None:
    """wrk's path, installing it with apt-get when missing; None if that fails."""
    found = shutil.which("wrk")
    if found:
        return found
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        subprocess.run(cmd, capture_output=True, check=False, timeout=600)
    return shutil.which("wrk")


def pin(pid: int, core: int) -> None:
    """Pin a process (all its threads) to one core."""
    subprocess.run(["taskset", "-a", "-p", "-c", str(core), str(pid)], capture_output=True,
                   check=False)


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def family(pid: int) -> list[int]:
    """A process and its children (a worker group's parent and its workers)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == pid:
                    kids.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return [pid, *kids]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children."""
    total = 0
    for member in family(pid):
        try:
            fields = _stat(member)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency(out: str, pct: str) -> float:
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def run_wrk(wrk: str, url: str, seconds: float, *, threads: int = 1,
            connections: int = CONNECTIONS, script: Path | None = None,
            core: int | None = CLIENT_CORE) -> tuple[float, float, float, int, int]:
    """(requests/s, p50 ms, p99 ms, requests, errors) of one wrk run."""
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency",
           "--timeout", "10s"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                         check=False).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (float(rps.group(1)) if rps else 0.0, _latency(out, "50"), _latency(out, "99"),
            int(total.group(1)) if total else 0,
            errors + (int(non2xx.group(1)) if non2xx else 0))


_PUT_SCRIPT = """
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
end
function init(args)
  local f = io.open("%(body)s", "rb")
  body = f:read("*all")
  f:close()
  path = string.format("%(path)s", index)
end
function request()
  return wrk.format("PUT", path, {["Content-Type"] = "application/json"}, body)
end
"""


@dataclass(frozen=True)
class Server:
    name: str
    url: str
    pid: int


@dataclass(frozen=True)
class _Seeded:
    get_path: str  # GET recent of session 1
    put_pattern: str  # PUT path with %d for the session (1 .. PUT_SESSIONS)
    body: bytes  # the PUT body every session is resent with


async def _call(http: aiohttp.ClientSession, method: str, url: str,
                body: bytes | None = None) -> bytes:
    async with http.request(method, url, data=body,
                            headers=JSON_HEADERS if body is not None else None) as resp:
        data = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{method} {url}: HTTP {resp.status} {data[:200]!r}")
        return data


async def _seed(server: Server, size: int) -> _Seeded:
    """PUT_SESSIONS sessions of ``size`` messages, each PUT twice (the second takes the
    raw path, and records what the next resend is proven against)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
        stem = new_session_id("sat")
        body = put_body(stem, history(size))
        for i in range(1, PUT_SESSIONS + 1):
            for _ in range(2):
                await _call(http, "PUT", server.url + put_path(f"{stem}-{i}"), body)
        return _Seeded(recent_path(f"{stem}-1"),
                       put_path(f"{stem}-IDX").replace("IDX", "%d"), body)


async def _floor_answers(server: Server, floor: Server, seeded: _Seeded, op: str) -> None:
    """Give the floor the proxy's own answer to ``op``."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
        if op == GET:
            answer = await _call(http, "GET", server.url + seeded.get_path)
        else:
            answer = await _call(http, "PUT", server.url + seeded.put_pattern % 1, seeded.body)
        await _call(http, "PUT", floor.url + "/body", answer)


GET, PUT = "GET recent (20)", "PUT unchanged"


def saturate(wrk: str, proxy: Server, floor: Server, size: int, seconds: float, rounds: int,
             workdir: Path, others: tuple[Server, ...] = ()) -> list[SatRow]:
    """GET recent and PUT at saturation: ``proxy`` and ``floor`` pinned and alternated,
    then each of ``others`` (e.g. a worker group) unpinned."""
    seeded = {s.name: asyncio.run(_seed(s, size)) for s in (proxy, *others)}
    body_file = workdir / "put-body.json"
    body_file.write_bytes(seeded[proxy.name].body)
    pin(proxy.pid, SERVER_CORE)
    pin(floor.pid, SERVER_CORE)
    rows: list[SatRow] = []

    def lua(name: str, pattern: str) -> Path:
        path = workdir / f"put-{name}.lua"
        path.write_text(_PUT_SCRIPT % {"body": body_file, "path": pattern})
        return path

    def measure(op: str, server: Server, core: int | None, warm: bool = False) -> None:
        if op == GET:
            url = server.url + ("/body" if server is floor else seeded[server.name].get_path)
            script, threads, connections = None, 1, CONNECTIONS
        else:
            pattern = "/sink" if server is floor else seeded[server.name].put_pattern
            url, script = server.url, lua(server.name, pattern)
            threads = connections = PUT_SESSIONS
        before = cpu_seconds(server.pid)
        rps, p50, p99, n, errors = run_wrk(wrk, url, 1 if warm else seconds, threads=threads,
                                           connections=connections, script=script, core=core)
        if not warm:
            cpu_us = (cpu_seconds(server.pid) - before) / max(n, 1) * 1e6
            rows.append(SatRow(op, size, server.name, rps, p50, p99, cpu_us, errors))

    for op in (GET, PUT):
        asyncio.run(_floor_answers(proxy, floor, seeded[proxy.name], op))
        measure(op, proxy, CLIENT_CORE, warm=True)
        measure(op, floor, CLIENT_CORE, warm=True)
        for i in range(rounds):
            for server in (proxy, floor) if i % 2 == 0 else (floor, proxy):
                measure(op, server, CLIENT_CORE)
        for server in others:
            measure(op, server, None, warm=True)
            for _ in range(rounds):
                measure(op, server, None)
    return rows


def best(rows: list[SatRow], op: str, target: str) -> SatRow | None:
    """The median round of one target (by requests/s)."""
    mine = sorted((r for r in rows if r.op == op and r.target == target), key=lambda r: r.rps)
    return mine[len(mine) // 2] if mine else None


def saturation_section(rows: list[SatRow], seconds: float, note: str = "") -> list[str]:
    out = ["## f) Saturation (wrk)", "",
           f"wrk pinned to core {CLIENT_CORE}, each server (one process) pinned to core "
           f"{SERVER_CORE}; {CONNECTIONS} connections for GETs, {PUT_SESSIONS} for PUTs (one "
           f"session each); {seconds:g} s per round, rounds alternating proxy and floor, the "
           "median round shown. CPU per request is the server's own (all its processes). "
           "`proxy-2w` is `serve --workers 2`, unpinned, sharing both cores with wrk.", ""]
    if note:
        out += [note, ""]
    if not rows:
        return out
    out += ["| request | session | target | req/s | p50 ms | p99 ms | CPU us/req | errors | "
            "req/s vs floor |", "|---|---|---|---|---|---|---|---|---|"]
    for op in dict.fromkeys(r.op for r in rows):
        floor = best(rows, op, "floor")
        for target in dict.fromkeys(r.target for r in rows if r.op == op):
            r = best(rows, op, target)
            if r is None:
                continue
            vs = f"{r.rps / floor.rps:.2f}x" if floor and floor.rps else "-"
            out.append(f"| {op} | {r.size:,} | {target} | {r.rps:,.0f} | {r.p50_ms:.2f} | "
                       f"{r.p99_ms:.2f} | {r.cpu_us:.0f} | {r.errors} | {vs} |")
    return [*out, ""]
