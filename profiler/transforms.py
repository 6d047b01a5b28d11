"""Pure profile transforms: merge, filter by predicate / labels / frame regex, focus on a prefix.

The server merges stored batches and filters them per query; keeping these pure and small lets
every output format (pprof, folded, flame graph) share one implementation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from profiler.errors import ProfileError
from profiler.model import Frame, Profile, ProfileTable, Sample


def _check_same_types(items: Sequence[Profile] | Sequence[ProfileTable]) -> None:
    first = items[0]
    for p in items[1:]:
        if p.sample_types != first.sample_types:
            raise ProfileError(
                "cannot merge profiles with different sample types: "
                f"{', '.join(map(str, first.sample_types))} vs {', '.join(map(str, p.sample_types))}"
            )


def _empty_like(profile: Profile) -> Profile:
    return Profile(
        sample_types=profile.sample_types,
        period_type=profile.period_type,
        period=profile.period,
        time_nanos=profile.time_nanos,
        duration_nanos=profile.duration_nanos,
        default_sample_type=profile.default_sample_type,
        counters=dict(profile.counters),
        comments=list(profile.comments),
    )


def merge(profiles: Iterable[Profile]) -> Profile:
    """Merge profiles with the same sample types: values add, counters add, time spans all.

    When periods differ, the result uses the largest period and every value whose unit equals the
    period type's unit (e.g. `cpu/nanoseconds` when the period is in nanoseconds) is kept as is,
    while count-like values (`samples/count`) are rescaled by `period / common_period`, so a sample
    count always means "samples at the common period" and nanoseconds stay nanoseconds.
    Equal (stack, labels) samples are merged. Empty input gives an empty profile with no types.
    """
    items = list(profiles)
    if not items:
        return Profile(sample_types=())
    first = items[0]
    _check_same_types(items)
    out = _empty_like(first)
    out.counters = {}
    out.comments = []
    periods = {p.period for p in items if p.period > 0}
    common = max(periods) if periods else 0
    out.period = common
    if out.period_type is None:
        out.period_type = next((p.period_type for p in items if p.period_type is not None), None)
    period_unit = out.period_type.unit if out.period_type is not None else None
    scaled_idx = [i for i, vt in enumerate(first.sample_types) if vt.unit != period_unit]
    starts = [p.time_nanos for p in items if p.time_nanos]
    ends = [p.time_nanos + p.duration_nanos for p in items if p.time_nanos]
    if starts:
        out.time_nanos = min(starts)
        out.duration_nanos = max(ends) - out.time_nanos
    else:
        out.duration_nanos = max(p.duration_nanos for p in items)
    acc: dict[tuple, list[int]] = {}
    # Hashing a tuple of dataclass Frames costs a Python call per frame; map each Frame object
    # (by id, cheap int hash) to a canonical index once and key on the index tuple instead.
    canon: dict[Any, int] = {}
    by_id: dict[int, int] = {}
    stacks: dict[tuple, tuple] = {}
    n = len(first.sample_types)
    for p in items:
        factor = p.period / common if common and p.period and p.period != common else None
        for name, value in p.counters.items():
            out.counters[name] = out.counters.get(name, 0) + value
        for c in p.comments:
            if c not in out.comments:
                out.comments.append(c)
        for smp in p.samples:
            values = smp.values
            if factor is not None and scaled_idx:
                values = list(values)
                for i in scaled_idx:
                    values[i] = round(values[i] * factor)
            try:
                ids = tuple(map(by_id.__getitem__, map(id, smp.stack)))
            except KeyError:
                for fr in smp.stack:
                    if id(fr) not in by_id:
                        by_id[id(fr)] = canon.setdefault(fr, len(canon))
                ids = tuple(map(by_id.__getitem__, map(id, smp.stack)))
            stacks.setdefault(ids, smp.stack)
            key = (ids, smp.labels)
            cur = acc.get(key)
            if cur is None:
                acc[key] = list(values)
            else:
                for i in range(n):
                    cur[i] += values[i]
    out.samples = [Sample(stacks[ids], tuple(vals), labels) for (ids, labels), vals in acc.items()]
    return out


def filter_samples(profile: Profile, predicate: Callable[[Sample], bool]) -> Profile:
    """Keep the samples for which `predicate` is true; everything else carries over."""
    out = _empty_like(profile)
    out.samples = [s for s in profile.samples if predicate(s)]
    return out


def filter_by_labels(profile: Profile, matchers: Sequence[Any]) -> Profile:
    """Keep samples whose labels satisfy every matcher (`.name`, `.matches(value)`; absent = "")."""
    ms = list(matchers)
    if not ms:
        return filter_samples(profile, lambda s: True)
    return filter_samples(profile, lambda s: all(m.matches(s.label(m.name)) for m in ms))


def filter_by_frame(profile: Profile, regex: str | re.Pattern[str]) -> Profile:
    """Keep samples with at least one frame whose function name matches `regex` (re.search)."""
    pattern = re.compile(regex) if isinstance(regex, str) else regex
    hits: dict[Any, bool] = {}

    def keep(s: Sample) -> bool:
        for fr in s.stack:
            hit = hits.get(fr)
            if hit is None:
                hit = hits[fr] = pattern.search(fr.function) is not None
            if hit:
                return True
        return False

    return filter_samples(profile, keep)


def focus(profile: Profile, prefix: Sequence[str]) -> Profile:
    """Keep samples whose stack's function names start with `prefix` (root first)."""
    want = tuple(prefix)
    k = len(want)
    return filter_samples(
        profile, lambda s: len(s.stack) >= k and tuple(f.function for f in s.stack[:k]) == want
    )


def merge_tables(tables: Iterable[ProfileTable]) -> ProfileTable:
    """`merge` on columnar tables (same rules: period rescaling, counters, time span, equal
    (stack, labels) samples merged in first-seen order), without building a `Sample` per sample:
    frames are unified once per table, stacks remapped at C speed, values summed with numpy."""
    items = list(tables)
    if not items:
        return ProfileTable(sample_types=(), frames=[], stacks=[], values=np.zeros((0, 0), dtype=np.int64),
                            labels=[])
    first = items[0]
    _check_same_types(items)
    periods = {t.period for t in items if t.period > 0}
    common = max(periods) if periods else 0
    period_type = first.period_type
    if period_type is None:
        period_type = next((t.period_type for t in items if t.period_type is not None), None)
    period_unit = period_type.unit if period_type is not None else None
    scaled_idx = [i for i, vt in enumerate(first.sample_types) if vt.unit != period_unit]
    starts = [t.time_nanos for t in items if t.time_nanos]
    if starts:
        time_nanos = min(starts)
        duration = max(t.time_nanos + t.duration_nanos for t in items if t.time_nanos) - time_nanos
    else:
        time_nanos, duration = 0, max(t.duration_nanos for t in items)
    counters: dict[str, int] = {}
    comments: list[str] = []
    index: dict[Frame, int] = {}  # insertion order is the merged frame table
    rows: dict[tuple, int] = {}
    row_of: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    for t in items:
        for name, value in t.counters.items():
            counters[name] = counters.get(name, 0) + value
        for c in t.comments:
            if c not in comments:
                comments.append(c)
        remap = [index.setdefault(f, len(index)) for f in t.frames]
        get = remap.__getitem__
        keys = [(tuple(map(get, st)), lb) for st, lb in zip(t.stacks, t.labels)]
        row_of.append(np.fromiter((rows.setdefault(k, len(rows)) for k in keys), dtype=np.int64, count=len(keys)))
        vals = t.values
        factor = t.period / common if common and t.period and t.period != common else None
        if factor is not None and scaled_idx and vals.size:
            vals = vals.copy()
            for i in scaled_idx:  # Python's round on the same float products, as `merge` does
                vals[:, i] = [round(x * factor) for x in t.values[:, i].tolist()]
        chunks.append(vals)
    frames = list(index)
    n = len(first.sample_types)
    values = np.zeros((len(rows), n), dtype=np.int64)
    if rows:
        np.add.at(values, np.concatenate(row_of), np.concatenate(chunks).reshape(-1, n))
    return ProfileTable(
        sample_types=first.sample_types,
        frames=frames,
        stacks=[k[0] for k in rows],
        values=values,
        labels=[k[1] for k in rows],
        period_type=period_type,
        period=common,
        time_nanos=time_nanos,
        duration_nanos=duration,
        default_sample_type=first.default_sample_type,
        counters=counters,
        comments=comments,
    )
