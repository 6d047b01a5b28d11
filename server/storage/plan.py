"""Split a time range into hourly rollups, minute rollups and raw-batch intervals.

Only buckets that lie wholly inside [from, until) and are marked done are read from rollups, so
the answer is exactly what the raw batches would give (a batch belongs to the bucket holding its
start time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MINUTE, HOUR = 60, 3600


@dataclass(slots=True)
class Plan:
    hours: list[int] = field(default_factory=list)
    minutes: list[int] = field(default_factory=list)
    raw: list[tuple[int, int]] = field(default_factory=list)  # [start, end) intervals


def _add_raw(plan: Plan, start: int, end: int) -> None:
    if start >= end:
        return
    if plan.raw and plan.raw[-1][1] == start:
        plan.raw[-1] = (plan.raw[-1][0], end)
    else:
        plan.raw.append((start, end))


def make_plan(t0: int, t1: int, done_hours: set[int], done_minutes: set[int]) -> Plan:
    plan = Plan()
    hour = t0 - t0 % HOUR
    while hour < t1:
        h_end = hour + HOUR
        if hour >= t0 and h_end <= t1 and hour in done_hours:
            plan.hours.append(hour)
        elif not done_minutes and not (hour >= t0 and h_end <= t1):
            _add_raw(plan, max(hour, t0), min(h_end, t1))
        else:
            minute = max(hour, t0 - t0 % MINUTE)
            while minute < min(h_end, t1):
                m_end = minute + MINUTE
                if minute >= t0 and m_end <= t1 and minute in done_minutes:
                    plan.minutes.append(minute)
                else:
                    _add_raw(plan, max(minute, t0), min(m_end, t1))
                minute = m_end
        hour = h_end
    return plan
