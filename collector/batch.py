"""Build one interval's `Profile`s (cpu, offcpu) from a `RawDrain`: symbolize, label, count.

Missed stacks keep their value under a placeholder frame; nothing is dropped silently.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collector.bpf_abi import END_NAMES, END_PLACEHOLDERS
from collector.source import MISSED_REASONS, RawCount, RawDrain
from collector.symbolize.symbolizer import Symbolizer
from profiler.model import KERNEL_BINARY, Frame, FrameKind, Profile, Sample, make_labels
from profiler.types import new_cpu_profile, new_offcpu_profile

if TYPE_CHECKING:
    from collector.python.support import PythonSupport

MISSED_USER = Frame("[missed user stack]", "", FrameKind.UNKNOWN)
MISSED_KERNEL = Frame("[missed kernel stack]", KERNEL_BINARY, FrameKind.KERNEL)


@dataclass(slots=True)
class Batch:
    """The profiles of one interval plus what the status line reports."""

    cpu: Profile
    offcpu: Profile | None
    samples: int
    unique_stacks: int
    missed: int


def _add(counters: dict[str, int], name: str, n: int = 1) -> None:
    counters[name] = counters.get(name, 0) + n


def _stack(c: RawCount, sym: Symbolizer, counters: dict[str, int], weight: int,
           python: PythonSupport | None = None) -> tuple[Frame, ...]:
    """Root-first frames of one count; missed parts become placeholders and are counted.
    With `python`, CPython frames replace the interpreter's eval-loop frames of the user stack."""
    leaf_first: list[Frame] = []
    missed = False
    if c.kernel:
        leaf_first += sym.kernel_frames(c.kernel, counters)
    elif c.kernel_error not in (0, -errno.EFAULT):  # -EFAULT alone: the sample was in user mode
        leaf_first.append(MISSED_KERNEL)
        _add(counters, "missed_kernel_stacks", weight)
        _add(counters, f"missed_kernel_{MISSED_REASONS.get(c.kernel_error, 'other').replace(' ', '_')}",
             weight)
        missed = True
    user: list[Frame] = []
    if c.user:
        user = sym.user_frames(c.tgid, c.user, counters)
    end_frame: Frame | None = None
    if c.user_end:
        # The table unwinder says why the walk ended: counted, and a truncated stack keeps its
        # frames plus a placeholder naming the reason, outermost.
        _add(counters, f"unwind_end_{END_NAMES.get(c.user_end, 'other')}", weight)
        placeholder = END_PLACEHOLDERS.get(c.user_end, "[unwind: stopped]")
        if placeholder is not None:
            end_frame = Frame(placeholder, "", FrameKind.UNKNOWN)
    elif c.user_error != 0:
        info = sym.tracker.get(c.tgid)
        kernel_thread = info.kernel_thread if info is not None else c.tgid in (0, 2)
        if not (kernel_thread and c.user_error == -errno.EFAULT):
            user.append(MISSED_USER)
            _add(counters, "missed_user_stacks", weight)
            _add(counters, f"missed_user_{MISSED_REASONS.get(c.user_error, 'other').replace(' ', '_')}",
                 weight)
            missed = True
    if python is not None and c.python_end:
        user = python.stacks.merged(c.tgid, list(user), c.python, c.python_end, counters, weight)
    leaf_first += user
    if end_frame is not None:
        leaf_first.append(end_frame)
    if missed:
        _add(counters, "missed_stacks", weight)
    if not leaf_first:
        leaf_first.append(Frame(f"[{c.comm or 'unknown'}]", "", FrameKind.UNKNOWN))
    leaf_first.reverse()
    return tuple(leaf_first)


def _labels(c: RawCount, sym: Symbolizer) -> tuple[tuple[str, str], ...]:
    info = sym.tracker.get(c.tgid)
    labels = {"pid": str(c.tgid), "thread": c.comm,
              "process": (info.comm if info is not None and info.comm else c.comm)}
    if info is not None and info.container_id:
        labels["container_id"] = info.container_id
    if info is not None and info.pod_uid:
        labels["pod_uid"] = info.pod_uid
    return make_labels(labels)


def _fill(profile: Profile, counts: Iterable[RawCount], sym: Symbolizer, per_value: int,
          count_samples: bool, python: PythonSupport | None = None) -> tuple[int, int]:
    merged: dict[tuple[tuple[Frame, ...], tuple[tuple[str, str], ...]], int] = {}
    total = 0
    for c in counts:
        weight = c.value if count_samples else 1
        key = (_stack(c, sym, profile.counters, weight, python), _labels(c, sym))
        merged[key] = merged.get(key, 0) + c.value
        total += c.value
    for (stack, labels), value in merged.items():
        values = (value, value * per_value) if count_samples else (value,)
        profile.samples.append(Sample(stack, values, labels))
    return total, len(merged)


def build_batch(drain: RawDrain, sym: Symbolizer, frequency: int, offcpu: bool,
                python: PythonSupport | None = None) -> Batch:
    """Symbolize and label one drain into a cpu profile and (if enabled) an offcpu profile;
    with `python`, samples of CPython processes carry their Python frames."""
    duration = max(0, drain.end_ns - drain.start_ns)
    cpu = new_cpu_profile(frequency, time_nanos=drain.start_ns, duration_nanos=duration)
    for key in ("unsymbolized_frames", "missed_stacks", "missed_user_stacks", "missed_kernel_stacks",
                "map_full_drops"):
        cpu.counters[key] = 0
    samples, unique = _fill(cpu, drain.cpu, sym, cpu.period, count_samples=True, python=python)
    for name, value in drain.stats.items():
        if name in ("idle_samples", "map_full_drops", "stack_map_recycles") or name.startswith("unwind_"):
            cpu.counters[name] = cpu.counters.get(name, 0) + value
    off = None
    if offcpu:
        off = new_offcpu_profile(time_nanos=drain.start_ns, duration_nanos=duration)
        for key in ("unsymbolized_frames", "missed_stacks", "missed_user_stacks", "missed_kernel_stacks"):
            off.counters[key] = 0
        _, off_unique = _fill(off, drain.offcpu, sym, 1, count_samples=False, python=python)
        unique += off_unique
        for name in ("threads_map_full", "stale_stacks", "sampled_spans", "sampled_out_spans", "lost_offcpu_spans"):
            if drain.stats.get(name):
                off.counters[name] = drain.stats[name]
    for name, value in sym.take_events().items():  # unreadable binaries, refused perf maps
        cpu.counters[name] = cpu.counters.get(name, 0) + value
    if python is not None:
        python.take_counters(cpu.counters)
    sym.end_drain()
    for pid in sym.tracker.after_drain():
        sym.forget(pid)
    missed = cpu.counters.get("missed_stacks", 0) + (off.counters.get("missed_stacks", 0) if off else 0)
    return Batch(cpu=cpu, offcpu=off, samples=samples, unique_stacks=unique, missed=missed)
