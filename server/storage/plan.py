"""Split a time range into rollup buckets (hour, 10 minutes, minute) and raw-batch intervals.

Only buckets that lie wholly inside [from, until) and are marked done are read from rollups, so
the answer is exactly what the raw batches would give (a batch belongs to the bucket holding its
start time). Coarse tiers cover the middle of a range, finer ones its unaligned edges.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

MINUTE, TEN_MINUTES, HOUR = 60, 600, 3600
STEPS = (HOUR, TEN_MINUTES, MINUTE)  # coarse to fine; each divides the one before


@dataclass(slots=True)
class Plan:
    buckets: dict[int, list[int]] = field(default_factory=lambda: {s: [] for s in STEPS})
    raw: list[tuple[int, int]] = field(default_factory=list)  # [start, end) intervals

    @property
    def hours(self) -> list[int]:
        return self.buckets[HOUR]

    @property
    def minutes(self) -> list[int]:
        return self.buckets[MINUTE]


def _add_raw(plan: Plan, start: int, end: int) -> None:
    if start >= end:
        return
    if plan.raw and plan.raw[-1][1] == start:
        plan.raw[-1] = (plan.raw[-1][0], end)
    else:
        plan.raw.append((start, end))


def make_plan(t0: int, t1: int, done: dict[int, set[int]]) -> Plan:
    """Cover [t0, t1) with done buckets, coarse first; what no bucket covers is read raw.

    Work is proportional to the done buckets inside the range, never to its length: the gaps between
    done buckets are handed to the next tier whole (`from=0` once walked every hour since 1970).
    """
    plan = Plan()
    ordered = {step: sorted(done.get(step, ())) for step in STEPS}
    # An explicit stack (no recursion), items popped in time order: (start, end, tier), where
    # tier -1 marks a done bucket and tier == len(STEPS) a raw interval.
    work: list[tuple[int, int, int]] = [(t0, t1, 0)]
    while work:
        a, b, tier = work.pop()
        if tier == -1:
            plan.buckets[b - a].append(a)
            continue
        if tier == len(STEPS):
            _add_raw(plan, a, b)
            continue
        step = STEPS[tier]
        starts = ordered[step]
        # done buckets wholly inside [a, b): start >= a and start + step <= b
        inside = starts[bisect.bisect_left(starts, a):bisect.bisect_right(starts, b - step)]
        pieces: list[tuple[int, int, int]] = []
        cursor = a
        for start in inside:
            if cursor < start:
                pieces.append((cursor, start, tier + 1))
            pieces.append((start, start + step, -1))
            cursor = start + step
        if cursor < b:
            pieces.append((cursor, b, tier + 1))
        work.extend(reversed(pieces))
    return plan
