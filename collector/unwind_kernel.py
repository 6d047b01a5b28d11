"""The table unwinder's kernel side as user space writes it: rows into `unwind_rows`, each
process's mapping table into `proc_maps` (layouts in bpf/hp_unwind.h, via collector/bpf_abi.py).

`KernelTables` is the writer the table manager (collector/unwind/table_manager.py) is given;
`ManagedTables` feeds the manager the tracker's processes and loads tables on its own thread.
What does not fit (a full process table, mappings beyond HP_MAX_MAPPINGS, rows past the array) is
counted.
"""

from __future__ import annotations

import errno
import logging
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from collector.bpf_abi import DEFINES, HP_PROC_MAPS_SIZE, MAPPING, UNWIND_ROW
from collector.bpfmaps import BpfError, BpfMap
from collector.symbolize.procmaps import ProcessInfo

log = logging.getLogger("hotpath.collector.unwind")
MAX_MAPPINGS = DEFINES["HP_MAX_MAPPINGS"]
GAUGES = ("unwind_rows_used", "unwind_tables")
ROWS_PER_CALL = 65536  # one update_batch call's rows (768 KiB of values)


def proc_maps_value(mappings: np.ndarray) -> bytes:
    """A `struct hp_proc_maps` value: mappings sorted by start, at most HP_MAX_MAPPINGS."""
    n = min(len(mappings), MAX_MAPPINGS)
    body = np.zeros(MAX_MAPPINGS, dtype=MAPPING)
    body[:n] = np.sort(mappings, order="start")[:n]
    return struct.pack("<II", n, 0) + body.tobytes()


class KernelTables:
    """Writes rows and mapping tables into the loaded maps; thread-safe (one lock: the maps'
    syscall buffers are shared)."""

    def __init__(self, rows: BpfMap, procs: BpfMap) -> None:
        if rows.value_size != UNWIND_ROW.itemsize or procs.value_size != HP_PROC_MAPS_SIZE:
            raise ValueError(f"unwinder maps have value sizes {rows.value_size}/{procs.value_size}, "
                             f"collector/bpf_abi.py says {UNWIND_ROW.itemsize}/{HP_PROC_MAPS_SIZE}")
        self.rows = rows
        self.procs = procs
        self.row_capacity = rows.max_entries
        self.proc_capacity = procs.max_entries
        self.counters: Counter[str] = Counter()
        self.registered: set[int] = set()
        self._lock = threading.Lock()

    def write_rows(self, first: int, rows: np.ndarray) -> None:
        """Rows [first, first + len(rows)) of `unwind_rows`; a run past the array is an error
        (the manager sizes its allocations by `row_capacity`)."""
        rows = np.ascontiguousarray(rows, dtype=UNWIND_ROW)
        if first < 0 or first + len(rows) > self.row_capacity:
            raise ValueError(f"rows [{first}, {first + len(rows)}) outside unwind_rows ({self.row_capacity})")
        with self._lock:
            for at in range(0, len(rows), ROWS_PER_CALL):
                part = rows[at:at + ROWS_PER_CALL]
                keys = np.arange(first + at, first + at + len(part), dtype="<u4")
                self.rows.update_batch(keys.tobytes(), part.tobytes(), len(part))

    def set_process(self, tgid: int, mappings: np.ndarray) -> bool:
        """A process's mapping table (replaced whole, atomically for the BPF side). False when
        the process table is full (counted: its stacks end with HP_END_NO_PROC)."""
        if len(mappings) > MAX_MAPPINGS:
            self.counters["unwind_mappings_truncated"] += len(mappings) - MAX_MAPPINGS
        value = proc_maps_value(mappings)
        with self._lock:
            try:
                self.procs.update(struct.pack("<I", tgid), value)
            except BpfError as exc:
                if exc.errno in (errno.E2BIG, errno.ENOMEM):
                    self.counters["unwind_procs_table_full"] += 1
                    return False
                raise
            self.registered.add(tgid)
        return True

    def delete_process(self, tgid: int) -> None:
        with self._lock:
            self.procs.delete(struct.pack("<I", tgid))
            self.registered.discard(tgid)


def _start_time(pid: int) -> int:
    """A process's start time (clock ticks after boot; 0 when gone): newer is larger."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


class ManagedTables:
    """Processes that run, through the table manager into the kernel maps; one owner thread.

    Only processes the unwinder met get tables: a walk that finds no `proc_maps` entry for its
    tgid asks for one in `unwind_wanted` (and ends with HP_END_NO_PROC, its leaf kept). This
    thread reads those requests every POLL_S, registers the processes (their mappings from the
    tracker; the newest processes first, a few per step), and loads their tables (disk cache,
    else compiled; a newly registered process's first), re-checking requests between tables; a registered process's new mappings (dlopen, exec) come from the tracker's captures,
    its exit from the tracker's forget. Idle processes on a big host cost nothing. Latency for a
    new process: its first sample, then about POLL_S plus its tables' load (cached: ms; compiled:
    ~0.1 s for libc) until its stacks are complete."""

    POLL_S = 0.2
    LOAD_SLICE_S = 0.05  # per load_pending call (one table at least), then requests again
    REGISTER_PER_STEP = 8

    def __init__(self, kernel: KernelTables, manager: Any, wanted: BpfMap | None,
                 admit: Callable[[int], bool] | None = None) -> None:
        self.kernel = kernel
        self.manager = manager
        self.wanted = wanted
        self.admit = admit  # which requested tgids get tables (None: all; tests narrow it)
        self.tracker: Any = None
        self._lock = threading.Lock()  # guards the inboxes below, never held across work
        self._updates: dict[int, ProcessInfo] = {}
        self._removals: set[int] = set()
        self._backlog: set[int] = set()  # requested tgids not registered yet
        self._counters: dict[str, int] = {}
        self.gauges: dict[str, int] = {}  # levels, not counts: rows in use, tables loaded
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hotpath-unwind-tables", daemon=True)
        self._thread.start()

    def follow(self, tracker: Any) -> None:
        self.tracker = tracker
        tracker.listen(self.update, self.forget)

    def update(self, info: ProcessInfo) -> None:
        """A capture from the tracker: new mappings of a registered process are taken."""
        if not info.kernel_thread and info.pid in self.manager.procs:
            with self._lock:
                self._updates[info.pid] = info

    def forget(self, pid: int) -> None:
        with self._lock:
            self._removals.add(pid)
            self._updates.pop(pid, None)

    def _requests(self) -> list[int]:
        """tgids the BPF walks asked for, removed from the map as read."""
        if self.wanted is None:
            return []
        keys = self.wanted.keys()
        self.wanted.delete_keys(keys)
        return [struct.unpack("<I", k)[0] for k in keys]

    def _step(self) -> bool:
        """Requests, captures and exits taken; one slice of table loading. True if work remains."""
        with self._lock:
            updates, self._updates = self._updates, {}
            removals, self._removals = self._removals, set()
        for pid in removals:
            self.manager.remove_process(pid)
        self._backlog.update(self._requests())
        # Newest processes first, a few per step: at agent start every running process asks at
        # once, and a process started now should not wait behind all of them.
        for pid in sorted(self._backlog, key=_start_time, reverse=True)[:self.REGISTER_PER_STEP]:
            self._backlog.discard(pid)
            if pid in self.manager.procs or pid in updates or self.tracker is None:
                continue
            if self.admit is not None and not self.admit(pid):
                continue
            info = self.tracker.get(pid)
            if info is not None and not info.kernel_thread and info.alive:
                updates[pid] = info
        for pid, info in updates.items():
            self.manager.update_process(pid, info.maps)
        for pid in reversed(updates):  # sampled just now: their tables first, the newest first
            self.manager.prioritize(pid)
        if self.manager.pending():
            self.manager.load_pending(self.LOAD_SLICE_S)
        counters = dict(self.kernel.counters)
        counters.update(self.manager.counters())
        counters.update({f"unwind_cache_{k}": v for k, v in self.manager.cache.stats.items()})
        self.gauges = {k: counters.pop(k) for k in GAUGES if k in counters}
        self._counters = counters
        return bool(self.manager.pending() or self._backlog)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self._step()
            except Exception:  # a process or table that breaks the manager must not stop the rest
                log.exception("unwind table upkeep failed; continuing")
                busy = False
            if not busy:
                self._stop.wait(self.POLL_S)

    def wait_loaded(self, pid: int, timeout_s: float) -> bool:
        """Until `pid` is registered and its tables are loaded (tests, benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while not self.manager.loaded(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def counters(self) -> dict[str, int]:
        """Cumulative counts: the maps writer's, the manager's and its disk cache's."""
        return self._counters

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
