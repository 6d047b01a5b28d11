"""Ship spooled batches to `POST /api/v1/ingest`: 2xx done, 4xx rejected (never retried),
5xx / no answer retried with exponential backoff and full jitter."""

from __future__ import annotations

import enum
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.spool import Spool, SpoolItem

log = logging.getLogger("hotpath.collector.ship")


class Outcome(enum.Enum):
    STORED = "stored"
    REJECTED = "rejected"
    RETRY = "retry"


@dataclass(slots=True)
class ShipStats:
    shipped: int = 0
    rejected: int = 0
    failures: int = 0
    last_error: str = ""
    by_status: dict[int, int] = field(default_factory=dict)


class Shipper:
    """Sends batches with a bearer token; owns the retry schedule (backoff with jitter)."""

    def __init__(self, server: str, token: str, timeout_s: float = 10.0, base_backoff_s: float = 0.5,
                 max_backoff_s: float = 20.0, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.url = server.rstrip("/") + "/api/v1/ingest"
        self.token = token
        self.timeout_s = timeout_s
        self.base = base_backoff_s
        self.max = max_backoff_s
        self._clock = clock
        self._rand = rand
        self._attempt = 0
        self.next_try = 0.0
        self.stats = ShipStats()

    def send(self, item: SpoolItem) -> Outcome:
        query = urllib.parse.urlencode(item.params)
        req = urllib.request.Request(
            f"{self.url}?{query}", data=item.body(), method="POST",
            headers={"Authorization": f"Bearer {self.token}", "Idempotency-Key": item.key,
                     "Content-Type": "application/octet-stream", "Content-Encoding": "identity"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            detail = exc.read(500).decode("utf-8", "replace")
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            self.stats.last_error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            return Outcome.RETRY
        else:
            detail = ""
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        if 200 <= status < 300:
            return Outcome.STORED
        self.stats.last_error = f"HTTP {status} {detail.strip()}"
        if 400 <= status < 500 and status not in (408, 429):
            return Outcome.REJECTED
        return Outcome.RETRY

    def _backoff(self) -> None:
        self._attempt += 1
        cap = min(self.max, self.base * (2 ** min(self._attempt, 30)))
        self.next_try = self._clock() + cap * (0.5 + 0.5 * self._rand())

    def flush(self, spool: Spool, budget: int = 1000) -> int:
        """Send spooled batches oldest first until one fails or the backoff says wait; returns sent."""
        if self._clock() < self.next_try:
            return 0
        sent = 0
        for item in spool.items()[:budget]:
            outcome = self.send(item)
            if outcome is Outcome.STORED:
                spool.remove(item)
                self.stats.shipped += 1
                sent += 1
                self._attempt = 0
                self.next_try = 0.0
            elif outcome is Outcome.REJECTED:
                spool.reject(item)
                self.stats.rejected += 1
                log.error("server rejected batch %s (%s): moved to %s, not retried",
                          item.name, self.stats.last_error, spool.rejected_dir)
            else:
                self.stats.failures += 1
                self._backoff()
                log.warning("ship failed (%s); retrying in %.1fs", self.stats.last_error,
                            self.next_try - self._clock())
                break
        return sent
