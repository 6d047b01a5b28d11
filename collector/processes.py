"""Track live processes and snapshot their mappings early, so short-lived ones stay symbolizable.

A background poll (every ~200 ms) captures each new pid, re-captures young ones (their shared
libraries load after exec), and keeps dead processes' snapshots until the next drain used them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from collector.symbolize.procmaps import PROC, ProcessInfo, capture


class ProcessTracker:
    """pid -> latest `ProcessInfo`, captured while the process lives."""

    def __init__(self, proc: Path = PROC, pids: Iterable[int] | None = None, young_s: float = 2.5,
                 clock: Callable[[], float] = time.monotonic,
                 on_capture: Callable[[ProcessInfo], None] | None = None) -> None:
        self.proc = proc
        self.only = set(pids) if pids else None
        self.young_s = young_s
        self._clock = clock
        self._on_capture = on_capture
        self._lock = threading.Lock()
        self._infos: dict[int, ProcessInfo] = {}
        self._first_seen: dict[int, float] = {}
        self._dead_since_drain: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.captures = 0

    def _capture(self, pid: int) -> ProcessInfo | None:
        info = capture(pid, self.proc)
        if info is None:
            return None
        self.captures += 1
        if self._on_capture is not None:
            self._on_capture(info)
        with self._lock:
            self._infos[pid] = info
        return info

    def _live_pids(self) -> set[int]:
        try:
            names = os.listdir(self.proc)
        except OSError:
            return set()
        pids = {int(n) for n in names if n.isdigit()}
        return pids & self.only if self.only is not None else pids

    def poll(self) -> None:
        """One scan: capture new pids, refresh young ones, mark vanished ones dead."""
        now = self._clock()
        live = self._live_pids()
        with self._lock:
            known = set(self._infos)
        for pid in live:
            first = self._first_seen.setdefault(pid, now)
            if pid not in known or now - first < self.young_s:
                self._capture(pid)
        with self._lock:
            for pid in known - live:
                info = self._infos.get(pid)
                if info is not None and info.alive:
                    info.alive = False
                    self._dead_since_drain.add(pid)

    def get(self, pid: int) -> ProcessInfo | None:
        """The snapshot for pid, capturing it now if never seen (None: gone before we saw it)."""
        with self._lock:
            info = self._infos.get(pid)
        if info is None:
            self._first_seen.setdefault(pid, self._clock())
            info = self._capture(pid)
        return info

    def refresh(self, pid: int) -> ProcessInfo | None:
        """Re-capture a live process (an address fell outside its known mappings)."""
        info = self._capture(pid)
        if info is None:
            with self._lock:
                return self._infos.get(pid)
        return info

    def after_drain(self) -> list[int]:
        """Forget processes that were already dead before the drain that just finished."""
        with self._lock:
            dead = {pid for pid, info in self._infos.items() if not info.alive}
            gone = sorted(dead - self._dead_since_drain)
            for pid in gone:
                self._infos.pop(pid, None)
                self._first_seen.pop(pid, None)
            self._dead_since_drain = set()
        return gone

    def __len__(self) -> int:
        return len(self._infos)

    def start(self, interval_s: float = 0.2) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.poll()

        self.poll()
        self._thread = threading.Thread(target=loop, name="hotpath-proc-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
