"""Settings: one frozen, typed object built once at start-up.

Values come from three layers, later ones winning: built-in defaults, a TOML file
(``--config``), environment variables prefixed ``AMP_``, then command-line flags.
Nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from proxy.errors import SettingsError

ENV_PREFIX = "AMP_"
ACK_MODES = ("flushed", "buffered")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
AUTH_MODES = ("auto", "on", "off")
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata={"help": "address the proxy listens on"})
    port: int = field(default=8090, metadata={"help": "port the proxy listens on"})
    upstream_url: str = field(
        default="http://127.0.0.1:8000",
        metadata={"help": "base URL of the agent-memory-server the proxy fronts"},
    )
    redis_url: str = field(
        default="redis://127.0.0.1:6379/0",
        metadata={"help": "Redis that holds the proxy's own working-memory keys"},
    )
    key_prefix: str = field(
        default="amp", metadata={"help": "prefix of every Redis key the proxy writes"}
    )
    upstream_timeout: float = field(
        default=30.0, metadata={"help": "seconds to wait for the upstream before answering 504"}
    )
    upstream_connect_timeout: float = field(
        default=5.0, metadata={"help": "seconds to wait for a connection to the upstream"}
    )
    max_body_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata={"help": "largest working-memory request body accepted (413 beyond)"},
    )
    ack_mode: str = field(
        default="flushed",
        metadata={"help": "flushed: PUT answers once durable in Redis; buffered: at once"},
    )
    flush_interval_ms: float = field(
        default=0.0,
        metadata={"help": "when writes are already queued, how long the flusher waits for more "
                  "to join them (0: send at once; writes arriving meanwhile form the next "
                  "pipeline)"},
    )
    flush_batch_max: int = field(
        default=256, metadata={"help": "writes per Redis pipeline before flushing early"}
    )
    queue_max: int = field(
        default=10_000, metadata={"help": "writes waiting for the flusher before PUTs back off"}
    )
    queue_wait_ms: float = field(
        default=500.0, metadata={"help": "how long a PUT waits for queue room before 503"}
    )
    cache_max_bytes: int = field(
        default=256 * 1024 * 1024, metadata={"help": "memory for cached session tails, in bytes"}
    )
    cache_max_messages: int = field(
        default=50_000, metadata={"help": "most recent messages cached per session"}
    )
    shutdown_timeout: float = field(
        default=10.0, metadata={"help": "seconds SIGTERM waits for pending writes to flush"}
    )
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR"})
    read_lease_ms: int = field(
        default=5000,
        metadata={"help": "how long a read lease lets this proxy answer a session's reads "
                  "from its cache without asking Redis; a write through another proxy ends "
                  "it and waits for this proxy to drop the old copy (at most this long if "
                  "the proxy is gone); 0 asks Redis for the version on every read"},
    )
    uvloop: bool = field(
        default=True, metadata={"help": "run on uvloop when it is installed (the [speed] extra)"}
    )
    log_format: str = field(
        default="text", metadata={"help": "text, or json (one object per line)"}
    )
    workers: int = field(
        default=1,
        metadata={"help": "worker processes sharing the port (0: one per core available to "
                  "the process, its CPU affinity capped by its cgroup quota); 1 by default, "
                  "since a sidecar shares its pod's cores with the app"},
    )
    # --- the upstream's version -----------------------------------------------------------
    upstream_version: str = field(
        default="auto",
        metadata={"help": "agent-memory-server version the proxy answers as (auto: read from "
                  "the upstream's OpenAPI document at start-up)"},
    )
    upstream_summarization: bool = field(
        default=True,
        metadata={"help": "mirrors the upstream's ENABLE_WORKING_MEMORY_SUMMARIZATION "
                  "(0.15.2): false lets the proxy answer PUTs past the threshold itself; "
                  "true is always safe (those go to the upstream)"},
    )
    upstream_summarization_threshold: float = field(
        default=0.7,
        metadata={"help": "mirrors the upstream's SUMMARIZATION_THRESHOLD: the share of the "
                  "context window past which it summarizes (0.15.2 needs 0 < x <= 1)"},
    )
    # --- auth and hostile clients ---------------------------------------------------------
    auth_mode: str = field(
        default="auto",
        metadata={"help": "auto: check credentials with the upstream whenever it enforces "
                  "auth; on: always; off: never (only behind a trusted network)"},
    )
    auth_cache_ttl: float = field(
        default=10.0, metadata={"help": "seconds an accepted credential's verdict is reused"}
    )
    auth_negative_ttl: float = field(
        default=2.0, metadata={"help": "seconds a refused credential's verdict is reused"}
    )
    auth_cache_size: int = field(
        default=10_000, metadata={"help": "credential verdicts remembered (by hash)"}
    )
    auth_probe_interval: float = field(
        default=30.0,
        metadata={"help": "seconds between checks of whether the upstream enforces auth"},
    )
    upstream_service_token: str = field(
        default="",
        metadata={"help": "bearer credential for the proxy's own upstream calls (background "
                  "deletes, imports, the upstream sync); required when the upstream "
                  "enforces auth"},
    )
    body_read_timeout: float = field(
        default=30.0, metadata={"help": "seconds a client may take to send a request body"}
    )
    bodies_in_flight_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata={"help": "request bytes being processed at once before 503 + Retry-After "
                  "(a body costs about 10x its size in memory while processed; a lone body "
                  "always fits)"},
    )
    upstream_connections: int = field(
        default=256, metadata={"help": "connections to the upstream at most"}
    )
    upstream_pool_wait: float = field(
        default=5.0,
        metadata={"help": "seconds a request waits for a free upstream connection (503 beyond)"},
    )
    # --- upstream sync --------------------------------------------------------------------
    upstream_sync: bool = field(
        default=True,
        metadata={"help": "hand sessions changed here to the upstream behind the hot path, "
                  "so its long-term memory, extraction and MCP keep working"},
    )
    sync_quiet_ms: float = field(
        default=1000.0,
        metadata={"help": "a session is handed over once it saw no write for this long"},
    )
    sync_max_lag_ms: float = field(
        default=10_000.0,
        metadata={"help": "a session written steadily is handed over at least this often"},
    )
    sync_concurrency: int = field(
        default=2, metadata={"help": "hand-overs to the upstream in flight at most"}
    )
    # --- shutdown and durability ----------------------------------------------------------
    drain_seconds: float = field(
        default=5.0,
        metadata={"help": "after SIGTERM, seconds /-/readyz answers 503 while requests are "
                  "still served, before intake stops"},
    )
    write_replicas: int = field(
        default=0,
        metadata={"help": "replicas that must hold a write before it is acknowledged (WAIT; "
                  "0: the primary alone)"},
    )
    write_replicas_timeout_ms: int = field(
        default=1000, metadata={"help": "how long a write waits for those replicas"}
    )

    def __post_init__(self) -> None:
        _check_url("upstream_url", self.upstream_url, ("http", "https"))
        _check_url("redis_url", self.redis_url, REDIS_SCHEMES)
        _check_range("port", self.port, 0, 65535)
        for name in ("upstream_timeout", "upstream_connect_timeout", "body_read_timeout",
                     "upstream_pool_wait", "auth_probe_interval"):
            _check_range(name, getattr(self, name), 1e-6, None)
        for name in ("max_body_bytes", "flush_batch_max", "queue_max", "cache_max_messages",
                     "auth_cache_size", "bodies_in_flight_bytes", "upstream_connections",
                     "sync_concurrency"):
            _check_range(name, getattr(self, name), 1, None)
        for name in ("queue_wait_ms", "cache_max_bytes", "shutdown_timeout", "flush_interval_ms",
                     "auth_cache_ttl", "auth_negative_ttl", "sync_quiet_ms", "sync_max_lag_ms",
                     "drain_seconds", "workers", "write_replicas",
                     "write_replicas_timeout_ms"):
            _check_range(name, getattr(self, name), 0, None)
        _check_range("read_lease_ms", self.read_lease_ms, 0, 60_000)
        if self.ack_mode not in ACK_MODES:
            raise SettingsError(f"ack_mode: must be one of {', '.join(ACK_MODES)}")
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"log_format: must be one of {', '.join(LOG_FORMATS)}")
        if self.auth_mode not in AUTH_MODES:
            raise SettingsError(f"auth_mode: must be one of {', '.join(AUTH_MODES)}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise SettingsError(f"log_level: must be one of {', '.join(LOG_LEVELS)}")
        if not self.key_prefix or any(c in self.key_prefix for c in "{} "):
            raise SettingsError("key_prefix: must be non-empty, without braces or spaces")

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str],
        config_file: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Merge file, environment and overrides (in rising priority) into Settings."""
        raw: dict[str, Any] = {}
        if config_file is not None:
            raw.update(_read_toml(Path(config_file)))
        for f in fields(cls):
            env_key = ENV_PREFIX + f.name.upper()
            if env_key in environ:
                raw[f.name] = environ[env_key]
        raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Settings:
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in known:
                raise SettingsError(f"{key}: unknown setting")
            values[key] = _coerce(key, known[key].default, value)
        return cls(**values)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SettingsError(f"config: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config: {path} is not valid TOML: {exc}") from exc
    # Accept the keys at top level or under a [proxy] table.
    table = data.get("proxy", data)
    if not isinstance(table, dict):
        raise SettingsError("config: [proxy] must be a table")
    return table


def _coerce(key: str, default: object, value: object) -> object:
    """Turn a string (env, CLI) or TOML value into the type of the field's default."""
    target = type(default)
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            return {"1": True, "true": True, "0": False, "false": False}[str(value).lower()]
        if target is int:
            if isinstance(value, bool) or isinstance(value, float):
                raise ValueError
            return int(str(value).replace("_", ""))
        if target is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)  # type: ignore[arg-type]
        if not isinstance(value, str):
            raise ValueError
        return value
    except (ValueError, KeyError, TypeError):
        raise SettingsError(
            f"{key}: expected {target.__name__}, got {value!r}"
        ) from None


def _check_url(key: str, url: str, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or (parts.scheme != "unix" and not parts.hostname):
        raise SettingsError(f"{key}: expected a {'/'.join(schemes)} URL, got {url!r}")


def _check_range(key: str, value: float, low: float, high: float | None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise SettingsError(f"{key}: must be {bound}, got {value!r}")
