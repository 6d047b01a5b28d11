"""PythonSupport's poll with fake queue and stack maps: exec announcements register a real CPython
process, unknown-thread announcements refresh it, new-stack announcements name its code objects."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

from collector.bpf_abi import PY_NEW
from collector.python.support import PythonSupport
from tests.collector.python.conftest import CHAIN
from tests.conftest import require


class FakeMap:
    """A dict-backed stand-in for BpfMap: hash maps by key, queues by pop order."""

    def __init__(self, queue: list[bytes] | None = None) -> None:
        self.items: dict[bytes, bytes] = {}
        self.queue = queue if queue is not None else []

    def pop(self) -> bytes | None:
        return self.queue.pop(0) if self.queue else None

    def lookup(self, key: bytes) -> bytes | None:
        return self.items.get(key)

    def update(self, key: bytes, value: bytes) -> None:
        self.items[key] = value

    def delete(self, key: bytes) -> bool:
        return self.items.pop(key, None) is not None

    def close(self) -> None:
        pass


def test_poll_registers_refreshes_and_names(python: Path) -> None:
    require(os.geteuid() == 0, "root")
    maps = {n: FakeMap() for n in ("py_procs", "py_threads", "py_new", "py_execs", "stacks0", "stacks1")}
    now = [100.0]
    support = PythonSupport(maps, clock=lambda: now[0])  # type: ignore[arg-type]
    proc = subprocess.Popen([str(python), str(CHAIN)], stdout=subprocess.PIPE, text=True)
    try:
        main_tid = int(proc.stdout.readline().split()[1])  # type: ignore[union-attr]
        maps["py_execs"].queue.append(struct.pack("<I", proc.pid))
        support.poll_once()  # examined at once (EXEC_CHECKS_S[0] == 0)
        assert struct.pack("<I", proc.pid) in maps["py_procs"].items
        tids = {struct.unpack("<I", k)[0] for k in maps["py_threads"].items}
        assert main_tid in tids and len(tids) == 2
        # BPF saw a thread it did not know: the process's thread list is read again.
        del maps["py_threads"].items[struct.pack("<I", main_tid)]
        maps["py_execs"].queue.append(struct.pack("<I", proc.pid))
        support.poll_once()
        assert struct.pack("<I", main_tid) in maps["py_threads"].items
        # A new stack (the user-space reader's record, as BPF would store it) is named at once.
        from collector.python.frames import read_frames

        entry = support.procs.get(proc.pid)
        refs, _ = read_frames(entry.mem, entry.interp.layout, entry.tstates[main_tid])  # type: ignore[union-attr]
        words = []
        for r in refs:
            words += [r.code, r.stamp << 32 | int(r.is_entry) << 31 | (r.lasti & 0x7FFFFFFF)]
        maps["stacks1"].items[struct.pack("<Q", 77)] = struct.pack(f"<Q{len(words)}Q", len(words), *words)
        maps["py_new"].queue.append(PY_NEW.pack(77, proc.pid, 1))
        support.poll_once()
        assert support.announced == 1 and len(support.stacks.namer.codes) == len(refs)
        counters: dict[str, int] = {}
        support.take_counters(counters)
        assert counters == {"python_processes": 1}
        support.take_counters(counters)
        assert counters == {"python_processes": 1}  # taken once
    finally:
        proc.kill()
        proc.wait()


def test_bpfmap_pop_on_a_real_queue(bpf_ready: None) -> None:
    from collector.bpf_loader import import_bcc
    from collector.bpfmaps import BpfMap, possible_cpus

    bcc = import_bcc()
    bpf = bcc.BPF(text=b"BPF_QUEUE(q, u32, 8);\nint hp_queue_probe(void *ctx) { return 0; }\n")
    try:
        table = bpf[b"q"]
        for v in (7, 8, 9):
            table.push(table.Leaf(v))
        queue = BpfMap(os.dup(table.map_fd), "q", possible_cpus())
        got = [queue.pop() for _ in range(4)]
        queue.close()
        assert got == [struct.pack("<I", 7), struct.pack("<I", 8), struct.pack("<I", 9), None]
    finally:
        bpf.cleanup()
