"""Which processes run CPython, and each one's thread id -> thread state map, kept current.

Fed the process snapshots `ProcessTracker` takes (new processes, and young ones whose mappings
still change), it detects interpreters and, at every `refresh`, re-walks each Python process's
thread list, so threads started since are walkable (BPF counts a sample of a thread it does not
know yet). What the BPF side needs goes to a `Sink` (the BPF maps; a dict in tests). Processes
that cannot be walked are remembered with their reason, counted once per process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Protocol

from collector.python.detect import Interpreter, NotWalkable, find_interpreter
from collector.python.procmem import Memory, MemoryReadError, ProcessMemory
from collector.python.threads import thread_states
from collector.symbolize.procmaps import ProcessInfo


class Sink(Protocol):
    """Where the walkable processes and their thread states go (the BPF maps)."""

    def set_process(self, interp: Interpreter) -> None: ...

    def set_threads(self, pid: int, added: dict[int, int], removed: list[int]) -> None: ...

    def drop_process(self, pid: int, tids: list[int]) -> None: ...


@dataclass
class PyProcess:
    interp: Interpreter
    mem: Memory
    tstates: dict[int, int] = field(default_factory=dict)
    alive: bool = True


class PythonProcesses:
    """pid -> PyProcess for every CPython process seen; thread-safe."""

    def __init__(self, sink: Sink | None = None, proc: str = "/proc",
                 open_memory: Callable[[int], Memory] | None = None) -> None:
        self.sink = sink
        self.proc = proc
        self._open = open_memory if open_memory is not None else (lambda pid: ProcessMemory(pid, proc))
        self._lock = threading.Lock()
        self._procs: dict[int, PyProcess] = {}
        self._skipped: dict[int, tuple[tuple, NotWalkable | None]] = {}  # pid -> (maps key, why)
        self.counters: dict[str, int] = {}

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def observe(self, info: ProcessInfo) -> PyProcess | None:
        """A new snapshot of a process: detect (or re-detect after exec) its interpreter."""
        if info.kernel_thread:
            return None
        maps_key = tuple((m.start, m.path) for m in info.maps)
        with self._lock:
            known = self._procs.get(info.pid)
            if known is not None and known.alive and any(
                    m.clean_path == known.interp.path and m.start <= known.interp.eval_start < m.end
                    for m in info.maps):
                return known  # the same interpreter at the same place: no exec since
            skipped = self._skipped.get(info.pid)
            if skipped is not None and skipped[0] == maps_key:
                return None
        try:
            mem = self._open(info.pid)
        except MemoryReadError:
            return None
        found = find_interpreter(info.pid, info.maps, mem, proc=self.proc)
        if not isinstance(found, Interpreter):
            getattr(mem, "close", lambda: None)()
            with self._lock:
                self._skipped[info.pid] = (maps_key, found)
            if found is not None:
                self._count(found.reason)
            return None
        return self.track(found, mem)

    def track(self, interp: Interpreter, mem: Memory) -> PyProcess:
        """Start following a process's interpreter (found by `observe`, or given by a test)."""
        entry = PyProcess(interp, mem)
        with self._lock:
            old = self._procs.get(interp.pid)
            self._procs[interp.pid] = entry
            self._skipped.pop(interp.pid, None)
        if old is not None:
            self._release(interp.pid, old)
        self._count("python_processes")
        if self.sink is not None:
            self.sink.set_process(interp)
        self._refresh_one(interp.pid, entry)
        return entry

    def _refresh_one(self, pid: int, entry: PyProcess, rewrite: bool = False) -> None:
        tstates, why = thread_states(entry.mem, entry.interp)
        if why == "read_fault" and not os.path.exists(f"{self.proc}/{pid}"):
            self.mark_dead(pid)  # exited: its last thread map stays for its final samples
            return
        if why:
            self._count(f"python_threads_{why}")
        added = {tid: ts for tid, ts in tstates.items() if rewrite or entry.tstates.get(tid) != ts}
        removed = [tid for tid in entry.tstates if tid not in tstates]
        if why == "read_fault" and not tstates:
            return  # exiting (or gone): keep the last map for its final samples
        entry.tstates = tstates
        if self.sink is not None and (added or removed):
            self.sink.set_threads(pid, added, removed)

    def refresh(self, pids: set[int] | None = None) -> None:
        """Re-walk the thread lists of live Python processes (all, or those of `pids`: BPF met a
        thread of theirs it did not know, so their whole map is written again, in case an earlier
        write was refused)."""
        with self._lock:
            live = [(pid, e) for pid, e in self._procs.items() if e.alive and (pids is None or pid in pids)]
        for pid, entry in live:
            self._refresh_one(pid, entry, rewrite=pids is not None)

    def get(self, pid: int) -> PyProcess | None:
        with self._lock:
            return self._procs.get(pid)

    def mark_dead(self, pid: int) -> None:
        """The process exited: its names stay cached until `forget`; its memory is closed."""
        with self._lock:
            entry = self._procs.get(pid)
            self._skipped.pop(pid, None)
        if entry is not None and entry.alive:
            entry.alive = False
            getattr(entry.mem, "close", lambda: None)()

    def forget(self, pid: int) -> None:
        with self._lock:
            entry = self._procs.pop(pid, None)
        if entry is not None:
            self._release(pid, entry)

    def _release(self, pid: int, entry: PyProcess) -> None:
        getattr(entry.mem, "close", lambda: None)()
        if self.sink is not None:
            self.sink.drop_process(pid, list(entry.tstates))

    def pids(self) -> list[int]:
        with self._lock:
            return list(self._procs)

    def counts_into(self, counters: MutableMapping[str, int]) -> None:
        for name, n in self.counters.items():
            counters[name] = counters.get(name, 0) + n
