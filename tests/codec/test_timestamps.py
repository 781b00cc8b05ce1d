from datetime import UTC, datetime, timedelta, timezone

import pytest

from proxy.codec import timestamps as ts
from proxy.errors import Unsupported


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
        ("2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00Z"),
        ("2024-01-01T00:00:00-00:00", "2024-01-01T00:00:00Z"),
        ("2024-01-01T10:00:05+02:00", "2024-01-01T10:00:05+02:00"),
        ("2024-01-01T10:00:05-05:30", "2024-01-01T10:00:05-05:30"),
        ("2024-01-01T00:00:03", "2024-01-01T00:00:03"),
        ("2024-01-01 00:00:03.5", "2024-01-01T00:00:03.500000"),
        ("2024-01-01", "2024-01-01T00:00:00"),
        ("2024-01-01T00:00:00.1234567Z", "2024-01-01T00:00:00.123456Z"),
        ("2024-01-01T00:00:00.000000Z", "2024-01-01T00:00:00Z"),
        ("0999-01-01T00:00:00Z", "0999-01-01T00:00:00Z"),
    ],
)
def test_parse_and_format_like_pydantic(text: str, rendered: str) -> None:
    assert ts.format_iso(ts.parse(text)) == rendered


@pytest.mark.parametrize(
    "value",
    [
        None,
        1704067200.75,
        1704067200,
        "1704067200",
        "2024-01-01t00:00:00z",
        "2024-01-01T00:00:00+0530",
        "2024-01-01T00:00:00+05",
        "2024-01-01T00:00",
        "2024-01-01T00:00:00,5Z",
        "2024-01-01T24:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-01-01T00:00:00+24:00",
        "0001-01-01T00:00:00Z",
        "garbage",
        "",
    ],
)
def test_unusual_or_invalid_forms_are_unsupported(value: object) -> None:
    with pytest.raises(Unsupported):
        ts.parse(value)


def test_future_check_allows_300_seconds() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ts.check_not_future(now + timedelta(seconds=300), now)
    ts.check_not_future(datetime(2026, 1, 1, 0, 5), now)  # naive read as UTC
    with pytest.raises(Unsupported):
        ts.check_not_future(now + timedelta(seconds=300, microseconds=1), now)
    with pytest.raises(Unsupported):
        ts.check_not_future(ts.parse("2026-01-01T02:05:01+02:00") + timedelta(hours=0), now)


def test_epoch_seconds_truncate_like_int_timestamp() -> None:
    # contract §2.6: 00:00:00.999999+01:00 comes back as 2023-12-31T23:00:00Z
    dt = ts.parse("2024-01-01T00:00:00.999999+01:00")
    assert ts.format_epoch(ts.epoch_seconds(dt)) == "2023-12-31T23:00:00Z"
    assert ts.epoch_seconds(ts.parse("2024-01-01T00:00:03.9")) == 1704067203


def test_epoch_us_orders_naive_and_aware_on_the_utc_line() -> None:
    assert ts.epoch_us(ts.parse("1970-01-01T00:00:01.000002")) == 1_000_002
    assert ts.epoch_us(ts.parse("1970-01-01T01:00:01+01:00")) == 1_000_000


def test_generated_now_is_aware_utc_and_formats_with_z() -> None:
    now = datetime.now(UTC)
    assert now.utcoffset() == timedelta(0)
    assert ts.format_iso(now.replace(microsecond=42)).endswith(".000042Z")
    assert ts.format_iso(datetime(2024, 1, 1, tzinfo=timezone(timedelta(0)))) == (
        "2024-01-01T00:00:00Z"
    )
