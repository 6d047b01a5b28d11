"""Selecting and merging stored data: series matching, time planning, decoding, per-sample filters."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, and_, or_, select

from profiler.model import ValueType
from profiler.types import CPU, MAIN_VALUE
from server.models import batches, rollup_buckets, rollups, series
from server.storage import rows
from server.storage.plan import HOUR, STEPS, Plan, make_plan

if TYPE_CHECKING:
    from profiler.selector import Selector

_DATA = ("series_id", "ts", "n_entries", "total", "period", "stack_ids", "vals", "label_sets", "label_idx",
         "counters")


@dataclass(slots=True)
class SeriesRow:
    id: int
    profile_type: str
    labels: dict[str, str]
    sample_types: list[ValueType]


@dataclass(slots=True)
class Selection:
    """Merged data of a selector over a range: per-stack values, plus what describes them."""

    profile_type: str
    sample_types: list[ValueType]
    main: int
    stack_ids: np.ndarray
    values: np.ndarray  # (n, k)
    period: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    rows_read: int = 0

    @property
    def unit(self) -> str:
        return self.sample_types[self.main].unit if self.sample_types else ""


def load_series(conn: Connection, profile_type: str | None, t0: int, t1: int) -> list[SeriesRow]:
    query = select(series).where(series.c.first_seen <= t1, series.c.last_seen >= t0 - HOUR)
    if profile_type:
        query = query.where(series.c.profile_type == profile_type)
    out = []
    for r in conn.execute(query):
        out.append(SeriesRow(int(r.id), r.profile_type, json.loads(r.labels),
                             [ValueType(t, u) for t, u in json.loads(r.sample_types)]))
    return out


def split_matchers(selector: Selector, labels: dict[str, str]) -> tuple[bool, list[Any]]:
    """(series-level verdict, matchers left for per-sample labels) for one series."""
    rest = []
    for m in selector.matchers:
        if m.name in labels:
            if not m.matches(labels[m.name]):
                return False, []
        else:
            rest.append(m)
    return True, rest


def _entry_mask(entries: rows.Entries, matchers: list[Any]) -> np.ndarray | None:
    if not matchers:
        return None
    sets = entries.label_sets or [{}]
    ok = np.array([all(m.matches(ls.get(m.name, "")) for m in matchers) for ls in sets], dtype=bool)
    idx = entries.label_idx if entries.label_idx is not None else np.zeros(entries.stack_ids.size, np.int64)
    return ok[idx]


def plan_for(conn: Connection, t0: int, t1: int) -> Plan:
    done: dict[int, set[int]] = {step: set() for step in STEPS}
    for step, ts in conn.execute(select(rollup_buckets.c.step, rollup_buckets.c.ts).where(
            rollup_buckets.c.ts >= t0 - HOUR, rollup_buckets.c.ts < t1)):
        done.setdefault(int(step), set()).add(int(ts))
    return make_plan(t0, t1, done)


def _row_queries(plan: Plan, series_ids: list[int]) -> list[Any]:
    queries = []
    if plan.raw:
        cols = [batches.c[c] for c in _DATA]
        ranges = or_(*[and_(batches.c.ts >= a, batches.c.ts < b) for a, b in plan.raw])
        queries.append(select(*cols).where(batches.c.series_id.in_(series_ids), ranges))
    for step, buckets in plan.buckets.items():
        if buckets:
            cols = [rollups.c[c] for c in _DATA]
            queries.append(select(*cols).where(rollups.c.series_id.in_(series_ids), rollups.c.step == step,
                                               rollups.c.ts.in_(buckets)))
    return queries


def select_merged(conn: Connection, selector: Selector, t0: int, t1: int, all_columns: bool = True) -> Selection:
    """Merge everything `selector` picks in [t0, t1) into per-stack sums.

    Rollups carry no per-sample labels, so a selection that filters on them reads raw batches.
    With `all_columns=False` only the main value is summed (flame graphs need nothing else).
    """
    ptype = selector.profile_type or CPU
    matched: dict[int, tuple[SeriesRow, list[Any]]] = {}
    for s in load_series(conn, ptype, t0, t1):
        ok, rest = split_matchers(selector, s.labels)
        if ok:
            matched[s.id] = (s, rest)
    types = next(iter(matched.values()))[0].sample_types if matched else []
    main_vt = MAIN_VALUE.get(ptype)
    main = types.index(main_vt) if main_vt in types else max(len(types) - 1, 0)
    empty = Selection(ptype, types, main, np.zeros(0, np.int64), np.zeros((0, len(types)), np.int64))
    if not matched:
        return empty
    # Series with other sample-type layouts (foreign producers) are merged only if they agree.
    matched = {sid: v for sid, v in matched.items() if v[0].sample_types == types}
    per_sample = any(rest for _s, rest in matched.values())
    plan = make_plan(t0, t1, {}) if per_sample else plan_for(conn, t0, t1)
    ids_parts: list[np.ndarray] = []
    val_parts: list[np.ndarray] = []
    counters: dict[str, int] = defaultdict(int)
    periods: dict[int, int] = defaultdict(int)
    n_rows = 0
    for query in _row_queries(plan, list(matched)):
        for r in conn.execute(query):
            n_rows += 1
            entries = rows.decode(r)
            mask = _entry_mask(entries, matched[int(r.series_id)][1])
            values = entries.values if all_columns else entries.values[:, main:main + 1]
            if mask is not None:
                ids_parts.append(entries.stack_ids[mask])
                val_parts.append(values[mask])
            else:
                ids_parts.append(entries.stack_ids)
                val_parts.append(values)
            periods[int(r.period)] += 1
            if r.counters:
                for k, v in json.loads(r.counters).items():
                    counters[k] += int(v)
    if not ids_parts:
        empty.rows_read = n_rows
        return empty
    uniq, sums = rows.sum_by_id(np.concatenate(ids_parts), np.concatenate(val_parts))
    col = main if all_columns else 0
    keep = sums[:, col] != 0 if sums.size else np.zeros(0, bool)
    period = max(periods.items(), key=lambda kv: kv[1])[0] if periods else 0
    if not all_columns:  # expose the main value at its usual index; other columns stay zero
        full = np.zeros((int(keep.sum()), len(types)), dtype=np.int64)
        full[:, main] = sums[keep, 0]
        return Selection(ptype, types, main, uniq[keep], full, period, dict(counters), n_rows)
    return Selection(ptype, types, main, uniq[keep], sums[keep], period, dict(counters), n_rows)


def timeline(conn: Connection, selector: Selector, t0: int, t1: int, step: int,
             group_by: str | None) -> tuple[str, str, list[dict[str, Any]]]:
    """Per-step totals of the main value, one series per group (all matched series when no group)."""
    ptype = selector.profile_type or CPU
    matched = []
    for s in load_series(conn, ptype, t0, t1):
        ok, rest = split_matchers(selector, s.labels)
        if ok:
            matched.append((s, rest))
    unit = ""
    if matched:
        types = matched[0][0].sample_types
        main_vt = MAIN_VALUE.get(ptype)
        unit = (main_vt if main_vt in types else types[-1]).unit
    groups: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    by_id = {s.id: (s, rest) for s, rest in matched}
    simple = [s.id for s, rest in matched if not rest and (not group_by or group_by in s.labels)]
    detailed = [s.id for s, rest in matched if s.id not in set(simple)]
    if simple:
        query = select(batches.c.series_id, batches.c.ts, batches.c.total).where(
            batches.c.series_id.in_(simple), batches.c.ts >= t0, batches.c.ts < t1)
        for sid, ts, total in conn.execute(query):
            labels = by_id[int(sid)][0].labels
            key = labels.get(group_by, "") if group_by else ""
            groups[key][int(ts) - (int(ts) - t0) % step] += int(total)
    if detailed:
        cols = [batches.c[c] for c in _DATA]
        query = select(*cols).where(batches.c.series_id.in_(detailed), batches.c.ts >= t0, batches.c.ts < t1)
        for r in conn.execute(query):
            s, rest = by_id[int(r.series_id)]
            entries = rows.decode(r)
            main = s.sample_types.index(MAIN_VALUE[ptype]) if MAIN_VALUE.get(ptype) in s.sample_types else -1
            vals = entries.values[:, main]
            mask = _entry_mask(entries, rest)
            sets = entries.label_sets or [{}]
            idx = entries.label_idx if entries.label_idx is not None else np.zeros(vals.size, np.int64)
            bucket = int(r.ts) - (int(r.ts) - t0) % step
            for li, ls in enumerate(sets):
                sel = (idx == li) if mask is None else ((idx == li) & mask)
                if not sel.any():
                    continue
                key = (s.labels.get(group_by) or ls.get(group_by, "")) if group_by else ""
                groups[key][bucket] += int(vals[sel].sum())
    out = []
    buckets = range(t0, t1, step)
    for key in sorted(groups):
        got = groups[key]
        points = [[ts, got.get(ts, 0)] for ts in buckets]
        out.append({"labels": {group_by: key} if group_by else {}, "points": points})
    return ptype, unit, out
