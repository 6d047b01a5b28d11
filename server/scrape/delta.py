"""Cumulative-since-start profiles (Go's allocs, mutex, block) as the increase since the previous scrape.

Pure: `Cumulative.step(key, table)` keeps the last scrape per key and returns the table whose
cumulative columns hold per-stack increases. A counter reset (the target restarted: a column's total
or any stack's count went down) counts what the new process reports, as Prometheus' `increase()` does.
So a restart never gives negative or doubled values. Columns that are
not cumulative (inuse_*) pass through as scraped.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from profiler.model import Frame, ProfileTable


def _keys(table: ProfileTable) -> list[tuple[tuple[Frame, ...], tuple]]:  # type: ignore[type-arg]
    frames = table.frames
    return [(tuple(frames[i] for i in stack), tuple(labels)) for stack, labels in zip(table.stacks, table.labels)]


class Cumulative:
    """Last scrape per (target, profile), to turn cumulative columns into deltas."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[dict, np.ndarray]] = {}  # type: ignore[type-arg]

    def step(self, key: str, table: ProfileTable, cumulative: frozenset[str]) -> ProfileTable | None:
        """The table with its cumulative columns as increases; None on the first scrape of a key
        that has only cumulative columns (there is nothing to compare with yet)."""
        cols = [i for i, vt in enumerate(table.sample_types) if vt.type in cumulative]
        if not cols:
            return table
        values = np.asarray(table.values, dtype=np.int64).reshape(len(table.stacks), len(table.sample_types))
        keys = _keys(table)
        # Several samples may share a stack and labels: their sum is what is compared across scrapes.
        current: dict = {}  # type: ignore[type-arg]
        for k, row in zip(keys, values[:, cols]):
            current[k] = current.get(k, 0) + row
        previous = self.last.get(key)
        self.last[key] = (current, values[:, cols].sum(axis=0))
        if previous is None:
            if len(cols) == len(table.sample_types):
                return None
            out = values.copy()
            out[:, cols] = 0
            return replace(table, values=out)
        before, before_totals = previous
        if np.any(values[:, cols].sum(axis=0) < before_totals):  # a restart: count from zero
            return table
        increases = {k: v - before.get(k, 0) for k, v in current.items()}
        if any(np.any(inc < 0) for inc in increases.values()):  # a restarted process already past the old totals
            return table
        out = values.copy()
        used: set = set()  # type: ignore[type-arg]
        for n, k in enumerate(keys):
            # The first sample of a key carries its increase, later duplicates none.
            out[n, cols] = 0 if k in used else increases[k]
            used.add(k)
        return replace(table, values=out)

    def forget(self, prefix: str) -> None:
        for k in [k for k in self.last if k.startswith(prefix)]:
            del self.last[k]
