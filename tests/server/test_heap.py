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
