"""Command line: ``agent-memory-proxy serve`` runs the proxy; ``up`` runs it with a local stack."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import fields

from aiohttp import web

from proxy.config import ENV_PREFIX, Settings
from proxy.errors import SettingsError

log = logging.getLogger("proxy")

FLAGS = ("host", "port", "upstream_url", "redis_url")


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


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {name: getattr(args, name, None) for name in FLAGS}
    config_file = args.config or os.environ.get(ENV_PREFIX + "CONFIG")
    try:
        settings = Settings.load(os.environ, config_file, overrides)
    except SettingsError as exc:
        print(f"agent-memory-proxy: invalid setting {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    if args.command == "up":
        from proxy.localstack.run import run_local_stack

        return run_local_stack(settings)
    serve(settings)
    return 0


def serve(settings: Settings) -> None:
    from proxy.app import create_app

    loop = _uvloop() if settings.uvloop else None
    log.info("listening on http://%s:%d", settings.host, settings.port)
    app = create_app(settings)
    app.on_startup.append(_freeze_startup_objects)
    web.run_app(app, host=settings.host, port=settings.port,
                print=None, shutdown_timeout=settings.shutdown_timeout,
                access_log=None, handle_signals=True, loop=loop)


async def _freeze_startup_objects(app: web.Application) -> None:
    """Move what start-up built (modules, the tokenizer, pools) out of the cyclic garbage
    collector's sight: every full collection would otherwise rescan it, a pause that lands
    on whichever requests are in flight."""
    gc.collect()
    gc.freeze()


def _uvloop() -> asyncio.AbstractEventLoop | None:
    try:
        import uvloop
    except ImportError:
        return None
    log.info("event loop: uvloop")
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


if __name__ == "__main__":
    sys.exit(main())
