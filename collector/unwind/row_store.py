"""Allocation of contiguous row runs in the one shared row array (`unwind_rows`, fixed capacity).

First fit over a sorted free list, neighbours merged on free: tables come and go with the
processes that map them, and a run is never moved (mapping entries name it by index).
"""

from __future__ import annotations

import bisect


class RowStore:
    """Free runs of a `capacity`-row array; `alloc` returns a first index or None when no run fits."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self._starts: list[int] = [0] if capacity else []
        self._lengths: list[int] = [capacity] if capacity else []
        self.used = 0

    @property
    def free(self) -> int:
        return self.capacity - self.used

    def largest_free_run(self) -> int:
        return max(self._lengths, default=0)

    def alloc(self, count: int) -> int | None:
        if count <= 0:
            raise ValueError("count must be > 0")
        for i, length in enumerate(self._lengths):
            if length >= count:
                first = self._starts[i]
                if length == count:
                    del self._starts[i], self._lengths[i]
                else:
                    self._starts[i] += count
                    self._lengths[i] -= count
                self.used += count
                return first
        return None

    def release(self, first: int, count: int) -> None:
        """Give back the run [first, first + count); it must be one `alloc` returned."""
        i = bisect.bisect_left(self._starts, first)
        if (i < len(self._starts) and self._starts[i] < first + count) or (
                i > 0 and self._starts[i - 1] + self._lengths[i - 1] > first) or first + count > self.capacity:
            raise ValueError(f"run [{first}, {first + count}) is not allocated")
        self.used -= count
        if i > 0 and self._starts[i - 1] + self._lengths[i - 1] == first:  # merge with the left run
            i -= 1
            self._lengths[i] += count
        else:
            self._starts.insert(i, first)
            self._lengths.insert(i, count)
        if i + 1 < len(self._starts) and self._starts[i] + self._lengths[i] == self._starts[i + 1]:
            self._lengths[i] += self._lengths.pop(i + 1)
            del self._starts[i + 1]
