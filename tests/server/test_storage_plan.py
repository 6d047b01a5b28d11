"""server/storage/plan.py: a time range planned over the rollup tiers, each second covered once."""

from __future__ import annotations

import itertools

import pytest

from server.storage.plan import HOUR, MINUTE, TEN_MINUTES, make_plan


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
