"""Settings: layering, coercion, and errors that name the key."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from proxy.__main__ import main
from proxy.config import Settings
from proxy.errors import SettingsError

EXAMPLE = Path(__file__).parent.parent / "config" / "proxy.example.toml"


def test_example_lists_every_key_with_its_default() -> None:
    table = tomllib.loads(EXAMPLE.read_text())["proxy"]
    defaults = Settings()
    assert set(table) == {f.name for f in fields(Settings)}
    for key, value in table.items():
        assert value == getattr(defaults, key), key
    assert Settings.load({}, EXAMPLE) == defaults


def test_layers_rise_in_priority(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text('port = 1000\nhost = "0.0.0.0"\nack_mode = "buffered"\n')
    env = {"AMP_PORT": "2000", "AMP_FLUSH_INTERVAL_MS": "5", "UNRELATED": "x"}
    s = Settings.load(env, cfg, {"port": "3000", "host": None})
    assert (s.port, s.host, s.ack_mode, s.flush_interval_ms) == (3000, "0.0.0.0", "buffered", 5.0)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"port": "eighty"}, "port"),
        ({"port": 70000}, "port"),
        ({"upstream_url": "ftp://x"}, "upstream_url"),
        ({"redis_url": "localhost:6379"}, "redis_url"),
        ({"ack_mode": "sometimes"}, "ack_mode"),
        ({"queue_max": 0}, "queue_max"),
        ({"upstream_timeout": "-1"}, "upstream_timeout"),
        ({"key_prefix": "a{b}"}, "key_prefix"),
        ({"colour": "blue"}, "colour"),
        ({"cache_max_bytes": 1.5}, "cache_max_bytes"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(SettingsError, match=f"^{key}:"):
        Settings.from_mapping(raw)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_cli_rejects_bad_value_naming_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "x"]) == 2
    assert "port" in capsys.readouterr().err


def test_cli_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [")
    assert main(["serve", "--config", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_help_documents_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--upstream-url", "--redis-url", "--config", "AMP_PORT"):
        assert flag in out
