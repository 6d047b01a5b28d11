"""The table unwinder on the real kernel (issue 14): code without frame pointers, a stripped distro
binary, off-CPU attribution through glibc's wrappers, CPython, and bad input (real BPF)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.batch import build_batch
from profiler.model import FrameKind, Sample
from tests.conftest import require

pytestmark = pytest.mark.timeout(600)
HZ = 99


class Session:
    """One loaded BPF program set with the table unwinder (99 Hz, off-CPU on)."""

    def __init__(self, cache_dir: Path, **kw) -> None:
        from collector.bpf_loader import UnwindSizes
        from collector.bpf_source import BccSource
        from collector.processes import ProcessTracker
        from collector.symbolize.symbolizer import Symbolizer

        self.sym = Symbolizer(None)  # type: ignore[arg-type]
        self.tracker = ProcessTracker()  # warmed lazily: only this run's workloads get symbolized
        self.sym.tracker = self.tracker
        self.tracker.start()
        # Tables only for this test's own workloads: the other tenants of a shared CI host would
        # otherwise all ask at once, and the tests would time the host, not the unwinder.
        kw.setdefault("unwind", UnwindSizes())
        self.source = BccSource(frequency=HZ, offcpu=True, min_block_ns=1_000_000,
                                unwind_cache_dir=str(cache_dir), unwind_admit=_my_child, **kw)
        self.source.follow(self.tracker)
        self.counters: Counter[str] = Counter()
        self.latencies: list[float] = []  # process start -> its tables loaded
        self.mine: set[int] = set()  # this run's workloads

    def batch(self):
        # Only this run's workloads are symbolized: the other tenants of a shared host would make
        # each drain cost seconds (their complete stacks reach deep into big libraries).
        drain = self.source.drain()
        for c in drain.cpu + drain.offcpu:
            if c.tgid not in self.mine and _my_child(c.tgid):
                self.mine.add(c.tgid)  # remembered: its last spans may be drained after it exits
        drain.cpu = [c for c in drain.cpu if c.tgid in self.mine]
        drain.offcpu = [c for c in drain.offcpu if c.tgid in self.mine]
        batch = build_batch(drain, self.sym, HZ, True)
        self.counters.update(batch.cpu.counters)
        return batch

    def start(self, cmd: list[str], **kw) -> subprocess.Popen:
        """Start a workload and wait until the unwinder has its tables (it asks at its first
        sample); what was sampled before is drained away."""
        proc = subprocess.Popen(cmd, **kw)
        self.mine.add(proc.pid)
        t0 = time.monotonic()
        assert self.source.unwinder.wait_loaded(proc.pid, 90), "tables not loaded within 90 s"
        self.latencies.append(time.monotonic() - t0)
        self.batch()
        return proc

    def collect(self, seconds: float, proc: subprocess.Popen | None = None) -> tuple[list[Sample], list[Sample]]:
        cpu: list[Sample] = []
        off: list[Sample] = []
        end = time.monotonic() + seconds
        while True:
            time.sleep(max(0.0, min(2.0, end - time.monotonic())))
            batch = self.batch()
            cpu += batch.cpu.samples
            off += batch.offcpu.samples if batch.offcpu else []
            if time.monotonic() >= end or (proc is not None and proc.poll() is not None):
                return cpu, off

    def close(self) -> None:
        self.tracker.stop()
        self.source.close()


@pytest.fixture(scope="session")
def unwind_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("unwind-tables")


@pytest.fixture(scope="module")
def session(bpf_ready: None, unwind_cache: Path) -> Iterator[Session]:
    s = Session(unwind_cache)
    yield s
    s.close()


def _my_child(pid: int) -> bool:
    """A process this test run started (its parent is this process)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False


def _of(samples: list[Sample], pid: int) -> list[Sample]:
    return [s for s in samples if s.label("pid") == str(pid)]


def _names(sample: Sample) -> list[str]:
    return [f.function for f in sample.stack]


def _user(sample: Sample) -> list:
    return [f for f in sample.stack if f.kind != FrameKind.KERNEL]


def _weights(samples, n: int = 6) -> list:
    """The heaviest stacks (root first, user frames and placeholders), for failure messages."""
    out: Counter[tuple[str, ...]] = Counter()
    for s in samples:
        out[tuple(f.function for f in _user(s))] += s.values[0]
    return out.most_common(n)


def _share(samples: list[Sample], pred) -> float:
    total = sum(s.values[0] for s in samples)
    return sum(s.values[0] for s in samples if pred(s)) / total if total else 0.0


def test_no_frame_pointer_split_matches_truth_and_reaches_main(session: Session, build) -> None:
    exe = build("cpu_split", nofp=True)
    proc = session.start([str(exe), "40"])
    cpu, _ = session.collect(30, proc)
    proc.kill()
    proc.wait()
    mine = _of(cpu, proc.pid)
    total = sum(s.values[0] for s in mine)
    assert total > 300, f"too few samples of the workload: {total}"
    for path, truth in (("path_a", 0.5), ("path_b", 0.3), ("path_c", 0.2)):
        share = _share(mine, lambda s, p=path: p in _names(s))
        assert abs(share - truth) <= 0.03, (path, share, total, _weights(mine, 8))
    reach = _share(mine, lambda s: "main" in _names(s))
    assert reach >= 0.95, (reach, _weights(s for s in mine if "main" not in _names(s)))


def test_stripped_distro_binary_reaches_libc_start_main(session: Session) -> None:
    xz = shutil.which("xz")
    require(xz is not None, "xz (Debian's xz-utils) as the stripped distro binary")
    with open("/dev/urandom", "rb") as random:  # incompressible and endless
        proc = session.start([xz, "-9", "-T1", "-c"], stdin=random, stdout=subprocess.DEVNULL)
    cpu, _ = session.collect(12, proc)
    proc.kill()
    proc.wait()
    mine = _of(cpu, proc.pid)
    total = sum(s.values[0] for s in mine)
    assert total > 50, total
    reach = _share(mine, lambda s: "__libc_start_main" in _names(s))
    assert reach >= 0.95, (reach, _weights(s for s in mine if "__libc_start_main" not in _names(s)),
                           {k: v for k, v in session.counters.items() if k.startswith(("unwind_end", "missed"))})
    # No garbage: every user frame is inside a mapping (named or binary+offset), no [unknown].
    unknown = [s for s in mine if any(f.function == "[unknown]" for f in _user(s))]
    assert not unknown, [_names(s) for s in unknown[:3]]


@pytest.mark.parametrize("nofp", [False, True], ids=["fp", "nofp"])
def test_offcpu_lands_on_the_function_under_the_glibc_wrapper(session: Session, build, nofp: bool) -> None:
    exe = build("offcpu_glibc", nofp=nofp)
    proc = session.start([str(exe), "4", "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    _, off = session.collect(10, proc)
    out = proc.communicate()[0]
    session.batch()
    truth = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()}
    mine = _of(off, proc.pid)
    for func in ("nap", "await_input", "pause_writes"):
        samples = [s for s in mine if func in _names(s)]
        got = sum(s.values[0] for s in samples)
        assert abs(got - truth[func]) <= 0.10 * truth[func], (func, got, truth[func])
        for s in samples:
            user = _user(s)  # root first
            i = [f.function for f in user].index(func)
            below = user[i + 1:]
            assert below and all("libc.so" in f.binary for f in below), (func, [f.function for f in user])


def test_cpython_without_frame_pointers_reaches_main(session: Session, tmp_path: Path) -> None:
    python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    require(python.exists(), f"the pyenv CPython at {python}")
    script = tmp_path / "busy.py"
    script.write_text("import time\nend = time.monotonic() + 30\n"
                      "def work(n):\n    return sum(i * i for i in range(n))\n"
                      "while time.monotonic() < end:\n    work(50000)\n")
    proc = session.start([str(python), str(script)])
    cpu, _ = session.collect(8, proc)
    proc.kill()
    proc.wait()
    mine = _of(cpu, proc.pid)
    total = sum(s.values[0] for s in mine)
    assert total > 100, total
    reach = _share(mine, lambda s: "main" in _names(s) or "Py_BytesMain" in _names(s))
    assert reach >= 0.95, (reach, _weights(s for s in mine if "Py_BytesMain" not in _names(s)))


def test_deleted_binary_and_corrupt_eh_frame(session: Session, build, tmp_path: Path) -> None:
    """A binary deleted after exec still unwinds (its table comes from /proc/PID/map_files); one
    whose .eh_frame is corrupt ends with a counted reason and keeps its frames."""
    deleted = tmp_path / "deleted"
    shutil.copy(build("cpu_split", nofp=True), deleted)
    corrupt = tmp_path / "corrupt"
    shutil.copy(build("cpu_split", nofp=True), corrupt)
    out = subprocess.run(["readelf", "-SW", str(corrupt)], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if " .eh_frame " in x)
    fields = line.split("]", 1)[1].split()
    offset, size = int(fields[3], 16), int(fields[4], 16)
    blob = bytearray(corrupt.read_bytes())
    # Truncated after its first FDE (crt1's _start): a zero length ends the section there, so
    # the program's own functions have no CFI left.
    cie_len = int.from_bytes(blob[offset:offset + 4], "little")
    fde = offset + 4 + cie_len
    keep = fde + 4 + int.from_bytes(blob[fde:fde + 4], "little")
    blob[keep:offset + size] = bytes(offset + size - keep)
    # A new build ID too: tables are cached by build ID, and this file is not the one compiled.
    note = next(x for x in out.splitlines() if " .note.gnu.build-id " in x).split("]", 1)[1].split()
    note_end = int(note[3], 16) + int(note[4], 16)
    blob[note_end - 4:note_end] = bytes(b ^ 0xFF for b in blob[note_end - 4:note_end])
    corrupt.write_bytes(bytes(blob))
    procs = [subprocess.Popen([str(deleted), "30"]), subprocess.Popen([str(corrupt), "30"])]
    time.sleep(0.3)
    deleted.unlink()
    try:
        for p in procs:
            assert session.source.unwinder.wait_loaded(p.pid, 90)
        session.batch()
        before = dict(session.counters)
        cpu, _ = session.collect(6)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    good = _of(cpu, procs[0].pid)
    assert good and _share(good, lambda s: "main" in _names(s)) >= 0.95
    bad = _of(cpu, procs[1].pid)
    assert bad
    placeholders = Counter(f.function for s in bad for f in s.stack if f.function.startswith("[unwind:"))
    assert placeholders, "the corrupt table's walks must end with a named reason"
    assert any(s.stack[-1].function == "spin" for s in bad)  # frames before the stop are kept
    ends = {k: v - before.get(k, 0) for k, v in session.counters.items()
            if k.startswith("unwind_end_") and k != "unwind_end_ok"}
    assert sum(ends.values()) > 0, ends
    session.batch()  # and the agent's drain keeps working


def test_mapping_table_full_is_counted(bpf_ready: None, unwind_cache: Path, build) -> None:
    """With room for one process table, the others are counted and keep a frame-pointer stack with
    a placeholder naming why."""
    from collector.bpf_loader import UnwindSizes

    s = Session(unwind_cache, unwind=UnwindSizes(rows=1 << 20, procs=1))
    try:
        exe = build("cpu_split", nofp=True)
        procs = [subprocess.Popen([str(exe), "20"]) for _ in range(3)]
        time.sleep(3)
        cpu, _ = s.collect(4)
        for p in procs:
            p.kill()
            p.wait()
        assert s.counters.get("unwind_procs_table_full", 0) > 0, dict(s.counters)
        names = Counter(f.function for smp in cpu for f in smp.stack)
        assert names["[unwind: process not registered yet, frame pointers]"] > 0
        assert s.counters.get("unwind_end_no_proc", 0) > 0
    finally:
        s.close()


def test_code_unmapped_mid_run_ends_with_a_reason(session: Session, tmp_path: Path) -> None:
    """A library loaded and unloaded over and over: walks through code the tables no longer (or
    not yet) know end with a counted reason and keep their frames; nothing is silently cut."""
    from tests.collector.conftest import NOFP_CFLAGS, WORKLOADS

    lib = tmp_path / "libunmap.so"
    exe = tmp_path / "unmapper"
    subprocess.run(["gcc", *NOFP_CFLAGS, "-shared", "-fPIC", "-o", str(lib), str(WORKLOADS / "unmap_lib.c")],
                   check=True)
    subprocess.run(["gcc", *NOFP_CFLAGS, "-o", str(exe), str(WORKLOADS / "unmapper.c"), "-ldl"], check=True)
    proc = session.start([str(exe), "12", str(lib)])
    cpu, _ = session.collect(6, proc)
    proc.kill()
    proc.wait()
    mine = _of(cpu, proc.pid)
    assert sum(s.values[0] for s in mine) > 50
    for s in mine:
        names = _names(s)
        assert "main" in names or any(n.startswith("[unwind:") for n in names), names
    session.batch()
