"""`perf bench sched pipe`, the context-switch worst case, as the collector benchmarks run it."""

from __future__ import annotations

import re
import resource
import subprocess


def sched_pipe(loops: int, pin: str | None = None) -> tuple[float, float]:
    """(wall seconds perf reports, CPU seconds of its processes) for one run, optionally pinned
    with taskset. The CPU time is the steadier figure on a shared VM: a pinned run's wall time
    also holds whatever the hypervisor stole from the vCPU (10-20 % "st" in top here), while the
    BPF programs run inside the switching tasks and are charged to their system time."""
    prefix = ["taskset", "-c", pin] if pin else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([*prefix, "perf", "bench", "sched", "pipe", "-l", str(loops)],
                         capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(re.search(r"Total time:\s*([\d.]+)", out).group(1)), cpu
