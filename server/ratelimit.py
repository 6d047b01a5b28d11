"""Failed-authentication limiter: per client address, a sliding window, in this worker's memory.

Why per worker and in memory: it guards the database and the login form against a flood of wrong
tokens, not the tokens themselves (256 random bits each). With W workers an address gets at most
W x limit failures per window; the bound is stated in server/README.md.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

_MAX_ADDRESSES = 100_000  # forget the quietest addresses past this (memory stays bounded)


class FailureLimiter:
    """At most `limit` failures per `window_s` per address; `limit` 0 disables it."""

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again (0.0: it may now)."""
        if self.limit <= 0:
            return 0.0
        with self._lock:
            times = self._failures.get(address)
            if times is None:
                return 0.0
            self._expire(times, self.clock())
            if len(times) < self.limit:
                return 0.0
            return max(times[0] + self.window_s - self.clock(), 0.001)

    def failed(self, address: str) -> None:
        if self.limit <= 0:
            return
        with self._lock:
            now = self.clock()
            if len(self._failures) >= _MAX_ADDRESSES and address not in self._failures:
                for key in [k for k, t in self._failures.items() if not t or t[-1] < now - self.window_s]:
                    del self._failures[key]
                if len(self._failures) >= _MAX_ADDRESSES:
                    self._failures.clear()
            times = self._failures.setdefault(address, deque())
            self._expire(times, now)
            times.append(now)
            while len(times) > self.limit:
                times.popleft()

    def _expire(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window_s:
            times.popleft()
