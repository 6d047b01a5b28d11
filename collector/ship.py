"""Ship spooled batches to `POST /api/v1/ingest`: 2xx done, 4xx rejected (never retried),
3xx / 5xx / no answer / a malformed or late answer retried with exponential backoff and equal jitter."""

from __future__ import annotations

import enum
import http.client
import logging
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.spool import Spool, SpoolItem

log = logging.getLogger("hotpath.collector.ship")


# How much of an error answer's body is kept for the log line.
MAX_DETAIL_BYTES = 500


class DeadlineExceeded(Exception):
    """The request as a whole took longer than its deadline (a slow-drip answer)."""


def http_post(url: str, path: str, body: bytes, headers: dict[str, str],
              timeout_s: float) -> tuple[int, str]:
    """POST to `url`'s own origin -> (status, start of the body if not 2xx); no redirects followed.

    The socket timeout bounds each wait, and a timer shuts the socket down at `timeout_s` after
    the start: a server that drips one byte per second passed every per-read timeout (36 s+)."""
    parts = urllib.parse.urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "", parts.port, timeout=timeout_s)
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read with EOF
            except OSError:
                pass

    timer = threading.Timer(timeout_s, cut)
    timer.daemon = True
    timer.start()
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        status = resp.status
        detail = b""
        if not 200 <= status < 300:
            detail = resp.read(MAX_DETAIL_BYTES)
            location = resp.getheader("Location")
            if location:
                detail = f"redirect to {location[:200]} not followed; point --server at the final URL: ".encode() + detail
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise DeadlineExceeded(f"no complete answer within {timeout_s:g}s") from exc
        raise
    finally:
        timer.cancel()
        conn.close()
    if expired.is_set():
        raise DeadlineExceeded(f"no complete answer within {timeout_s:g}s")
    return status, detail.decode("utf-8", "replace")


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
    """Sends batches with a bearer token; owns the retry schedule (exponential backoff, equal jitter)."""

    def __init__(self, server: str, token: str, timeout_s: float = 10.0, base_backoff_s: float = 0.5,
                 max_backoff_s: float = 20.0, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.url = server.rstrip("/") + "/api/v1/ingest"
        self._path = urllib.parse.urlsplit(self.url).path
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
        """One POST to the configured server, never anywhere else, within `timeout_s` in total.

        Only a 2xx from that server stores the batch. A redirect is not followed (following one
        re-sent the bearer token to whatever origin it named, as a GET whose 200 deleted the batch
        unstored): it is retried like a 5xx, and its Location is shown in `last_error`. Any
        response, however malformed or slow, ends in an `Outcome`."""
        query = urllib.parse.urlencode(item.params)
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": item.key,
                   "Content-Type": "application/octet-stream", "Content-Encoding": "identity"}
        try:
            status, detail = http_post(self.url, f"{self._path}?{query}", item.body(), headers, self.timeout_s)
        except (OSError, http.client.HTTPException, DeadlineExceeded) as exc:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
            return Outcome.RETRY
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        if 200 <= status < 300:
            return Outcome.STORED
        self.stats.last_error = f"HTTP {status} {detail.strip()}"[:500]
        if 400 <= status < 500 and status not in (408, 429):
            return Outcome.REJECTED
        return Outcome.RETRY

    def _backoff(self) -> None:
        self._attempt += 1
        cap = min(self.max, self.base * (2 ** min(self._attempt, 30)))
        # Equal jitter: a wait uniform in [cap/2, cap]. Spread enough that a fleet does not retry in
        # step, and unlike full jitter ([0, cap]) never a near-zero wait on a server that just failed.
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
