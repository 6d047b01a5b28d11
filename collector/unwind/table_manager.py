"""The user-space side of loading unwind tables: which table each process's code needs, where it lives
in the shared row array, and what the BPF maps must say (`proc_maps` entries per tgid).

A table (one per build ID or file identity) is compiled or read from the disk cache once, however
many processes map it; its run in the row store is reference-counted by the processes using it and
freed when the last one exits or unmaps it. Until a table is loaded its mappings say HP_MAP_PENDING
(the walk ends honestly); code with no CFI at all (JIT, anonymous executable memory, files without
.eh_frame) says HP_MAP_FP. The BPF maps are written through `UnwindMapsWriter`, so all of this runs
against a fake in unit tests and against the real maps in the agent.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from collector.bpf_abi import DEFINES, MAPPING
from collector.symbolize.procmaps import PROC, Mapping, ProcessInfo
from collector.unwind.compiler import UnwindTable, compile_bytes, compile_file
from collector.unwind.elf_image import (
    FileUnreadable,
    UnwindCompileError,
    offset_to_vaddr,
    read_build_id,
    read_image,
)
from collector.unwind.row_store import RowStore
from collector.unwind.table_cache import TableCache, TableKey
from collector.unwind.vdso import read_vdso

MAP_FP = DEFINES["HP_MAP_FP"]
MAP_PENDING = DEFINES["HP_MAP_PENDING"]
IDENTITY_MEMO_MAX = 65536
VDSO_SOURCE = "[vdso]"  # a table source read from this process's memory, not a path


class UnwindMapsWriter(Protocol):
    """Where the manager's decisions go: the BPF maps `unwind_rows` and `proc_maps`."""

    def write_rows(self, first: int, rows: np.ndarray) -> None: ...

    def set_process(self, tgid: int, mappings: np.ndarray) -> bool | None:
        """False when the process table is full (the writer counts it); anything else is success."""

    def delete_process(self, tgid: int) -> None: ...


PENDING, LOADING, LOADED, NO_CFI, NO_ROOM, FAILED = "pending", "loading", "loaded", "no_cfi", "no_room", "failed"


@dataclass(slots=True)
class _Table:
    key: TableKey
    sources: list[str]  # paths that open the file (map_files of a process, its root + path)
    state: str = PENDING
    first: int = 0
    count: int = 0
    segments: list[tuple[int, int, int]] = field(default_factory=list)
    users: set[int] = field(default_factory=set)

    def vaddr(self, file_offset: int) -> int | None:
        return offset_to_vaddr(self.segments, file_offset)


@dataclass(slots=True)
class _Proc:
    maps: list[tuple[Mapping, _Table | None]]  # None: no table can exist (JIT, anonymous)
    written: bool = False  # the writer holds an entry for it (set_process did not refuse)


class TableManager:
    """Tables for live processes in a row store of `capacity_rows` rows, mirrored through `writer`."""

    def __init__(self, writer: UnwindMapsWriter, cache: TableCache, capacity_rows: int, *,
                 max_mappings: int = DEFINES["HP_MAX_MAPPINGS"], proc: Path = PROC,
                 compile_table: Callable[[str], UnwindTable] = compile_file,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.writer = writer
        self.cache = cache
        self.store = RowStore(capacity_rows)
        self.max_mappings = max_mappings
        self.proc = proc
        self.compile_table = compile_table
        self.clock = clock
        self.tables: dict[TableKey, _Table] = {}
        self.procs: dict[int, _Proc] = {}
        self._identity: dict[tuple[int, int, int, int], TableKey] = {}
        self._queue: deque[_Table] = deque()
        self.stats: Counter[str] = Counter()
        self.cfi_counts: Counter[str] = Counter()  # compiler reasons summed over loaded tables
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._vdso_key: TableKey | None = None

    # -- processes ---------------------------------------------------------------------------

    def update_process(self, pid: int, maps: Iterable[Mapping]) -> None:
        """Take `pid`'s current executable mappings (a new process, exec, dlopen, munmap)."""
        with self._lock:
            queued = len(self._queue)
            self._update_process(pid, maps)
            if len(self._queue) > queued:
                self._wake.set()

    def _update_process(self, pid: int, maps: Iterable[Mapping]) -> None:
        old = self.procs.get(pid)
        entries: list[tuple[Mapping, _Table | None]] = []
        for m in sorted(maps, key=lambda m: m.start):
            if len(entries) >= self.max_mappings:
                self.stats["mappings_over_limit"] += 1
                break
            entries.append((m, self._table_for(pid, m)))
        for _, table in entries:
            if table is not None:
                table.users.add(pid)
        self.procs[pid] = _Proc(entries, old.written if old is not None else False)
        if old is not None:
            self._release(pid, {id(t) for _, t in entries if t is not None}, old)
        self._write_process(pid)

    def remove_process(self, pid: int) -> None:
        """`pid` exited: drop its entry and every table no other process uses."""
        with self._lock:
            old = self.procs.pop(pid, None)
            if old is None:
                return
            if old.written:
                self.writer.delete_process(pid)
            self._release(pid, set(), old)

    def retain(self, live: Iterable[int]) -> None:
        """Remove every process not in `live`."""
        keep = set(live)
        with self._lock:
            gone = [p for p in self.procs if p not in keep]
        for pid in gone:
            self.remove_process(pid)

    def mappings(self, pid: int) -> np.ndarray:
        """`pid`'s `proc_maps` entries as they are (or would be) written."""
        with self._lock:
            return self._mappings(pid)

    def _mappings(self, pid: int) -> np.ndarray:
        proc = self.procs.get(pid)
        out = np.zeros(len(proc.maps) if proc else 0, dtype=MAPPING)
        for i, (m, table) in enumerate(proc.maps if proc else []):
            out[i]["start"], out[i]["end"] = m.start, m.end
            if table is None or table.state == NO_CFI:
                out[i]["table_first"] = MAP_FP
            elif table.state != LOADED:
                out[i]["table_first"] = MAP_PENDING
            else:
                vaddr = table.vaddr(m.offset)
                if vaddr is None:  # the mapped offset is in no PT_LOAD segment: not the file we read
                    out[i]["table_first"] = MAP_PENDING
                    continue
                out[i]["bias"] = (m.start - vaddr) & 0xFFFFFFFFFFFFFFFF
                out[i]["table_first"], out[i]["table_count"] = table.first, table.count
        return out

    def _write_process(self, pid: int) -> None:
        ok = self.writer.set_process(pid, self._mappings(pid))
        self.procs[pid].written = self.procs[pid].written or ok is not False

    def _release(self, pid: int, still_used: set[int], old: _Proc) -> None:
        for _, table in old.maps:
            if table is None or id(table) in still_used or pid not in table.users:
                continue
            table.users.discard(pid)
            if not table.users:
                self._evict(table)

    def _evict(self, table: _Table) -> None:
        self.tables.pop(table.key, None)
        if table.state == LOADED:
            self.store.release(table.first, table.count)
            self.stats["tables_evicted"] += 1
            self._requeue_no_room()

    def _requeue_no_room(self) -> None:
        for table in self.tables.values():
            if table.state == NO_ROOM:
                table.state = PENDING
                self._queue.append(table)
                self._wake.set()

    # -- tables ------------------------------------------------------------------------------

    def _table_for(self, pid: int, m: Mapping) -> _Table | None:
        path = m.clean_path
        if path == "[vdso]":
            return self._vdso_table()
        if m.inode == 0 or not path.startswith("/"):  # anonymous, JIT, [vsyscall]
            self.stats["mappings_without_file"] += 1
            return None
        sources = [f"{self.proc}/{pid}/map_files/{m.start:x}-{m.end:x}", f"{self.proc}/{pid}/root{path}"]
        key = None
        for src in sources:
            try:
                st = os.stat(src)
            except OSError:
                continue
            ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            key = self._identity.get(ident)
            if key is None:
                key = self._key_of(src, st)
                if key is None:
                    continue
                if len(self._identity) >= IDENTITY_MEMO_MAX:  # files of long-gone processes
                    self._identity = {i: k for i, k in self._identity.items() if k in self.tables}
                self._identity[ident] = key
            break
        if key is None:
            self.stats["mappings_unreadable"] += 1
            return None
        table = self.tables.get(key)
        if table is None:
            table = self.tables[key] = _Table(key, sources)
            self._queue.append(table)
        elif table.state == PENDING and sources[0] not in table.sources:
            table.sources = sources + table.sources[:6]  # the newest process is the likeliest alive
        return table

    def _vdso_table(self) -> _Table | None:
        """The one vDSO table (every 64-bit process maps the same image), keyed by its build ID."""
        if self._vdso_key is None:
            blob = read_vdso(self.proc)
            build_id = ""
            if blob is not None:
                try:
                    build_id = read_build_id(io.BytesIO(blob))
                except UnwindCompileError:
                    build_id = ""
            self._vdso_key = TableKey.for_build_id(build_id) if build_id else TableKey("")
        if not self._vdso_key.name:
            self.stats["mappings_without_file"] += 1
            return None
        table = self.tables.get(self._vdso_key)
        if table is None:
            table = self.tables[self._vdso_key] = _Table(self._vdso_key, [VDSO_SOURCE])
            self._queue.append(table)
        return table

    def _key_of(self, src: str, st: os.stat_result) -> TableKey | None:
        try:
            with open(src, "rb") as fh:
                build_id = read_build_id(fh)
                if build_id:
                    return TableKey.for_build_id(build_id)
                return TableKey.for_content(read_image(fh))
        except OSError:
            return None
        except UnwindCompileError:
            return TableKey.for_file(st)

    def prioritize(self, pid: int) -> int:
        """Load `pid`'s pending tables first (its stacks ended with HP_END_PENDING: it is being
        sampled now). Returns how many were moved to the front."""
        with self._lock:
            proc = self.procs.get(pid)
            if proc is None:
                return 0
            mine = {id(t) for _, t in proc.maps if t is not None and t.state == PENDING}
            if not mine:
                return 0
            front = [t for t in self._queue if id(t) in mine]
            rest = [t for t in self._queue if id(t) not in mine]
            self._queue = deque(front + rest)
            self._wake.set()
            return len(front)

    def loaded(self, pid: int) -> bool:
        """Whether `pid` is registered and none of its tables waits to load."""
        with self._lock:
            proc = self.procs.get(pid)
            return proc is not None and all(t is None or t.state != PENDING for _, t in proc.maps)

    def pending(self) -> int:
        with self._lock:
            return sum(1 for t in self._queue if t.state == PENDING and self.tables.get(t.key) is t)

    def load_pending(self, budget_s: float | None = None) -> int:
        """Load queued tables (disk cache, else compile) until the queue or `budget_s` runs out,
        and rewrite the processes whose entries changed. Compiling runs outside the lock, so
        process updates are never held up by it. Returns the tables that changed state."""
        deadline = None if budget_s is None else self.clock() + budget_s
        done = 0
        while deadline is None or self.clock() < deadline:
            with self._lock:
                table = None
                while self._queue and table is None:
                    t = self._queue.popleft()
                    if t.state == PENDING and self.tables.get(t.key) is t:
                        table = t
                if table is None:
                    break
                table.state = LOADING
                sources = list(table.sources)
            compiled, failure = self._obtain(table.key, sources)
            with self._lock:
                self._install(table, compiled, failure)
                for pid in list(table.users):
                    if pid in self.procs:
                        self._write_process(pid)
            done += 1
        return done

    def _obtain(self, key: TableKey, sources: list[str]) -> tuple[UnwindTable | None, str]:
        compiled = self.cache.load(key)
        if compiled is not None:
            return compiled, ""
        for src in sources:
            try:
                if src == VDSO_SOURCE:
                    blob = read_vdso(self.proc)
                    if blob is None:
                        continue
                    compiled = compile_bytes(blob)
                else:
                    compiled = self.compile_table(src)
            except FileUnreadable:
                continue
            except UnwindCompileError:
                return None, "tables_failed"
            self.cache.store(key, compiled)
            return compiled, "tables_compiled"
        return None, "tables_unreadable"

    def _install(self, table: _Table, compiled: UnwindTable | None, outcome: str) -> None:
        """Under the lock: put a loaded table into the row store (when it is still wanted)."""
        if outcome:
            self.stats[outcome] += 1
        elif compiled is not None:
            self.stats["tables_from_cache"] += 1
        if compiled is None:
            table.state = FAILED
            return
        if self.tables.get(table.key) is not table:  # every user left while it compiled
            return
        table.segments = list(compiled.segments)
        self.cfi_counts.update(compiled.counts)
        if len(compiled.rows) == 0:
            table.state = NO_CFI
            return
        first = self.store.alloc(len(compiled.rows))
        if first is None:
            self.stats["tables_no_room"] += 1
            self.stats["rows_no_room"] += len(compiled.rows)
            if self.store.free >= len(compiled.rows):  # enough rows free, but in no single run
                self.stats["tables_no_room_fragmented"] += 1
            table.state = NO_ROOM
            return
        self.writer.write_rows(first, compiled.rows)
        table.first, table.count, table.state = first, len(compiled.rows), LOADED
        self.stats["tables_loaded"] += 1

    # -- as a ProcessTracker listener, with a loader thread -----------------------------------

    def update(self, info: ProcessInfo) -> None:
        """A new or changed process capture (ProcessTracker's on_capture): registers its
        mappings now (cheap); the loader thread compiles what it needs."""
        if not info.kernel_thread:
            self.update_process(info.pid, info.maps)

    def forget(self, pid: int) -> None:
        """ProcessTracker's on_forget."""
        self.remove_process(pid)

    def start(self) -> None:
        """Load tables in a background thread as processes bring new ones."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="unwind-tables", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if not self._stopping.is_set():
                self.load_pending()

    def counters(self) -> dict[str, int]:
        """The manager's and the compiler's counts, named for a batch's counters."""
        with self._lock:
            out = {f"unwind_{k}": v for k, v in self.stats.items() if v}
            out.update({f"unwind_cfi_{k}": v for k, v in self.cfi_counts.items() if v and k != "fdes"})
            out["unwind_rows_used"] = self.store.used
            out["unwind_tables"] = len(self.tables)
        return out
