"""A small bounded LRU: symbol tables are keyed by build id so memory stays flat on long runs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """Least-recently-used map bounded by a total weight (entries count 1 unless `weigh` says)."""

    def __init__(self, max_weight: int, weigh: Callable[[V], int] | None = None) -> None:
        self.max_weight = max_weight
        self._weigh = weigh or (lambda _v: 1)
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.weight = 0
        self.evictions = 0

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        self._data.move_to_end(key)
        return item[0]

    def put(self, key: K, value: V) -> None:
        old = self._data.pop(key, None)
        if old is not None:
            self.weight -= old[1]
        w = max(1, self._weigh(value))
        self._data[key] = (value, w)
        self.weight += w
        while self.weight > self.max_weight and len(self._data) > 1:
            _, (_, ow) = self._data.popitem(last=False)
            self.weight -= ow
            self.evictions += 1

    def pop(self, key: K) -> None:
        old = self._data.pop(key, None)
        if old is not None:
            self.weight -= old[1]

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data
