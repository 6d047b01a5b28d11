"""kernel.bpf_stats_enabled for the length of a block, then the host's own setting back.

With it on, every BPF program run also reads the clock twice and updates per-program counters:
on a pinned sched pipe that alone cost several points here (an empty TRACEPOINT_PROBE: +11.5 %
on, +4.9 % off). So the collector benchmarks time with it off, as a production host runs, and
turn it on only to read in-program nanoseconds per run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STATS_KNOB = Path("/proc/sys/kernel/bpf_stats_enabled")


@contextmanager
def bpf_stats(enabled: bool) -> Iterator[None]:
    was = STATS_KNOB.read_text().strip()
    STATS_KNOB.write_text(f"{int(enabled)}\n")
    try:
        yield
    finally:
        STATS_KNOB.write_text(was + "\n")
