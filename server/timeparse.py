"""Query times: RFC 3339, Unix seconds (or milliseconds), and `now`, `now-1h`, `now-30m`, `now-7d`."""

from __future__ import annotations

import datetime as dt
import math
import re

_RELATIVE = re.compile(r"^now(?:\s*([+-])\s*(\d+)\s*(s|m|h|d|w))?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z: every time fits a database bigint and a datetime


class TimeError(ValueError):
    """A time parameter that does not parse; the message names the accepted forms."""


def parse_time(text: str, now: float) -> int:
    """Unix seconds for `text` relative to `now`, within 0 .. MAX_TIME (else `TimeError`)."""
    seconds = _parse_time(text, now)
    if not 0 <= seconds <= MAX_TIME:
        raise TimeError(f"time {text[:64]!r} is out of range (1970-01-01 .. 9999-12-31)")
    return seconds


def _parse_time(text: str, now: float) -> int:
    value = text.strip()
    if not value:
        raise TimeError("empty time")
    match = _RELATIVE.match(value)
    if match:
        sign, amount, unit = match.groups()
        if amount and len(amount) > 15:  # past MAX_TIME in any unit; also spares int() a 10k-digit string
            raise TimeError(f"time {text[:64]!r} is out of range (1970-01-01 .. 9999-12-31)")
        offset = int(amount) * _UNITS[unit] if amount else 0
        return int(now) + (offset if sign == "+" else -offset)
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        if math.isnan(number) or number < 0 or number > 1e16:
            raise TimeError(f"time {text[:64]!r} out of range")
        return int(number / 1000) if number > 1e11 else int(number)  # > 1e11 can only be milliseconds
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise TimeError(
            f"bad time {text[:64]!r}: expected RFC 3339 (2026-01-02T15:04:05Z), Unix seconds, or now-1h/now-30m/now-7d"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return int(parsed.timestamp())
    except (OverflowError, ValueError):  # year 1 with a positive offset, ...
        raise TimeError(f"time {text[:64]!r} is out of range (1970-01-01 .. 9999-12-31)") from None


def parse_range(start: str | None, end: str | None, now: float, default_span: int = 3600) -> tuple[int, int]:
    """Half-open [from, until + 1s) in Unix seconds (defaults now-1h .. now): `until` is inclusive of its
    second, so data stamped "now" is in a "last hour" query."""
    t1 = parse_time(end, now) if end else int(now)
    t0 = parse_time(start, now) if start else t1 - default_span
    if t0 >= t1:
        raise TimeError(f"from ({t0}) must be before until ({t1})")
    return t0, t1 + 1
