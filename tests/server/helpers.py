"""Building small profiles with known answers for server tests."""

from __future__ import annotations

import time

from profiler.model import Frame, FrameKind, Profile, Sample
from profiler.types import new_cpu_profile, new_offcpu_profile


def frame(name: str, binary: str = "/usr/bin/app", kind: FrameKind = FrameKind.NATIVE) -> Frame:
    return Frame(name, binary, kind)


def cpu_profile(stacks: dict[str, int], labels: dict[str, dict[str, str]] | None = None, hz: int = 19,
                at: float | None = None) -> Profile:
    """A cpu profile from {"main;work;leaf": count}; `labels` maps a stack key to its per-sample labels."""
    at = time.time() if at is None else at
    prof = new_cpu_profile(hz, time_nanos=int(at * 1e9), duration_nanos=10_000_000_000)
    for key, count in stacks.items():
        stack = tuple(frame(n) for n in key.split(";"))
        lab = tuple(sorted((labels or {}).get(key, {}).items()))
        prof.samples.append(Sample(stack, (count, count * prof.period), lab))
    return prof


def offcpu_profile(stacks: dict[str, int], at: float | None = None) -> Profile:
    at = time.time() if at is None else at
    prof = new_offcpu_profile(time_nanos=int(at * 1e9), duration_nanos=10_000_000_000)
    for key, ns in stacks.items():
        prof.samples.append(Sample(tuple(frame(n) for n in key.split(";")), (ns,)))
    return prof
