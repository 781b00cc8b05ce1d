"""Datetimes read and written the way the upstream (Pydantic 2, JSON mode) does (contract §2.1).

Only the ISO-8601 forms that Pydantic and the upstream's own future check
(``datetime.fromisoformat``) read identically are accepted here:
``YYYY-MM-DD``, or ``YYYY-MM-DD[T| ]HH:MM:SS[.f+][Z|±HH:MM]``. Everything else
(numeric epochs, lower-case ``t``/``z``, ``+0530``, ``,5`` fractions, ...) is
``Unsupported`` so the upstream answers it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from proxy.errors import Unsupported

MAX_FUTURE_SECONDS = 300  # upstream setting max_future_timestamp_seconds

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:(Z)|([+-])(\d{2}):(\d{2}))?)?"
)
_tz_cache: dict[int, timezone] = {0: UTC}


def _offset(minutes: int) -> timezone:
    tz = _tz_cache.get(minutes)
    if tz is None:
        tz = _tz_cache.setdefault(minutes, timezone(timedelta(minutes=minutes)))
    return tz


def parse(value: object) -> datetime:
    """Parse a JSON value the way Pydantic would into a datetime, or raise Unsupported."""
    if type(value) is not str:
        raise Unsupported("datetime is not an ISO string")
    m = _ISO.fullmatch(value)
    if m is None:
        raise Unsupported("unusual datetime form")
    y, mo, d, hh, mi, ss, frac, z, sign, oh, om = m.groups()
    year = int(y)
    # Years at the edges of datetime's range overflow once offsets are applied.
    if not 2 <= year <= 9998:
        raise Unsupported("datetime year out of the supported range")
    tz: timezone | None = None
    if z is not None:
        tz = UTC
    elif sign is not None:
        h, mn = int(oh), int(om)
        if h > 23 or mn > 59:
            raise Unsupported("offset out of range")
        minutes = h * 60 + mn
        tz = _offset(-minutes if sign == "-" else minutes)
    try:
        if hh is None:  # a date alone is naive midnight
            return datetime(year, int(mo), int(d))
        us = int(frac[:6].ljust(6, "0")) if frac else 0  # extra digits are cut, not rounded
        return datetime(year, int(mo), int(d), int(hh), int(mi), int(ss), us, tzinfo=tz)
    except ValueError as exc:
        raise Unsupported("invalid calendar value") from exc


def format_iso(dt: datetime) -> str:
    """Pydantic's JSON form: zero offsets as ``Z``, naive without offset, µs only when non-zero."""
    base = (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    )
    if dt.microsecond:
        base += f".{dt.microsecond:06d}"
    off = dt.utcoffset()
    if off is None:
        return base
    secs = int(off.total_seconds())
    if secs == 0:
        return base + "Z"
    sign = "-" if secs < 0 else "+"
    secs = abs(secs)
    return f"{base}{sign}{secs // 3600:02d}:{secs % 3600 // 60:02d}"


def reformat(value: object) -> str:
    """A client's timestamp in the upstream's canonical ISO form."""
    return format_iso(parse(value))


def check_not_future(dt: datetime, now: datetime) -> None:
    """The upstream's message check (§2.2): more than 300 s ahead of now is a 422."""
    aware = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    if aware > now + timedelta(seconds=MAX_FUTURE_SECONDS):
        raise Unsupported("created_at too far in the future")


def epoch_us(dt: datetime) -> int:
    """Microseconds since the epoch; naive values are read as UTC (the sort key)."""
    if dt.tzinfo is None:
        return (dt - _EPOCH_NAIVE) // _US
    return (dt - _EPOCH) // _US


def epoch_seconds(dt: datetime) -> int:
    """What the upstream stores: ``int(dt.timestamp())`` with naive read as UTC (its zone)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def format_epoch(seconds: int) -> str:
    """A stored epoch second as GET renders it: ``datetime.fromtimestamp(s, UTC)`` -> ``…Z``."""
    return format_iso(datetime.fromtimestamp(seconds, UTC))
