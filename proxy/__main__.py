"""Command line: ``agent-memory-proxy serve`` runs the proxy; ``up`` runs it with a local stack.

``serve`` runs one process, or with ``workers`` > 1 a parent that forks that many workers
(workers.py): each a whole proxy of its own, sharing the port through SO_REUSEPORT.

A process stops like Envoy drains: on SIGTERM ``/-/readyz`` answers 503 at once while
requests are still served for ``drain_seconds`` (load balancers take the instance out of
rotation meanwhile, and answers carry ``Connection: close`` so keep-alive clients move on);
then intake stops, in-flight requests get up to ``shutdown_timeout``, and the write queue is
flushed within ``shutdown_timeout`` before the process exits. SIGINT (Ctrl-C) skips the
drain: readiness goes, intake stops at once, writes still flush.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields

from aiohttp import web

from proxy.config import ENV_PREFIX, Settings
from proxy.errors import SettingsError
from proxy.observability import accesslog
from proxy.observability.logs import setup_logging

log = logging.getLogger("proxy")

FLAGS = ("host", "port", "upstream_url", "redis_url", "workers")


def _parser() -> argparse.ArgumentParser:
    defaults = Settings()
    meaning = {f.name: f.metadata["help"] for f in fields(Settings)}
    parser = argparse.ArgumentParser(
        prog="agent-memory-proxy",
        description="Write-behind caching proxy for agent-memory-server working memory.",
        epilog=f"Every setting can also come from an environment variable {ENV_PREFIX}<KEY> "
        "(e.g. AMP_UPSTREAM_URL) or a TOML file (see config/proxy.example.toml). "
        "Priority: flag > environment > file > default.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the proxy in front of an existing upstream")
    up = sub.add_parser("up", help="install and start Redis, agent-memory-server 0.14.0 "
                        "and the proxy on 127.0.0.1; Ctrl-C stops them all")
    for cmd in (serve, up):
        for name in FLAGS:
            if cmd is up and name in ("upstream_url", "redis_url"):
                continue
            cmd.add_argument(
                "--" + name.replace("_", "-"), dest=name, default=None,
                help=f"{meaning[name]} (env {ENV_PREFIX}{name.upper()}, "
                f"default {getattr(defaults, name)})",
            )
        cmd.add_argument("--config", metavar="FILE", default=None,
                         help=f"TOML file of settings (env {ENV_PREFIX}CONFIG)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {name: getattr(args, name, None) for name in FLAGS}
    config_file = args.config or os.environ.get(ENV_PREFIX + "CONFIG")
    try:
        settings = Settings.load(os.environ, config_file, overrides)
    except SettingsError as exc:
        print(f"agent-memory-proxy: invalid setting {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    if args.command == "up":
        from proxy.localstack.run import run_local_stack

        return run_local_stack(settings)
    return serve(settings)


def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; the exit status."""
    from proxy.workers import catch_early_signals, serve_group, worker_count

    previous = catch_early_signals()
    try:
        count = worker_count(settings.workers)
        if count > 1:
            return serve_group(settings, count, run_worker)
        return run_worker(settings, reuse_port=False)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def run_worker(settings: Settings, reuse_port: bool) -> int:
    """One whole proxy in this process, until a signal stops it."""
    try:
        with asyncio.Runner(loop_factory=_uvloop_factory(settings)) as runner:
            runner.run(_serve(settings, reuse_port))
    except OSError as exc:  # the port is taken, the host does not exist, ...
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return 1
    return 0


async def _serve(settings: Settings, reuse_port: bool) -> None:
    from proxy.app import create_app
    from proxy.http.appkeys import DRAINING
    from proxy.workers import early_signals

    app = create_app(settings)
    app.on_startup.append(_freeze_startup_objects)
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           shutdown_timeout=settings.shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port,
                           reuse_port=True if reuse_port else None)
        await site.start()
        log.info("listening on http://%s:%d (pid %d)", settings.host, settings.port,
                 os.getpid())
        signals: asyncio.Queue[signal.Signals] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, signals.put_nowait, signum)
        for early in early_signals():  # came while starting: act on them now
            signals.put_nowait(early)
        first = await signals.get()
        app[DRAINING].set()
        if first == signal.SIGTERM and settings.drain_seconds > 0:
            log.info("SIGTERM: draining for %.1f s (/-/readyz answers 503, requests are "
                     "still served)", settings.drain_seconds)
            await _until_sigint(signals, settings.drain_seconds)
        log.info("stopping intake; in-flight requests and queued writes get %.1f s",
                 settings.shutdown_timeout)
    finally:
        await runner.cleanup()
        accesslog.flush()
    log.info("stopped")


async def _until_sigint(signals: asyncio.Queue[signal.Signals], seconds: float) -> None:
    """Wait ``seconds``, or less if SIGINT comes (a repeated SIGTERM, as a process group
    and its parent may both send, does not cut the drain short)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while (left := until - loop.time()) > 0:
        try:
            if await asyncio.wait_for(signals.get(), left) == signal.SIGINT:
                return
        except TimeoutError:
            return


async def _freeze_startup_objects(app: web.Application) -> None:
    """Move what start-up built (modules, the tokenizer, pools) out of the cyclic garbage
    collector's sight: every full collection would otherwise rescan it, a pause that lands
    on whichever requests are in flight."""
    gc.collect()
    gc.freeze()


def _uvloop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if not settings.uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    log.info("event loop: uvloop")
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


if __name__ == "__main__":
    sys.exit(main())
