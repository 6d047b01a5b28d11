"""Hotpath's named profile types (part of the API) and their pprof sample types."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from profiler.model import Profile, ProfileTable, ValueType

CPU = "cpu"
OFFCPU = "offcpu"

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
