"""BPF ns per on-CPU sample: bpf_get_stack's frame-pointer walk vs the table unwinder, same run.

bench/bpf_overhead.py loads bare programs; the table walk needs its maps filled (the agent's
unwind thread registers the sampled process and loads its tables), so this loads the real
BccSource and reads the kernel's own per-program accounting (kernel.bpf_stats_enabled:
run_time_ns / run_cnt of on_cpu_sample; the tail-called walk programs run inside its runs).
Variants, interleaved over --rounds: FP walk of cpu_split built with frame pointers (today's
path, --no-unwind), table walk of the same binary, table walk of cpu_split built -O2
-fomit-frame-pointer (same call depth).

Usage: .venv/bin/python bench/unwind_walk_cost.py [--rounds 3] [--seconds 4] [--hz 999]
Needs root + BPF.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bpf_stats import bpf_stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORKLOAD = ROOT / "tests/collector/workloads/cpu_split.c"


def sample_prog_stats() -> tuple[int, int]:
    """(run_time_ns, run_cnt) summed over this process's perf-event programs (on_cpu_sample; the
    tail-called unwind_cpu_step has no runs of its own)."""
    ns = cnt = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            info = dict(line.split(":", 1) for line in (Path("/proc/self/fdinfo") / fd.name).read_text().splitlines()
                        if ":" in line)
        except OSError:
            continue
        if info.get("prog_type", "").strip() == "7":  # BPF_PROG_TYPE_PERF_EVENT
            ns += int(info.get("run_time_ns", 0))
            cnt += int(info.get("run_cnt", 0))
    return ns, cnt


def measure(exe: Path, unwind: bool, hz: int, seconds: float, cache: str) -> float:
    from collector.bpf_loader import UnwindSizes
    from collector.bpf_source import BccSource
    from collector.processes import ProcessTracker

    tracker = ProcessTracker()
    tracker.start()
    src = BccSource(frequency=hz, offcpu=False, unwind=UnwindSizes() if unwind else None,
                    unwind_cache_dir=cache)
    src.follow(tracker)
    try:
        proc = subprocess.Popen([str(exe), str(seconds + 60)])
        if unwind and not src.unwinder.wait_loaded(proc.pid, 120):
            raise SystemExit("tables not loaded in 120 s")
        time.sleep(0.5)
        ns0, n0 = sample_prog_stats()
        time.sleep(seconds)
        ns1, n1 = sample_prog_stats()
        proc.kill()
        proc.wait()
        return (ns1 - ns0) / max(1, n1 - n0)
    finally:
        tracker.stop()
        src.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--hz", type=int, default=999)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hp-walk-"))
    fp, nofp = tmp / "cpu_split_fp", tmp / "cpu_split_nofp"
    subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-o", str(fp),
                    str(WORKLOAD)], check=True)
    subprocess.run(["gcc", "-O2", "-fomit-frame-pointer", "-o", str(nofp), str(WORKLOAD)], check=True)
    variants = {"FP walk (bpf_get_stack), FP binary": (fp, False), "table walk, FP binary": (fp, True),
                "table walk, no-FP binary": (nofp, True)}
    out: dict[str, list[float]] = {k: [] for k in variants}
    with bpf_stats(True):
        for r in range(args.rounds):
            for name, (exe, unwind) in list(variants.items())[r % 3:] + list(variants.items())[:r % 3]:
                out[name].append(measure(exe, unwind, args.hz, args.seconds, str(tmp / "cache")))
    base = statistics.median(out["FP walk (bpf_get_stack), FP binary"])
    print(f"in-program ns per on-CPU sample (kernel + user stack), median of {args.rounds} rounds at {args.hz} Hz")
    for name, vals in out.items():
        med = statistics.median(vals)
        print(f"  {name:38s} {med:8.0f} ns  x{med / base:5.2f}  (rounds: {', '.join(f'{v:.0f}' for v in vals)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
