"""Hotpath's named profile types (part of the API) and their pprof sample types."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from profiler.model import Profile, ProfileTable, ValueType

CPU = "cpu"
OFFCPU = "offcpu"
MEMORY = "memory"
GOROUTINE = "goroutine"
CONTENTION = "contention"  # Go's mutex and block profiles are identical in shape: only a name tells them apart

SAMPLES_COUNT = ValueType("samples", "count")
CPU_NANOS = ValueType("cpu", "nanoseconds")
OFFCPU_NANOS = ValueType("off_cpu", "nanoseconds")

PROFILE_TYPES: dict[str, tuple[ValueType, ...]] = {
    CPU: (SAMPLES_COUNT, CPU_NANOS),
    OFFCPU: (OFFCPU_NANOS,),
}

# The value each type is charted and flame-graphed by; matches pprof's default_sample_type.
MAIN_VALUE: dict[str, ValueType] = {CPU: CPU_NANOS, OFFCPU: OFFCPU_NANOS}


def new_cpu_profile(frequency_hz: int, time_nanos: int = 0, duration_nanos: int = 0) -> Profile:
    """An empty on-CPU profile sampled at `frequency_hz` (period = 1e9 / frequency ns)."""
    return Profile(
        sample_types=PROFILE_TYPES[CPU],
        period_type=CPU_NANOS,
        period=1_000_000_000 // frequency_hz,
        time_nanos=time_nanos,
        duration_nanos=duration_nanos,
        default_sample_type=CPU_NANOS.type,
    )


def new_offcpu_profile(time_nanos: int = 0, duration_nanos: int = 0) -> Profile:
    """An empty off-CPU profile whose single value is nanoseconds blocked."""
    return Profile(
        sample_types=PROFILE_TYPES[OFFCPU],
        time_nanos=time_nanos,
        duration_nanos=duration_nanos,
        default_sample_type=OFFCPU_NANOS.type,
    )


# A profile name, as sent (`?type=`, Pyroscope's `__name__`) or inferred; also a selector's type.
NAME = re.compile(r"[a-z_][a-z0-9_]{0,31}")
# Values that are a snapshot of a level (live heap, goroutines), not a count over the profile's window:
# over a time range they are averaged across snapshots, never added up.
GAUGES = frozenset({"inuse_space", "inuse_objects", "goroutine", "goroutines", "threadcreate"})
SUM, AVERAGE = "sum", "average"
# Pyroscope's names (`__name__`, legacy `name=app.<suffix>`) -> ours.
PYROSCOPE_NAMES = {"process_cpu": CPU, "itimer": CPU, "goroutines": GOROUTINE, "inuse_space": MEMORY,
                   "inuse_objects": MEMORY, "alloc_space": MEMORY, "alloc_objects": MEMORY,
                   "mutex_count": "mutex", "mutex_duration": "mutex", "block_count": "block",
                   "block_duration": "block"}
# Pyroscope's legacy single-value suffixes -> the Go sample type they carry.
PYROSCOPE_SAMPLE_TYPES = {"mutex_count": "contentions", "mutex_duration": "delay", "block_count": "contentions",
                          "block_duration": "delay", "goroutines": GOROUTINE}


def aggregation(sample_type: str) -> str:
    """How a sample type's values combine over a time range: "average" for gauges, else "sum"."""
    return AVERAGE if sample_type in GAUGES else SUM


def split_type(query_type: str) -> tuple[str, str | None]:
    """`memory:inuse_space` -> ("memory", "inuse_space"); a bare `cpu` -> ("cpu", None): its main value."""
    name, _, sample_type = query_type.partition(":")
    return name, sample_type or None


def column_of(name: str, sample_type: str | None, types: list[ValueType] | tuple[ValueType, ...]) -> int:
    """The column a query type reads in a series of `types` (-1: that series has no such value)."""
    if sample_type is None:
        main_vt = MAIN_VALUE.get(name)
        return types.index(main_vt) if main_vt in types else len(types) - 1
    for i, vt in enumerate(types):
        if vt.type == sample_type:
            return i
    return -1


def query_types(name: str, types: list[ValueType]) -> list[tuple[str, ValueType]]:
    """The query types a series of profile `name` answers: cpu/offcpu by name, others one per sample type."""
    if name in MAIN_VALUE:
        col = column_of(name, None, types)
        return [(name, types[col])] if col >= 0 else []
    return [(f"{name}:{vt.type}", vt) for vt in types]


def pyroscope_name(name: str) -> str:
    """Our profile name for a Pyroscope `__name__` or legacy suffix ("" when it is not a usable name)."""
    out = PYROSCOPE_NAMES.get(name, name)
    return out if NAME.fullmatch(out) else ""


def infer_profile_name(profile: Profile | ProfileTable) -> str:
    """The profile name a pprof's sample and period types imply (Go's runtime/pprof profiles by shape)."""
    names = {vt.type for vt in profile.sample_types}
    period = profile.period_type.type if profile.period_type else ""
    if CPU_NANOS.type in names:
        return CPU
    if OFFCPU_NANOS.type in names:
        return OFFCPU
    if names & {"inuse_space", "alloc_space", "inuse_objects", "alloc_objects"} or period == "space":
        return MEMORY
    if {"contentions", "delay"} <= names:
        return CONTENTION
    if names == {GOROUTINE} or period == GOROUTINE:
        return GOROUTINE
    guess = period or profile.default_sample_type or (profile.sample_types[-1].type if profile.sample_types else "")
    guess = re.sub(r"[^a-z0-9_]", "_", guess.lower())[:32]
    return guess if NAME.fullmatch(guess) else "unknown"


def profile_type_of(profile: Profile) -> str:
    """Name the Hotpath type of a profile: "cpu", "offcpu", or the main sample type's name.

    Foreign producers (Go's runtime/pprof writes `samples/count, cpu/nanoseconds`) map onto ours
    when their sample types match, so their data lands in the same series.
    """
    names = {vt.type for vt in profile.sample_types}
    if CPU_NANOS.type in names:
        return CPU
    if OFFCPU_NANOS.type in names:
        return OFFCPU
    if profile.default_sample_type:
        return profile.default_sample_type
    return profile.sample_types[-1].type if profile.sample_types else "unknown"


def as_cpu_columns(table: ProfileTable) -> ProfileTable:
    """A one-column CPU profile (`cpu/nanoseconds` or `samples/count` sampled every `period` CPU ns) with
    both of Hotpath's cpu columns, the other derived from the period; any other table unchanged.

    Why: Pyroscope SDKs send only `cpu/nanoseconds`, the OpenTelemetry profiler only `samples/count`;
    with both columns their data lands in the same `cpu` series shape as the collector's and Go's.
    """
    if table.period_type != CPU_NANOS or table.period <= 0 or len(table.sample_types) != 1:
        return table
    col = np.asarray(table.values, dtype=np.int64).reshape(-1)
    if table.sample_types[0] == CPU_NANOS:
        counts = (col + table.period // 2) // table.period
        values = np.column_stack([counts, col])
    elif table.sample_types[0] == SAMPLES_COUNT:
        values = np.column_stack([col, col * table.period])
    else:
        return table
    return replace(table, sample_types=PROFILE_TYPES[CPU], values=values.astype(np.int64),
                   default_sample_type=CPU_NANOS.type)
