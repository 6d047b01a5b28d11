"""Track live processes and snapshot their mappings early, so short-lived ones stay symbolizable.

A background poll (every ~500 ms) lists /proc, fully captures only pids it has not seen, re-reads
just the mappings of young ones (their shared libraries load after exec), and keeps dead processes'
snapshots until the next drain used them. Reading every process's maps at each poll was the
agent's biggest steady cost; now a quiet host costs one small read per poll (the kernel's last pid,
from /proc/loadavg: unchanged means no new task) and a full /proc listing every few seconds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from collector.symbolize.procmaps import PROC, ProcessInfo, capture, recapture_maps

log = logging.getLogger("hotpath.collector.processes")
# Longest time between full /proc listings while no new task appears (exits are noticed then).
FULL_SCAN_S = 5.0


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
        self._listeners: list[tuple[Callable[[ProcessInfo], None], Callable[[int], None]]] = []
        self._lock = threading.Lock()
        self._infos: dict[int, ProcessInfo] = {}
        self._first_seen: dict[int, float] = {}
        self._young: dict[int, float] = {}  # pid -> first seen, while its mappings may still change
        self._dead: set[int] = set()  # known pids marked dead (a reused pid number is a new process)
        self._dead_since_drain: set[int] = set()
        self._missing: set[int] = set()  # pids asked for this drain that could not be captured
        self._listed_at_pid: int | None = None
        self._listed_at = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.captures = 0
        self.unchanged = 0

    def _capture(self, pid: int, previous: ProcessInfo | None = None) -> ProcessInfo | None:
        info = recapture_maps(previous, self.proc) if previous is not None else capture(pid, self.proc)
        if info is None:
            return None
        self.captures += 1
        with self._lock:
            old = self._infos.get(pid)
        if old is not None and old.alive and old.maps == info.maps and old.comm == info.comm:
            # Unchanged: keep the same snapshot object, so what was derived from it (the
            # symbolizer's frame cache, warmed images) stays valid.
            self.unchanged += 1
            return old
        if self._on_capture is not None:
            self._on_capture(info)
        with self._lock:
            self._infos[pid] = info
            listeners = list(self._listeners)
        for on_capture, _ in listeners:
            on_capture(info)
        return info

    def listen(self, on_capture: Callable[[ProcessInfo], None], on_forget: Callable[[int], None]) -> None:
        """Call on_capture with every live process known now and each new or changed capture
        from now on (from the poll thread too), on_forget with each pid forgotten after a drain."""
        with self._lock:
            self._listeners.append((on_capture, on_forget))
            known = [info for info in self._infos.values() if info.alive]
        for info in known:
            on_capture(info)

    def _live_pids(self) -> set[int]:
        try:
            names = os.listdir(self.proc)
        except OSError:
            return set()
        pids = {int(n) for n in names if n.isdigit()}
        return pids & self.only if self.only is not None else pids

    def _last_pid(self) -> int | None:
        """The pid most recently handed out (5th field of /proc/loadavg), None if unreadable."""
        try:
            with open(f"{self.proc}/loadavg", "rb") as fh:
                return int(fh.read().split()[4])
        except (OSError, ValueError, IndexError):
            return None

    def poll(self) -> None:
        """One scan: capture new pids, refresh young ones' mappings, mark vanished ones dead.

        When no task was created since the last listing (the kernel's last pid is unchanged) and
        the last full listing is recent, /proc is not listed: a quiet host costs one small read."""
        now = self._clock()
        last_pid = self._last_pid()
        if last_pid is not None and last_pid == self._listed_at_pid and now - self._listed_at < FULL_SCAN_S:
            self._refresh_young(now, None, set())
            return
        self._listed_at_pid, self._listed_at = last_pid, now  # read before listing: nothing slips by
        live = self._live_pids()
        with self._lock:
            known = set(self._infos)
        new = (live - known) | (live & self._dead)
        for pid in new:
            self._dead.discard(pid)
            self._first_seen[pid] = now
            info = self._capture(pid)
            if info is not None and not info.kernel_thread:
                self._young[pid] = now
        self._refresh_young(now, live, new)
        with self._lock:
            for pid in known - live:
                info = self._infos.get(pid)
                if info is not None and info.alive:
                    info.alive = False
                    self._dead.add(pid)
                    self._dead_since_drain.add(pid)

    def _refresh_young(self, now: float, live: set[int] | None, new: set[int]) -> None:
        """Re-read young processes' mappings (shared libraries load after exec)."""
        for pid, first in list(self._young.items()):
            if (live is not None and pid not in live) or now - first >= self.young_s:
                del self._young[pid]
            elif pid not in new:
                with self._lock:
                    previous = self._infos.get(pid)
                if previous is not None and self._capture(pid, previous) is None:
                    del self._young[pid]  # gone; the next full listing marks it dead

    def get(self, pid: int) -> ProcessInfo | None:
        """The snapshot for pid, capturing it now if never seen (None: gone before we saw it)."""
        with self._lock:
            info = self._infos.get(pid)
        if info is None:
            if pid in self._missing:
                return None  # gone before we saw it: asked once per drain, not once per stack
            now = self._clock()
            self._first_seen.setdefault(pid, now)
            info = self._capture(pid)
            if info is None:
                self._missing.add(pid)
            elif not info.kernel_thread:
                self._young.setdefault(pid, now)
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
                self._dead.discard(pid)
            self._dead_since_drain = set()
            self._missing = set()
            listeners = list(self._listeners)
        for _, on_forget in listeners:
            for pid in gone:
                on_forget(pid)
        return gone

    def __len__(self) -> int:
        return len(self._infos)

    def _safe_poll(self) -> None:
        """A poll that fails (a bug on odd input in a capture hook) is logged; polling goes on."""
        try:
            self.poll()
        except Exception:
            log.exception("process poll failed; continuing")

    def start(self, interval_s: float = 0.2) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                self._safe_poll()

        self._safe_poll()
        self._thread = threading.Thread(target=loop, name="hotpath-proc-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
