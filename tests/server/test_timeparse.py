"""server/timeparse.py: relative, RFC 3339 and unix times; bad ones refused."""

from __future__ import annotations

import pytest

from server.timeparse import TimeError, parse_range, parse_time


def test_time_parsing() -> None:
    assert parse_time("now-1h", 10_000) == 6400
    assert parse_time("now-30m", 10_000) == 8200 and parse_time("now-7d", 1e6) == 1e6 - 7 * 86400
    assert parse_time("2026-01-02T15:04:05Z", 0) == 1767366245
    assert parse_time("1700000000", 0) == 1700000000 == parse_time("1700000000000", 0)
    assert parse_range(None, None, 10_000) == (6400, 10_001)
    for bad in ("yesterday", "now-1y", "", "-5", "nan"):
        with pytest.raises(TimeError):
            parse_time(bad, 0)
