"""CPython support in a running collector: interpreters registered into the BPF maps as processes
appear, thread maps kept current, and new Python stacks named while their process lives.

A poll thread (every ~0.05 s) takes the exec announcements (`py_execs`: a process that exec'd is
examined at once, and again until its dynamic loader mapped libpython) and the new-stack
announcements (`py_new`: each Python stack the first time BPF stored it, whose code objects are read
at once, so a process that exits before the interval ends is still named); every ~0.5 s it
re-walks the thread lists. Processes also come in through `observe` (the /proc poll's captures).
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

from collector.bpf_abi import HP_MAX_DEPTH, PY_NEW
from collector.bpfmaps import BpfError, BpfMap
from collector.python.bpf_sink import BpfSink
from collector.python.stacks import PythonStacks
from collector.python.tracker import PythonProcesses
from collector.symbolize.procmaps import ProcessInfo, capture

if TYPE_CHECKING:
    from collector.bpf_source import BccSource
    from collector.processes import ProcessTracker

log = logging.getLogger(__name__)
# After an exec: when to look for an interpreter. At once finds an executable that is the
# interpreter (Debian's); libpython is mapped by the dynamic loader a few ms later.
EXEC_CHECKS_S = (0.0, 0.03, 0.3)
REFRESH_S = 0.5
MAX_POPS = 4096  # announcements taken per poll (the queues hold HP_PY_NEW)
ANNOUNCE_BUDGET_S = 0.03  # time per poll for naming announced stacks


class PythonSupport:
    """Owns PythonProcesses (into the BPF maps) and PythonStacks (names) for one BPF program."""

    def __init__(self, maps: dict[str, BpfMap], proc: str = "/proc",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.maps = maps
        self.sink = BpfSink(maps["py_procs"], maps["py_threads"])
        self.procs = PythonProcesses(self.sink, proc=proc)
        self.stacks = PythonStacks(self.procs)
        self.proc = proc
        self._clock = clock
        self._pending: list[tuple[float, int, int]] = []  # (when, pid, checks done) after an exec
        self._last_refresh = float("-inf")
        self._lock = threading.Lock()  # observe() comes from the /proc poll thread too
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.announced = 0

    def observe(self, info: ProcessInfo) -> None:
        with self._lock:
            self.procs.observe(info)

    def forget(self, pid: int) -> None:
        with self._lock:
            self.stacks.forget(pid)

    def _read_stack(self, map_index: int, stack_hash: int) -> tuple[int, ...] | None:
        try:
            raw = self.maps[f"stacks{map_index & 1}"].lookup(struct.pack("<Q", stack_hash))
        except BpfError:
            return None
        if raw is None:
            return None
        n = min(struct.unpack_from("<Q", raw)[0], HP_MAX_DEPTH)
        return struct.unpack_from(f"<{n}Q", raw, 8)

    def poll_once(self) -> None:
        """Examine exec'd processes that are due, refresh thread maps when due, then name newly
        announced stacks for at most ANNOUNCE_BUDGET_S (the rest wait in the queue)."""
        now = self._clock()
        stale: set[int] = set()  # registered processes with a thread BPF did not know
        for _ in range(MAX_POPS):
            raw = self.maps["py_execs"].pop()
            if raw is None:
                break
            pid = struct.unpack_from("<I", raw)[0]
            entry = self.procs.get(pid)
            if entry is not None and entry.alive:
                stale.add(pid)
            else:
                self._pending.append((now + EXEC_CHECKS_S[0], pid, 0))
        if stale:
            with self._lock:
                self.procs.refresh(stale)
        due = [p for p in self._pending if p[0] <= now]
        self._pending = [p for p in self._pending if p[0] > now]
        for _, pid, done in due:
            info = capture(pid, Path(self.proc))
            if info is None:
                continue
            with self._lock:
                found = self.procs.observe(info)
            if found is None and done + 1 < len(EXEC_CHECKS_S):
                self._pending.append((now + EXEC_CHECKS_S[done + 1] - EXEC_CHECKS_S[done], pid, done + 1))
        if now - self._last_refresh >= REFRESH_S:
            self._last_refresh = now
            with self._lock:
                self.procs.refresh()
        budget_end = self._clock() + ANNOUNCE_BUDGET_S
        for _ in range(MAX_POPS):
            if self._clock() > budget_end:
                break
            raw = self.maps["py_new"].pop()
            if raw is None:
                break
            stack_hash, tgid, map_index = PY_NEW.unpack_from(raw)
            words = self._read_stack(map_index, stack_hash)
            if words:
                with self._lock:
                    self.stacks.warm(tgid, words)
                self.announced += 1

    def take_counters(self, counters: MutableMapping[str, int]) -> None:
        """Add what was counted since the last call (processes found, reasons, map failures)."""
        with self._lock:
            for source in (self.procs.counters, self.sink.counters):
                for name, n in source.items():
                    counters[name] = counters.get(name, 0) + n
                source.clear()

    def start(self, interval_s: float = 0.05) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.poll_once()
                except (OSError, ValueError) as exc:  # keep polling: a bad round must not end it
                    with self._lock:
                        self.procs.counters["python_poll_errors"] = self.procs.counters.get("python_poll_errors", 0) + 1
                    log.warning("python support: poll failed: %s", exc)

        self._thread = threading.Thread(target=loop, name="hotpath-python", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                return  # still in a poll: its maps stay open (closed with the process)
        for m in self.maps.values():
            m.close()


def start_python(source: BccSource, tracker: ProcessTracker, interval_s: float = 0.05) -> PythonSupport | None:
    """CPython support for a loaded program (None when it was built without -DPYTHON): follows
    the tracker's processes (known ones at once) and polls the announcements."""
    maps = source.python_maps()
    if maps is None:
        return None
    support = PythonSupport(maps)
    tracker.listen(support.observe, support.forget)
    support.start(interval_s)
    return support
