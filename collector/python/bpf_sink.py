"""PythonProcesses' sink into the BPF maps `py_procs` (tgid -> layout) and `py_threads`
(tid -> PyThreadState address)."""

from __future__ import annotations

import struct

from collector.bpfmaps import BpfError, BpfMap
from collector.python.bpf_record import LayoutTooWide, py_proc_value
from collector.python.detect import Interpreter

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class BpfSink:
    """Writes what the walk needs; failures (a full map) are counted, never raised into the poll."""

    def __init__(self, procs: BpfMap, threads: BpfMap) -> None:
        self.procs = procs
        self.threads = threads
        self.counters: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def set_process(self, interp: Interpreter) -> None:
        try:
            self.procs.update(_U32.pack(interp.pid), py_proc_value(interp.layout))
        except LayoutTooWide:
            self._count("python_layout_too_wide")
        except BpfError:
            self._count("python_procs_map_full")

    def set_threads(self, pid: int, added: dict[int, int], removed: list[int]) -> None:
        for tid in removed:
            self.threads.delete(_U32.pack(tid))
        for tid, tstate in added.items():
            try:
                self.threads.update(_U32.pack(tid), _U64.pack(tstate))
            except BpfError:
                self._count("python_threads_map_full")

    def drop_process(self, pid: int, tids: list[int]) -> None:
        self.procs.delete(_U32.pack(pid))
        for tid in tids:
            self.threads.delete(_U32.pack(tid))
