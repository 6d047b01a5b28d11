"""Benchmark: unwind table compile time (cold, and from the disk cache) and the table manager's memory
with tables for every process on this host (issue 14, acceptance 6: 'table compile time', part of
'agent RSS').

Same-run baselines: pyelftools' own CFI decoding of the same file (`DWARFInfo.EH_CFI_entries()` +
`FDE.get_decoded()`, which yields rule tables but no walker rows) for the cold compile, and the cold
compile for the cache load. Memory is the process's RSS growth while the manager takes every live
process (a fake maps writer that keeps nothing), plus the kernel map memory the real maps would need.
Run: .venv/bin/python bench/unwind_tables.py [--rounds N] [--capacity ROWS]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.bpf_abi import DEFINES, MAPPING, UNWIND_ROW
from collector.symbolize.procmaps import capture
from collector.unwind.compiler import compile_file
from collector.unwind.table_cache import TableCache, TableKey
from collector.unwind.table_manager import TableManager

FILES = {"libc": "/lib/x86_64-linux-gnu/libc.so.6",
         "libpython3.11": "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0"}


def pyelftools_decode(path: str) -> int:
    from elftools.elf.elffile import ELFFile

    rows = failed = 0
    with open(path, "rb") as fh:
        for entry in ELFFile(fh).get_dwarf_info(follow_links=False).EH_CFI_entries():
            if hasattr(entry, "get_decoded"):
                try:
                    rows += len(entry.get_decoded().table)
                except Exception:  # noqa: BLE001 - pyelftools 0.33 stops on some opcodes of libc
                    failed += 1
    return rows - failed


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class NullMaps:
    """A maps writer that only counts (the manager's own memory is what is measured)."""

    def __init__(self) -> None:
        self.rows = 0
        self.procs: set[int] = set()

    def write_rows(self, first: int, rows: np.ndarray) -> None:
        self.rows += len(rows)

    def set_process(self, tgid: int, mappings: np.ndarray) -> None:
        self.procs.add(tgid)

    def delete_process(self, tgid: int) -> None:
        self.procs.discard(tgid)


def compile_times(rounds: int) -> None:
    print("== table compile time (median of rounds; same-run baselines) ==")
    with tempfile.TemporaryDirectory() as tmp:
        cache = TableCache(tmp)
        for name, path in FILES.items():
            if not os.path.exists(path):
                print(f"{name}: missing {path}")
                continue
            cold, base, warm = [], [], []
            table = compile_file(path)
            key = TableKey.for_build_id(table.build_id)
            cache.store(key, table)
            for _ in range(rounds):
                base.append(timed(pyelftools_decode, path))
                cold.append(timed(compile_file, path))
                warm.append(timed(cache.load, key))
            c, b, w = statistics.median(cold), statistics.median(base), statistics.median(warm)
            print(f"{name}: {len(table.rows)} rows; compile cold {c * 1000:.0f} ms vs pyelftools decode "
                  f"{b * 1000:.0f} ms (x{c / b:.2f}); from disk cache {w * 1000:.1f} ms (x{w / c:.3f} of cold)")


def peak_compile_memory(path: str) -> None:
    """Peak RSS of compiling one (large) file in a fresh interpreter, against importing alone."""
    code = "import sys; from collector.unwind.compiler import compile_file; compile_file(sys.argv[1])"
    base = "import sys; import collector.unwind.compiler"
    root = str(Path(__file__).resolve().parent.parent)
    peaks = []
    for snippet in (base, code):
        out = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-c", snippet, path], cwd=root,
                             capture_output=True, text=True, check=True)
        peaks.append(int(out.stderr.strip().splitlines()[-1]))
    print(f"peak RSS compiling {path} ({os.path.getsize(path) >> 20} MiB): {peaks[1] / 1024:.0f} MiB "
          f"(+{(peaks[1] - peaks[0]) / 1024:.0f} MiB over importing the compiler)")


def host_memory(capacity: int) -> None:
    print("== table manager with every process on this host ==")
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    infos = [i for i in (capture(p) for p in pids) if i is not None and not i.kernel_thread]
    before = rss_kib()
    writer = NullMaps()
    with tempfile.TemporaryDirectory() as tmp:
        mgr = TableManager(writer, TableCache(tmp), capacity)
        t = time.perf_counter()
        for info in infos:
            mgr.update_process(info.pid, info.maps)
        mgr.load_pending()
        cold = time.perf_counter() - t
        after = rss_kib()
        loaded = sum(1 for t in mgr.tables.values() if t.state == "loaded")
        print(f"{len(infos)} processes, {len(mgr.tables)} tables ({loaded} loaded), {mgr.store.used} rows; "
              f"cold load {cold:.2f} s")
        print(f"manager RSS growth {(after - before) / 1024:.1f} MiB (process RSS {after / 1024:.1f} MiB)")
        kernel = capacity * UNWIND_ROW.itemsize + len(infos) * (8 + DEFINES["HP_MAX_MAPPINGS"] * MAPPING.itemsize)
        print(f"kernel map memory: unwind_rows {capacity} x {UNWIND_ROW.itemsize} B + proc_maps "
              f"{len(infos)} x {8 + DEFINES['HP_MAX_MAPPINGS'] * MAPPING.itemsize} B = {kernel / 2**20:.1f} MiB "
              f"(rows in use {mgr.store.used * UNWIND_ROW.itemsize / 2**20:.1f} MiB)")
        print(f"stats: {dict(mgr.stats)}")
        again = TableManager(NullMaps(), TableCache(tmp), capacity)
        t = time.perf_counter()
        for info in infos:
            again.update_process(info.pid, info.maps)
        again.load_pending()
        print(f"restart with the disk cache: {time.perf_counter() - t:.2f} s (x{(time.perf_counter() - t) / cold:.2f} "
              f"of cold); {dict(again.stats)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--capacity", type=int, default=4_000_000, help="row store capacity (rows)")
    ap.add_argument("--large", default="/usr/lib/x86_64-linux-gnu/libLLVM-14.so.1",
                    help="a large library for the compile's peak memory (BCC's LLVM: the agent's loader maps it)")
    args = ap.parse_args()
    compile_times(args.rounds)
    if os.path.exists(args.large) and os.path.exists("/usr/bin/time"):
        peak_compile_memory(args.large)
    host_memory(args.capacity)


if __name__ == "__main__":
    main()
