"""In-kernel cost of Hotpath's BPF programs alone (no agent, no draining), as same-run ratios.

Every variant is compiled and loaded once with BCC, then detached; each round attaches one
variant at a time, runs a short workload, detaches it. Rounds interleave all variants (rotated
order) so drift and the other tenants of this 2-CPU host hit each alike, and every variant run
sits between two runs with nothing attached: each figure is the median over rounds of (variant
/ the mean of those two), with its 95 % confidence interval (bench/ratios.py).

1. Off-CPU: `perf bench sched pipe -l N` wall time (the context-switch worst case) with
   nothing, an empty TRACEPOINT_PROBE and RAW_TRACEPOINT_PROBE on sched_switch, and Hotpath's
   sched_switch program with/without user and kernel stacks (plus `--ref REV`'s program).
2. On-CPU at --hz (999): a fixed CPU-bound workload (cpu_split, -O2 frame pointers) CPU and
   wall time with nothing, the cpu-clock event with no program, an empty perf-event program,
   Hotpath's on_cpu_sample, and a BCC-`profile`-like program (BPF_STACK_TRACE + get_stackid,
   as /usr/sbin/profile-bpfcc).
3. Many long blockers: 48 threads in nanosleep(2 ms) loops for 3 s (~28k switch-outs/s, each a
   block over --min-block, the case the off-CPU program samples exactly up to a budget): the
   workload's CPU time, which holds the program's (it runs in the switching task).

Usage: .venv/bin/python bench/bpf_overhead.py [--rounds 15] [--pipe-loops 20000]
       [--iterations 150] [--hz 999] [--ref HEAD~1] [--only offcpu|oncpu|blockers] [--pin 0]
       [--match REGEX] [--inprog-runs 3]
Needs root + BPF (BCC). `--ref REV` adds the bpf/ sources of git revision REV as "ref ..."
variants, for a before/after in one run.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bpf_stats import STATS_KNOB, bpf_stats
from ratios import describe, sandwiched
from sched_pipe import sched_pipe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORKLOAD = ROOT / "tests/collector/workloads/cpu_split.c"
BLOCKERS = ROOT / "tests/collector/workloads/many_sleepers.c"

EMPTY_TP = "TRACEPOINT_PROBE(sched, sched_switch) { return 0; }\n"
EMPTY_RAW = "RAW_TRACEPOINT_PROBE(sched_switch) { return 0; }\n"
EMPTY_PERF = ("#include <uapi/linux/bpf_perf_event.h>\n"
              "int on_cpu_sample(struct bpf_perf_event_data *ctx) { return 0; }\n")
# What BCC's tools/profile.py generates for `profile -F 999` (user + kernel stacks, all pids).
PROFILE_LIKE = r"""
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf_perf_event.h>
#include <linux/sched.h>
struct key_t {
    u32 pid;
    u64 kernel_ip;
    int user_stack_id;
    int kernel_stack_id;
    char name[TASK_COMM_LEN];
};
BPF_HASH(counts, struct key_t);
BPF_STACK_TRACE(stack_traces, 16384);
int on_cpu_sample(struct bpf_perf_event_data *ctx) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u32 pid = id;
    if (pid == 0)
        return 0;
    struct key_t key = {.pid = tgid};
    bpf_get_current_comm(&key.name, sizeof(key.name));
    key.user_stack_id = stack_traces.get_stackid(&ctx->regs, BPF_F_USER_STACK);
    key.kernel_stack_id = stack_traces.get_stackid(&ctx->regs, 0);
    counts.increment(key);
    return 0;
}
"""


@dataclass
class Variant:
    name: str
    kind: str  # "tp", "raw", "perf", "timer" (the perf event with no program)
    period: bool = False  # perf: a fixed sample_period instead of sample_freq
    text: str | None = None
    src_file: Path | None = None
    cflags: list[str] = field(default_factory=list)
    bpf: Any = None


def hotpath_flags(bpf_dir: Path, offcpu: bool, kernel: bool = False, user: bool = True) -> list[str]:
    """Same flags as the agent's build_cflags (default options), minus what the variant drops."""
    from collector.bpf_loader import build_cflags
    flags = [f for f in build_cflags(offcpu, 1_000_000, None, offcpu_kernel_stacks=kernel)
             if not f.startswith("-I")]
    flags.insert(0, f"-I{bpf_dir}")
    if offcpu and not user:
        flags.append("-DOFFCPU_NO_USER_STACK")
    return flags


class CpuClockEvents:
    """The cpu-clock sampling event alone, one per online CPU, with no BPF program and no ring
    buffer: the timer interrupt that any sampler at that rate pays, the floor under every
    program. perf_event_open(2) directly, as BCC's attach_perf_event does before it adds a
    program."""

    NR_PERF_EVENT_OPEN: ClassVar[dict[str, int]] = {"x86_64": 298, "aarch64": 241}
    PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK, ATTR_FREQ, ATTR_SIZE = 1, 0, 1 << 10, 112

    def __init__(self) -> None:
        self.fds: list[int] = []
        self.libc = ctypes.CDLL(None, use_errno=True)

    def open(self, hz: int) -> None:
        # perf_event_attr: type, size, config, sample_freq, sample_type, read_format, flags (freq);
        # the rest zero.
        attr = ctypes.create_string_buffer(struct.pack(
            "IIQQQQQ", self.PERF_TYPE_SOFTWARE, self.ATTR_SIZE, self.PERF_COUNT_SW_CPU_CLOCK, hz, 0, 0,
            self.ATTR_FREQ), self.ATTR_SIZE)
        for cpu in sorted(os.sched_getaffinity(0)):
            fd = self.libc.syscall(self.NR_PERF_EVENT_OPEN[os.uname().machine], attr, -1, cpu, -1, 8)
            if fd < 0:
                raise OSError(ctypes.get_errno(), f"perf_event_open(cpu-clock, cpu {cpu})")
            self.fds.append(fd)

    def cleanup(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def load(bcc: Any, v: Variant) -> None:
    if v.kind == "timer":
        v.bpf = CpuClockEvents()
        return
    if v.src_file is not None:
        v.bpf = bcc.BPF(src_file=str(v.src_file).encode(), cflags=v.cflags)
    else:
        v.bpf = bcc.BPF(text=v.text.encode(), cflags=v.cflags)
    # TRACEPOINT_PROBE / RAW_TRACEPOINT_PROBE attach at load: detach until the variant's turn.
    detach(bcc, v)


FN_NAMES = {"tp": b"tracepoint__sched__sched_switch", "raw": b"raw_tracepoint__sched_switch",
            "perf": b"on_cpu_sample"}


def switch_kind(src: Path) -> str:
    """How a revision of bpf/ hooks sched_switch (raw tracepoint since 2026-11-23)."""
    return "raw" if "RAW_TRACEPOINT_PROBE(sched_switch)" in src.read_text() else "tp"


def prog_stats(v: Variant) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of the variant's program: the kernel's own per-program accounting
    (kernel.bpf_stats_enabled), far steadier than wall-clock ratios on a shared host."""
    fd = v.bpf.funcs[FN_NAMES[v.kind]].fd
    fields = dict(line.split(":", 1) for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines()
                  if ":" in line)
    return int(fields.get("run_time_ns", 0)), int(fields.get("run_cnt", 0))


def attach(bcc: Any, v: Variant, hz: int) -> None:
    if v.kind == "timer":
        v.bpf.open(hz)
    elif v.kind == "tp":
        v.bpf.attach_tracepoint(tp=b"sched:sched_switch", fn_name=b"tracepoint__sched__sched_switch")
    elif v.kind == "raw":
        v.bpf.attach_raw_tracepoint(tp=b"sched_switch", fn_name=b"raw_tracepoint__sched_switch")
    else:
        # cpu-clock counts nanoseconds, so a fixed period of 1e9/hz is the same rate without the
        # kernel's frequency-mode period adjustment at every tick.
        rate = {"sample_period": 1_000_000_000 // hz} if v.period else {"sample_freq": hz}
        v.bpf.attach_perf_event(ev_type=bcc.PerfType.SOFTWARE, ev_config=bcc.PerfSWConfig.CPU_CLOCK,
                                fn_name=b"on_cpu_sample", cpu=-1, **rate)


def detach(bcc: Any, v: Variant) -> None:
    if v.kind == "timer":
        v.bpf.cleanup()
    elif v.kind == "tp":
        if b"sched:sched_switch" in v.bpf.tracepoint_fds:
            v.bpf.detach_tracepoint(b"sched:sched_switch")
    elif v.kind == "raw":
        if b"sched_switch" in v.bpf.raw_tracepoint_fds:
            v.bpf.detach_raw_tracepoint(b"sched_switch")
    elif v.bpf.open_perf_events:
        v.bpf.detach_perf_event(ev_type=bcc.PerfType.SOFTWARE, ev_config=bcc.PerfSWConfig.CPU_CLOCK)


def build(src: Path) -> Path:
    exe = Path(tempfile.mkdtemp(prefix="hp-bpf-bench-")) / src.stem
    subprocess.run(["gcc", "-O2", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-pthread",
                    "-o", str(exe), str(src)], check=True)
    return exe


def cpu_work(argv: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one fixed-work run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def ratio_line(name: str, ratios: list[float], abs_med: float, unit: str) -> str:
    return f"   {name:34s} {abs_med:8.4f} {unit}  {describe(ratios)}"


def run_rounds(bcc: Any, variants: list[Variant], rounds: int, hz: int,
               measure: Callable[[], tuple[float, ...]], labels: tuple[str, ...], unit: str,
               inprog_runs: int = 3) -> None:
    """Each round: every variant (rotated order), each run between two 'none' runs and divided
    by their mean (ratios.sandwiched: this VM drifts by tens of percent over minutes).
    The timed rounds run with kernel.bpf_stats_enabled at --stats (0, as a production host):
    with it on, every program run also pays two clock reads and their bookkeeping (here about
    as much as the empty program itself), which a production host does not. In-program time is
    measured after the rounds, in `inprog_runs` more runs per variant with the accounting on."""
    per: dict[str, list[tuple[float, ...]]] = {"none": [], **{v.name: [] for v in variants}}
    ratios: dict[str, list[list[float]]] = {v.name: [[] for _ in labels] for v in variants}
    before = measure()
    per["none"].append(before)
    for r in range(rounds):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:
            attach(bcc, v, hz)
            try:
                got = measure()
            finally:
                detach(bcc, v)
            after = measure()
            per[v.name].append(got)
            per["none"].append(after)
            for i in range(len(labels)):
                ratios[v.name][i] += sandwiched([got[i]], [before[i], after[i]])
            before = after
    print(f"   kernel.bpf_stats_enabled during the rounds: {STATS_KNOB.read_text().strip()}")
    for i, label in enumerate(labels):
        print(f"   -- {label} ({rounds} rounds; median ratio vs the none runs around each run)")
        base_med = statistics.median(p[i] for p in per["none"])
        print(f"   {'none':34s} {base_med:8.4f} {unit}  x1.000")
        for v in variants:
            print(ratio_line(v.name, ratios[v.name][i], statistics.median(p[i] for p in per[v.name]), unit))
    print(f"   -- in-program time (kernel.bpf_stats_enabled=1 for {inprog_runs} more runs each, "
          "interleaved: median of run_time_ns / run_cnt)")
    programs = [v for v in variants if v.kind != "timer"]
    ns: dict[str, list[float]] = {v.name: [] for v in programs}
    runs: dict[str, int] = {v.name: 0 for v in programs}
    with bpf_stats(True):
        for _ in range(inprog_runs):
            for v in programs:
                attach(bcc, v, hz)
                try:
                    t0, c0 = prog_stats(v)
                    measure()
                    t1, c1 = prog_stats(v)
                finally:
                    detach(bcc, v)
                ns[v.name].append((t1 - t0) / max(c1 - c0, 1))
                runs[v.name] += c1 - c0
    for v in programs:
        print(f"   {v.name:34s} {statistics.median(ns[v.name]):8.1f} ns/run  "
              f"(runs {' '.join(f'{x:.0f}' for x in ns[v.name])}; {runs[v.name]} program runs)")


def ref_tree(rev: str) -> Path:
    out = Path(tempfile.mkdtemp(prefix="hp-bpf-ref-"))
    for name in ("hotpath.bpf.c", "hotpath.h"):
        text = subprocess.run(["git", "show", f"{rev}:bpf/{name}"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
        (out / name).write_text(text)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--pipe-loops", type=int, default=20000)
    ap.add_argument("--iterations", type=int, default=150, help="cpu_split iterations per run")
    ap.add_argument("--hz", type=int, default=999)
    ap.add_argument("--ref", help="git revision whose bpf/ is measured too (before/after)")
    ap.add_argument("--only", choices=("offcpu", "oncpu", "blockers"))
    ap.add_argument("--pin", help="taskset CPU list for sched pipe (e.g. 0: both ends on one CPU, "
                    "every op a real switch, less cross-CPU wakeup noise)")
    ap.add_argument("--match", help="only variants whose name matches this regex")
    ap.add_argument("--extra-cflags", default="", help="space-separated -D flags for the current "
                    "Hotpath variants (e.g. -DHP_OFFCPU_NO_PREDICT)")
    ap.add_argument("--stats", type=int, choices=(0, 1), default=0,
                    help="kernel.bpf_stats_enabled during the timed rounds (default 0, as on a "
                    "production host; the host's value is put back afterwards)")
    ap.add_argument("--inprog-runs", type=int, default=3, help="runs per variant for the in-program time")
    args = ap.parse_args()

    from collector.bpf_loader import import_bcc, preflight
    preflight()
    bcc = import_bcc()
    extra = args.extra_cflags.split()
    ref = ref_tree(args.ref) if args.ref else None
    with bpf_stats(bool(args.stats)):
        return run(args, bcc, extra, ref)


def run(args: argparse.Namespace, bcc: Any, extra: list[str], ref: Path | None) -> int:
    from collector.bpf_loader import BPF_DIR, BPF_SOURCE
    print(f"host: {os.cpu_count()} CPUs, kernel {os.uname().release}, load average "
          f"{os.getloadavg()[0]:.2f} at start; {args.rounds} rounds")

    if args.only in (None, "offcpu"):
        variants = [
            Variant("empty TRACEPOINT_PROBE", "tp", text=EMPTY_TP),
            Variant("empty RAW_TRACEPOINT_PROBE", "raw", text=EMPTY_RAW),
            Variant("hotpath, no stacks", switch_kind(BPF_SOURCE), src_file=BPF_SOURCE,
                    cflags=hotpath_flags(BPF_DIR, True, user=False) + extra),
            Variant("hotpath, user stack (default)", switch_kind(BPF_SOURCE), src_file=BPF_SOURCE,
                    cflags=hotpath_flags(BPF_DIR, True) + extra),
            Variant("hotpath, user+kernel stacks", switch_kind(BPF_SOURCE), src_file=BPF_SOURCE,
                    cflags=hotpath_flags(BPF_DIR, True, kernel=True) + extra),
        ]
        if ref is not None:
            ref_src = ref / "hotpath.bpf.c"
            variants += [
                Variant(f"ref {args.ref}, user stack", switch_kind(ref_src), src_file=ref_src,
                        cflags=hotpath_flags(ref, True)),
                Variant(f"ref {args.ref}, user+kernel", switch_kind(ref_src), src_file=ref_src,
                        cflags=hotpath_flags(ref, True, kernel=True)),
            ]
        variants = [v for v in variants if not args.match or re.search(args.match, v.name)]
        for v in variants:
            load(bcc, v)
        print(f"\n1. {'taskset -c ' + args.pin + ' ' if args.pin else ''}perf bench sched pipe -l {args.pipe_loops} (wall seconds; higher ratio = slower)")
        run_rounds(bcc, variants, args.rounds, args.hz, lambda: sched_pipe(args.pipe_loops, args.pin),
                   ("sched pipe total time", "sched pipe CPU time"), "s", args.inprog_runs)
        for v in variants:
            v.bpf.cleanup()

    if args.only in (None, "oncpu"):
        exe = build(WORKLOAD)
        variants = [
            Variant("cpu-clock event, no program", "timer"),
            Variant("empty perf-event program", "perf", text=EMPTY_PERF),
            Variant("empty, sample_period=1e9/hz", "perf", text=EMPTY_PERF, period=True),
            Variant("hotpath on_cpu_sample", "perf", src_file=BPF_SOURCE,
                    cflags=hotpath_flags(BPF_DIR, False) + extra),
            Variant("BCC profile-like (get_stackid)", "perf", text=PROFILE_LIKE),
        ]
        if ref is not None:
            variants.append(Variant(f"ref {args.ref} on_cpu_sample", "perf", src_file=ref / "hotpath.bpf.c",
                                    cflags=hotpath_flags(ref, False)))
        variants = [v for v in variants if not args.match or re.search(args.match, v.name)]
        for v in variants:
            load(bcc, v)
        print(f"\n2. cpu_split {args.iterations} iterations at {args.hz} Hz (CPU-bound, one thread)")
        run_rounds(bcc, variants, args.rounds, args.hz, lambda: cpu_work([str(exe), "0", str(args.iterations)]),
                   ("workload CPU time", "workload wall time"), "s", args.inprog_runs)
        for v in variants:
            v.bpf.cleanup()

    if args.only in (None, "blockers"):
        exe = build(BLOCKERS)
        variants = [Variant("hotpath, user stack (default)", switch_kind(BPF_SOURCE), src_file=BPF_SOURCE,
                            cflags=hotpath_flags(BPF_DIR, True) + extra)]
        if ref is not None:
            ref_src = ref / "hotpath.bpf.c"
            variants.append(Variant(f"ref {args.ref}, user stack", switch_kind(ref_src), src_file=ref_src,
                                    cflags=hotpath_flags(ref, True)))
        variants = [v for v in variants if not args.match or re.search(args.match, v.name)]
        for v in variants:
            load(bcc, v)
        print("\n3. many_sleepers: 48 threads in nanosleep(2 ms) loops for 3 s")
        run_rounds(bcc, variants, args.rounds, args.hz, lambda: cpu_work([str(exe), "48", "3"]),
                   ("workload CPU time", "workload wall time"), "s", args.inprog_runs)
        for v in variants:
            v.bpf.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
