"""Pure transforms: merge (period rescaling, counters, time span), filters and focus."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiler import transforms
from profiler.errors import ProfileError
from profiler.model import Frame, FrameKind, Profile, ProfileTable, Sample, make_labels
from profiler.types import new_cpu_profile, new_offcpu_profile

A, B, C = Frame("main"), Frame("work"), Frame("idle")


def cpu(hz: int, t: int, samples: list[Sample], counters: dict[str, int] | None = None) -> Profile:
    p = new_cpu_profile(hz, time_nanos=t, duration_nanos=10)
    p.samples = samples
    p.counters = counters or {}
    return p


def test_merge_same_period_adds_values_counters_and_spans_time() -> None:
    s = Sample((A, B), (1, 10_000_000))
    m = transforms.merge([cpu(100, 100, [s], {"x": 1}), cpu(100, 50, [s, Sample((A,), (2, 2))], {"x": 2, "y": 1})])
    assert {x.stack: x.values for x in m.samples} == {(A, B): (2, 20_000_000), (A,): (2, 2)}
    assert m.counters == {"x": 3, "y": 1}
    assert (m.time_nanos, m.duration_nanos) == (50, 60)


def test_merge_rescales_counts_when_periods_differ() -> None:
    # 100 Hz (10 ms) and 50 Hz (20 ms): nanoseconds add as is, counts rescale to the 20 ms period
    m = transforms.merge([cpu(100, 1, [Sample((A,), (4, 40_000_000))]), cpu(50, 1, [Sample((A,), (1, 20_000_000))])])
    assert m.period == 20_000_000
    assert m.samples[0].values == (3, 60_000_000)


def test_merge_rejects_different_types_and_handles_empty() -> None:
    with pytest.raises(ProfileError, match="different sample types"):
        transforms.merge([new_cpu_profile(100), new_offcpu_profile()])
    assert transforms.merge([]).samples == []
    assert transforms.merge([new_offcpu_profile()]).samples == []


@dataclass
class Eq:
    name: str
    value: str

    def matches(self, v: str) -> bool:
        return v == self.value


def test_filters_and_focus() -> None:
    p = cpu(100, 0, [Sample((A, B), (1, 1), make_labels({"pid": "1"})), Sample((A, C), (2, 2)),
                     Sample((C,), (4, 4), make_labels({"pid": "2"}))])
    assert transforms.filter_by_labels(p, [Eq("pid", "1")]).total() == 1
    assert transforms.filter_by_labels(p, [Eq("pid", "")]).total() == 2  # absent label reads as ""
    assert transforms.filter_by_labels(p, []).total() == 7
    assert transforms.filter_by_frame(p, "^id").total() == 6
    assert transforms.filter_by_frame(p, re.compile("nomatch")).samples == []
    assert transforms.focus(p, ["main"]).total() == 3
    assert transforms.focus(p, ["main", "work"]).total() == 1
    assert transforms.focus(p, []).total() == 7
    assert transforms.filter_samples(p, lambda s: s.values[0] > 1).total() == 6
    empty = new_cpu_profile(100)
    assert transforms.focus(empty, ["x"]).samples == [] and transforms.filter_by_frame(empty, "x").samples == []
    assert p.total() == 7  # inputs untouched


def _same_merge(profiles: list[Profile]) -> None:
    want = transforms.merge(profiles)
    got = transforms.merge_tables([ProfileTable.from_profile(p) for p in profiles]).to_profile()
    assert got.samples == want.samples  # same order: first-seen (stack, labels)
    assert [tuple((f.kind, f.binary) for f in s.stack) for s in got.samples] == \
        [tuple((f.kind, f.binary) for f in s.stack) for s in want.samples]
    for key in ("sample_types", "period_type", "period", "time_nanos", "duration_nanos", "default_sample_type",
                "counters", "comments"):
        assert getattr(got, key) == getattr(want, key), key


def test_merge_tables_matches_merge() -> None:
    s = Sample((A, B), (1, 10_000_000))
    _same_merge([cpu(100, 100, [s], {"x": 1}), cpu(100, 50, [s, Sample((A,), (2, 2))], {"x": 2, "y": 1})])
    _same_merge([cpu(100, 1, [Sample((A,), (4, 40_000_000))]), cpu(50, 1, [Sample((A,), (1, 20_000_000))]),
                 cpu(30, 0, [Sample((C, A), (3, 99), make_labels({"pid": "1"}))])])
    _same_merge([new_offcpu_profile()])
    with pytest.raises(ProfileError, match="different sample types"):
        transforms.merge_tables([ProfileTable.from_profile(new_cpu_profile(100)),
                                 ProfileTable.from_profile(new_offcpu_profile())])
    assert transforms.merge_tables([]).stacks == []


frames_st = st.sampled_from([A, B, C, Frame("main", "/bin/x"), Frame("main", "/bin/x", FrameKind.NATIVE)])
samples_st = st.builds(lambda stack, v, pid: Sample(tuple(stack), (v, v * 3), make_labels({"pid": pid} if pid else {})),
                       st.lists(frames_st, max_size=4), st.integers(0, 10**12), st.sampled_from(["", "1", "2"]))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([19, 50, 97, 100]), st.integers(0, 10**6),
                          st.lists(samples_st, max_size=6)), min_size=1, max_size=4))
def test_merge_tables_matches_merge_random(parts) -> None:
    _same_merge([cpu(hz, t, smps, {"c": len(smps)}) for hz, t, smps in parts])
