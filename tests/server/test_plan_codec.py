"""Pure pieces: time planning over rollup tiers, column codecs, time parsing, config layering."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from server.config import ConfigError, database_url, load_config
from server.storage import codec
from server.storage.plan import HOUR, MINUTE, TEN_MINUTES, make_plan
from server.timeparse import TimeError, parse_range, parse_time


def covered(plan, t0: int, t1: int) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    spans = list(plan.raw) + [(b, b + step) for step, bs in plan.buckets.items() for b in bs]
    return sorted(spans)


@pytest.mark.parametrize(("t0", "t1"), [(30, 7290), (0, 3600), (59, 61), (3600 * 5 + 1, 3600 * 30 - 7)])
def test_plan_covers_range_exactly_once(t0: int, t1: int) -> None:
    done = {HOUR: {h * HOUR for h in range(40)}, TEN_MINUTES: {m * 600 for m in range(240)},
            MINUTE: {m * 60 for m in range(2400)}}
    plan = make_plan(t0, t1, done)
    spans = covered(plan, t0, t1)
    assert spans[0][0] == t0 and spans[-1][1] == t1
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # contiguous, no overlap
    for step, buckets in plan.buckets.items():
        assert all(b % step == 0 and b in done[step] for b in buckets)
    if t1 - t0 > 2 * HOUR:
        assert plan.hours and len(plan.minutes) <= 18  # coarse tiers do the middle


def test_plan_without_rollups_is_raw() -> None:
    plan = make_plan(100, 90_000, {})
    assert plan.raw == [(100, 90_000)] and not any(plan.buckets.values())


def test_codecs_round_trip() -> None:
    rng = np.random.default_rng(3)
    ids = np.sort(rng.integers(0, 5_000_000, 1000))
    assert np.array_equal(codec.unpack_sorted_ids(codec.pack_sorted_ids(ids), ids.size), ids)
    counts = rng.integers(1, 50, 1000)
    vals = np.stack([counts, counts * 52_631_578, rng.integers(-5, 5, 1000)], axis=1)
    packed = codec.pack_values(vals)
    assert np.array_equal(codec.unpack_values(packed, 1000), vals)
    assert len(packed) < 1000 * 10  # count column narrow, ns column derived, signed column raw
    with pytest.raises(codec.CodecError):
        codec.unpack_sorted_ids(b"\x02", 3)


def test_time_parsing() -> None:
    assert parse_time("now-1h", 10_000) == 6400
    assert parse_time("now-30m", 10_000) == 8200 and parse_time("now-7d", 1e6) == 1e6 - 7 * 86400
    assert parse_time("2026-01-02T15:04:05Z", 0) == 1767366245
    assert parse_time("1700000000", 0) == 1700000000 == parse_time("1700000000000", 0)
    assert parse_range(None, None, 10_000) == (6400, 10_001)
    for bad in ("yesterday", "now-1y", "", "-5", "nan"):
        with pytest.raises(TimeError):
            parse_time(bad, 0)


def test_config_layering(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text('{"retention_days": 7, "bind": "0.0.0.0:1"}')
    cfg = load_config({"BIND": "127.0.0.1:9"}, environ={"HOTPATH_CONFIG": str(cfg_file), "HOTPATH_AUTH": "false",
                                                          "HOTPATH_RETENTION_DAYS": "9"})
    assert cfg["RETENTION_DAYS"] == 9 and cfg["BIND"] == "127.0.0.1:9" and cfg["AUTH"] is False
    assert database_url({"DATABASE_URL": "postgres://u:p@h/db"}) == "postgresql+psycopg://u:p@h/db"
    assert database_url({"DATABASE_URL": "", "DATA_DIR": str(tmp_path)}).endswith("/hotpath.db")
    with pytest.raises(ConfigError, match="RETENTION_DAYS"):
        load_config(environ={"HOTPATH_RETENTION_DAYS": "soon"})
