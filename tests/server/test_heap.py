"""The worker's GC policy: freezes survivors only when due, and thaws every THAW_EVERY-th time."""

from __future__ import annotations

import gc

import pytest

from server import heap


@pytest.fixture(autouse=True)
def _thawed():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freezes_only_when_due_and_thaws_periodically(monkeypatch) -> None:
    now = [100.0]
    policy = heap.GcPolicy(every_s=30, clock=lambda: now[0])
    policy.run()
    assert gc.get_freeze_count() == 0  # not due yet: nothing collected or frozen

    keep = [[i] for i in range(1000)]  # long-lived, GC-tracked objects
    now[0] += 30
    assert policy.is_due()
    policy.run()
    frozen = gc.get_freeze_count()
    assert frozen >= len(keep)
    assert not policy.is_due()

    thawed = []
    monkeypatch.setattr(gc, "unfreeze", lambda: thawed.append(True))
    for _ in range(heap.THAW_EVERY - 1):
        now[0] += 30
        policy.run()
    assert thawed == [True]  # exactly on the THAW_EVERY-th freeze


def test_a_cycle_that_dies_after_freezing_is_reclaimed_after_a_thaw() -> None:
    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    gc.freeze()
    del a, b
    assert gc.collect() == 0  # frozen: invisible to the collector
    gc.unfreeze()
    assert gc.collect() >= 2


def test_idle_trim_waits_for_idle_and_not_while_busy() -> None:
    now = [0.0]
    trims = []
    trim = heap.IdleTrim(10, clock=lambda: now[0], trim=lambda: trims.append(now[0]))
    trim.request_done()
    now[0] = 9.9
    assert not trim.tick(busy=0)  # not idle long enough
    now[0] = 10.0
    assert not trim.tick(busy=1)  # a request in flight: its heap is in use
    assert trim.tick(busy=0) and trims == [10.0]
    now[0] = 30.0
    assert not trim.tick(busy=0)  # nothing served since: nothing new to give back
    now[0] = 10.0 + heap.TRIM_AT_LEAST_EVERY_S
    assert trim.tick(busy=0)  # but the maintenance thread allocates too: trimmed now and then
    trim.request_done()
    now[0] += 5
    assert not trim.tick(busy=0)


def test_idle_trim_zero_never_trims() -> None:
    trim = heap.IdleTrim(0, clock=lambda: 1e9, trim=lambda: pytest.fail("trimmed"))
    trim.request_done()
    assert not trim.tick(busy=0)


def test_malloc_trim_gives_freed_heap_back() -> None:
    """The real trim: heap kept by keep_freed_memory()'s settings comes back to the system."""
    import ctypes
    import subprocess
    import sys

    code = """
import ctypes, sys
from server import heap
heap.keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
ptrs = [libc.malloc(1 << 20) for _ in range(300)]
for p in ptrs:
    ctypes.memset(p, 1, 1 << 20)
for p in ptrs:
    libc.free(p)
kept = rss()
heap._malloc_trim()
print(kept, rss())
"""
    del ctypes
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    kept, trimmed = int(out[0]), int(out[1])
    assert kept - trimmed > 250, (kept, trimmed)  # MB: the 300 MB freed were kept, then given back
