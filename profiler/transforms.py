"""Pure profile transforms: merge, filter by predicate / labels / frame regex, focus on a prefix.

The server merges stored batches and filters them per query; keeping these pure and small lets
every output format (pprof, folded, flame graph) share one implementation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from profiler.errors import ProfileError
from profiler.model import Profile, Sample


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
    for p in items[1:]:
        if p.sample_types != first.sample_types:
            raise ProfileError(
                "cannot merge profiles with different sample types: "
                f"{', '.join(map(str, first.sample_types))} vs {', '.join(map(str, p.sample_types))}"
            )
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
