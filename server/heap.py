"""How a server worker manages its memory: a heap that keeps freed pages for the next query while
queries keep coming, gives them back once the worker is idle, and a garbage collector that does not
rescan the worker's long-lived caches on every full collection."""

from __future__ import annotations

import ctypes
import gc
import threading
import time
from collections.abc import Callable

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
KEEP_FREED_HEAP_BYTES = 1 << 30
TRIM_AT_LEAST_EVERY_S = 60.0  # also when idle without requests: the maintenance thread allocates too
FREEZE_EVERY_S = 10.0
THAW_EVERY = 60  # freezes; with FREEZE_EVERY_S, cyclic garbage among frozen objects lives <= 10 min


def keep_freed_memory() -> None:
    """Serve big query buffers from a heap that keeps its freed pages.

    glibc mmaps each big array (a day-long flame graph merges hundreds of MB) and unmaps it when
    freed, so every query faults its pages in afresh; in this VM that doubled the CPU time of
    every other 24 h query (0.96 s vs 1.89 s, measured). Cost: a worker keeps up to 1 GiB of
    freed heap resident for its next query, until IdleTrim gives it back."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc
    mallopt(M_MMAP_MAX, 0)
    mallopt(M_TRIM_THRESHOLD, KEEP_FREED_HEAP_BYTES)


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: its heap was not told to keep freed pages either


class IdleTrim:
    """Give the worker's freed heap back to the system once it has served no request for `idle_s`.

    Queries that follow each other keep the heap keep_freed_memory() holds for them (their speed);
    an idle worker shrinks to what it uses (workers sat at 0.9-1.1 GB RSS after large queries,
    issue 15). A query after an idle spell faults its pages in afresh. `idle_s` 0: never trim."""

    def __init__(self, idle_s: float, clock: Callable[[], float] = time.monotonic,
                 trim: Callable[[], None] = _malloc_trim) -> None:
        self.idle_s = idle_s
        self.clock = clock
        self.trim = trim
        self.last_request = self.last_trim = clock()
        self.dirty = False
        self.trims = 0

    def request_done(self) -> None:
        self.last_request = self.clock()
        self.dirty = True

    def tick(self, busy: int) -> bool:
        """Trim if due (`busy`: requests in flight); True if it trimmed. Meant for the worker's loop."""
        if self.idle_s <= 0 or busy:
            return False
        now = self.clock()
        if now - self.last_request < self.idle_s:
            return False
        if not self.dirty and now - self.last_trim < TRIM_AT_LEAST_EVERY_S:
            return False
        self.trim()
        self.dirty = False
        self.last_trim = now
        self.trims += 1
        return True


class GcPolicy:
    """Every `every_s` (10 s), after a full collection, freeze the survivors (gc.freeze).

    A warm worker holds 10^5-10^6 long-lived objects (dictionary and frame caches, pools); each
    gen-2 collection walked them all, ~30% of an ingest request's CPU (11.3 -> 7.4-8.2 ms per
    batch once frozen, measured in-process). Frozen objects are never scanned, so every
    THAW_EVERY-th time they are unfrozen first: cycles among them are still reclaimed, late."""

    def __init__(self, every_s: float = FREEZE_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self.due = clock() + every_s
        self.freezes = 0
        self._lock = threading.Lock()

    def is_due(self) -> bool:
        return self.clock() >= self.due

    def run(self) -> None:
        """Collect and freeze if due; meant to run after a response has been sent."""
        if not self._lock.acquire(blocking=False):
            return  # another thread of this worker is at it
        try:
            if not self.is_due():
                return
            self.due = self.clock() + self.every_s
            self.freezes += 1
            if self.freezes % THAW_EVERY == 0:
                gc.unfreeze()
            gc.collect()
            gc.freeze()
        finally:
            self._lock.release()
