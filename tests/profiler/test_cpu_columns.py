"""profiler.types.as_cpu_columns: a one-column CPU profile gets Hotpath's cpu pair; others are unchanged."""

from __future__ import annotations

import numpy as np

from profiler.model import Frame, ProfileTable, ValueType
from profiler.types import CPU_NANOS, PROFILE_TYPES, SAMPLES_COUNT, as_cpu_columns, profile_type_of


def table(types: tuple[ValueType, ...], values: list[list[int]], period: int = 10_000_000,
          period_type: ValueType | None = CPU_NANOS) -> ProfileTable:
    return ProfileTable(sample_types=types, frames=[Frame("f")], stacks=[(0,)] * len(values),
                        values=np.array(values, dtype=np.int64).reshape(len(values), len(types)), labels=[()] * len(values),
                        period_type=period_type, period=period)


def test_nanoseconds_only_gets_counts() -> None:
    out = as_cpu_columns(table((CPU_NANOS,), [[30_000_000], [10_000_001]]))
    assert out.sample_types == PROFILE_TYPES["cpu"] and profile_type_of(out) == "cpu"
    assert out.values.tolist() == [[3, 30_000_000], [1, 10_000_001]]


def test_counts_only_get_nanoseconds() -> None:
    out = as_cpu_columns(table((SAMPLES_COUNT,), [[4]], period=52_631_578))
    assert out.values.tolist() == [[4, 4 * 52_631_578]]


def test_others_unchanged() -> None:
    for t in (table((SAMPLES_COUNT,), [[1]], period_type=None), table((SAMPLES_COUNT,), [[1]], period=0),
              table((ValueType("alloc_space", "bytes"),), [[1]]), table(PROFILE_TYPES["cpu"], [[1, 10]])):
        assert as_cpu_columns(t) is t
    assert as_cpu_columns(table((CPU_NANOS,), [])).values.shape == (0, 2)
