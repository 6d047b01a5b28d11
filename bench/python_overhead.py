"""CPython frame support: what it costs a profiled Python program, the BPF programs and the agent.

Sections (each prints same-run ratios, bench/ratios.py):
  slowdown  tests/collector/workloads/py_split.py's rounds per second under Hotpath (BPF + the
            agent's drain and Python support) at 99 and 999 Hz, and under py-spy (PyPI, default
            blocking mode) at the same rates, each run sandwiched between runs with no profiler.
  bpf       in-program ns per on-CPU sample (kernel.bpf_stats_enabled) of one CPU-bound Python
            process at 999 Hz, registered (the Python walk runs) against unregistered (one
            py_procs lookup miss), in alternating blocks, pid-filtered to that process.
  agent     the agent's own CPU time and RSS per second with 20 Python processes running (10
            CPU-bound, 10 blocking in sleep/recv threads), Python support on against off.

Run as root: `.venv/bin/python bench/python_overhead.py [--seconds 4] [--rounds 3] [--only NAME]`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bpf_stats import bpf_stats
from bench.ratios import describe

PYTHON = "/root/.pyenv/versions/3.11.7/bin/python3.11"
WORKLOADS = ROOT / "tests" / "collector" / "workloads"
WARMUP_S = 3.0
RATE = ("import sys, time; sys.path.insert(0, %r); import py_split as w; end = time.monotonic() + %f; "
        "time.sleep(0.5); t0 = time.monotonic(); n = 0\n"
        "while time.monotonic() < end: w.run_round(); n += 1\n"
        "print(n / (time.monotonic() - t0))")


def rate_run(seconds: float, attach=None) -> float:
    """Rounds per second of run_round over `seconds` (after 0.5 s for a profiler to attach)."""
    proc = subprocess.Popen([PYTHON, "-c", RATE % (str(WORKLOADS), seconds + 0.5)], stdout=subprocess.PIPE,
                            text=True)
    helper = attach(proc.pid) if attach is not None else None
    out = proc.communicate()[0]
    if helper is not None:
        helper.send_signal(signal.SIGINT)
        helper.wait()
    return float(out.strip())


class Hotpath:
    """The collector loaded in this process (BPF + drain thread + Python support)."""

    def __init__(self, hz: int, python: bool = True, pids: list[int] | None = None, offcpu: bool = True) -> None:
        from collector.batch import build_batch
        from collector.bpf_source import BccSource
        from collector.processes import ProcessTracker
        from collector.python.support import start_python
        from collector.symbolize.symbolizer import Symbolizer

        self.hz = hz
        self.sym = Symbolizer(None)  # type: ignore[arg-type]
        self.tracker = ProcessTracker(pids=pids, on_capture=self.sym.warm)
        self.sym.tracker = self.tracker
        self.tracker.start(interval_s=0.5)
        self.source = BccSource(frequency=hz, offcpu=offcpu, pids=pids)
        self.python = start_python(self.source, self.tracker) if python else None
        self._build = build_batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(2.0):
            self.drain()

    def drain(self) -> None:
        self._build(self.source.drain(), self.sym, self.hz, self.source.offcpu, self.python)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.tracker.stop()
        if self.python is not None:
            self.python.stop()
        self.source.close()


def slowdown(seconds: float, rounds: int) -> None:
    """Each profiled run between two unprofiled ones: ratio = mean(neighbours) / profiled rate."""
    py_spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    for hz in (99, 999):
        hp: list[float] = []
        spy: list[float] = []
        bases: list[float] = []
        for _ in range(rounds):
            before = rate_run(seconds)
            h = Hotpath(hz)
            try:
                time.sleep(WARMUP_S)  # the first drain and the announcements of every Python process
                run = rate_run(seconds)
            finally:
                h.close()
            after = rate_run(seconds)
            hp.append((before + after) / 2 / run)
            bases += [before, after]
            if py_spy:
                run = rate_run(seconds, lambda pid, hz=hz: subprocess.Popen(
                    [py_spy, "record", "--pid", str(pid), "--rate", str(hz), "--output", os.devnull,
                     "--format", "raw"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                again = rate_run(seconds)
                spy.append((after + again) / 2 / run)
        print(f"slowdown {hz:>4} Hz  hotpath: {describe(hp)}  (no profiler {statistics.median(bases):.0f} rounds/s)")
        if py_spy:
            print(f"slowdown {hz:>4} Hz  py-spy:  {describe(spy)}")


def prog_stats() -> tuple[int, int]:
    """(run_time_ns, run_cnt) summed over this process's perf-event BPF programs (on_cpu_sample)."""
    total = count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            text = Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
        if fields.get("prog_type", "").strip() == "7":  # BPF_PROG_TYPE_PERF_EVENT
            total += int(fields.get("run_time_ns", 0))
            count += int(fields.get("run_cnt", 0))
    return total, count


def bpf_ns(seconds: float, rounds: int) -> None:
    from collector.python.bpf_sink import BpfSink
    from collector.python.tracker import PythonProcesses
    from collector.symbolize.procmaps import capture

    work = subprocess.Popen([PYTHON, str(WORKLOADS / "py_split.py"), str(rounds * seconds * 2 + 30)])
    try:
        time.sleep(0.5)
        h = Hotpath(999, python=False, pids=[work.pid], offcpu=False)
        maps = h.source.python_maps()
        assert maps is not None
        procs = PythonProcesses(BpfSink(maps["py_procs"], maps["py_threads"]))
        on: list[float] = []
        off: list[float] = []
        with bpf_stats(True):
            for _ in range(rounds):
                for registered, out in ((True, on), (False, off)):
                    if registered:
                        procs.observe(capture(work.pid))  # type: ignore[arg-type]
                    else:
                        procs.forget(work.pid)
                    t0, c0 = prog_stats()
                    time.sleep(seconds)
                    t1, c1 = prog_stats()
                    out.append((t1 - t0) / max(c1 - c0, 1))
        h.close()
        ratio = [a / b for a, b in zip(on, off, strict=True)]
        print(f"bpf on-CPU program, ns per sample: Python walk {statistics.median(on):.0f}, without "
              f"{statistics.median(off):.0f} ({describe(ratio)})")
    finally:
        work.kill()
        work.wait()


def agent_cost(seconds: float, rounds: int) -> None:
    procs = [subprocess.Popen([PYTHON, str(WORKLOADS / "py_split.py"), "600"]) for _ in range(10)]
    procs += [subprocess.Popen([PYTHON, str(WORKLOADS / "py_offcpu.py"), "600"], stdout=subprocess.DEVNULL)
              for _ in range(10)]
    try:
        time.sleep(1.0)
        for python in (True, False, True, False)[: max(2, rounds)]:
            h = Hotpath(99, python=python)
            time.sleep(2.0)  # first drain and the initial flood of announcements
            c0, t0 = time.process_time(), time.monotonic()
            time.sleep(seconds * 3)
            cpu = (time.process_time() - c0) / (time.monotonic() - t0)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            h.close()
            print(f"agent with 20 Python processes, Python support {'on ' if python else 'off'}: "
                  f"CPU {cpu * 100:.1f} % of a core, peak RSS {rss:.0f} MiB (this process so far)")
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("slowdown", "bpf", "agent"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (BPF)")
    for name, fn in (("bpf", bpf_ns), ("slowdown", slowdown), ("agent", agent_cost)):
        if args.only in (None, name):
            fn(args.seconds, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
