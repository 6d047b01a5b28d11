"""The scrape loop: a thread per target, each on its own interval, storing through `Storage`.

A slow or broken target only ever holds its own thread (every fetch has a deadline and a size cap),
so the others keep their interval. One scraper runs per deployment: `lease` holds a PostgreSQL
advisory lock (or, on SQLite, an exclusive file lock next to the database) for as long as it scrapes;
a second scraper waits as a standby.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.dialects import postgresql, sqlite

from server import db
from server.models import scrape_targets
from server.scrape.config import PROFILES, Target
from server.scrape.delta import Cumulative
from server.scrape.fetch import ScrapeError, decode, fetch

log = logging.getLogger("hotpath.scrape")
_SCRAPE_LOCK = 0x68707363  # "hpsc"
MAX_BODY_BYTES = 32 << 20


class Scraper:
    """Scrapes targets into `storage`; `fetcher` and `clock` are injectable for tests."""

    def __init__(self, storage: Any, targets: list[Target], max_bytes: int = MAX_BODY_BYTES,
                 fetcher: Callable[[str, float, int], bytes] = fetch, clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.targets = targets
        self.max_bytes = max_bytes
        self.fetcher = fetcher
        self.clock = clock
        self.cumulative = Cumulative()
        self.lock = threading.Lock()  # guards `cumulative` across target threads

    def scrape_target(self, target: Target) -> dict[str, str | None]:
        """Scrape every profile of one target once; returns {profile: error or None}."""
        out: dict[str, str | None] = {}
        for profile in sorted(target.profiles, key=lambda p: p == "cpu"):  # cpu (slow) last
            out[profile] = self.scrape_one(target, profile)
        return out

    def scrape_one(self, target: Target, profile: str) -> str | None:
        url = target.url(profile)
        started = time.monotonic()
        error: ScrapeError | None = None
        try:
            body = self.fetcher(url, target.timeout_s + (1 if profile == "cpu" else 0), self.max_bytes)
            table = decode(body, self.max_bytes)
            with self.lock:
                table = self.cumulative.step(f"{target.job}\0{target.instance}\0{profile}", table,
                                             PROFILES[profile][1])
            if table is not None and len(table.stacks):
                if not table.time_nanos:
                    table = _stamped(table, self.clock())
                self.storage.ingest(table, dict(target.labels), name=profile)
        except ScrapeError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - a target's bad data must never stop the scraper
            error = ScrapeError("store", f"{type(exc).__name__}: {exc}")
        ms = int((time.monotonic() - started) * 1000)
        if error is not None:
            log.warning("scrape %s %s: %s", target.instance, profile, error)
        record(self.storage.engine, target, profile, url, int(self.clock()), ms, error)
        return str(error) if error else None

    def run(self, stop: threading.Event) -> None:
        """Scrape every target on its interval until `stop` is set."""
        threads = [threading.Thread(target=self._loop, args=(t, stop), name=f"scrape-{t.instance}", daemon=True)
                   for t in self.targets]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

    def _loop(self, target: Target, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            self.scrape_target(target)
            stop.wait(max(0.0, target.interval_s - (time.monotonic() - started)))


def _stamped(table: Any, now: float) -> Any:
    from dataclasses import replace

    return replace(table, time_nanos=int(now * 1e9))


def record(engine: Engine, target: Target, profile: str, url: str, now: int, ms: int, error: ScrapeError | None) -> None:
    """Upsert one target's health row (counts accumulate; errors counted by kind)."""
    with db.write(engine) as conn:
        row = conn.execute(scrape_targets.select().where(
            scrape_targets.c.job == target.job, scrape_targets.c.instance == target.instance,
            scrape_targets.c.profile == profile)).first()
        errors = json.loads(row.errors) if row else {}
        if error is not None:
            errors[error.kind] = errors.get(error.kind, 0) + 1
        values = {"job": target.job, "instance": target.instance, "profile": profile, "url": url,
                  "labels": json.dumps(target.labels, sort_keys=True), "last_scrape": now, "last_duration_ms": ms,
                  "last_error": str(error)[:1000] if error else None,
                  "scrapes": (row.scrapes if row else 0) + 1,
                  "failures": (row.failures if row else 0) + (1 if error else 0), "errors": json.dumps(errors)}
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(scrape_targets).values(**values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["job", "instance", "profile"], set_={
            k: stmt.excluded[k] for k in values if k not in ("job", "instance", "profile")}))


def targets_health(engine: Engine) -> list[dict[str, Any]]:
    """Every target's health rows, for `GET /api/v1/targets`."""
    with db.read(engine) as conn:
        rows = conn.execute(scrape_targets.select().order_by(
            scrape_targets.c.job, scrape_targets.c.instance, scrape_targets.c.profile)).all()
    return [{"job": r.job, "instance": r.instance, "profile": r.profile, "url": r.url, "labels": json.loads(r.labels),
             "last_scrape": int(r.last_scrape), "last_duration_ms": int(r.last_duration_ms),
             "last_error": r.last_error, "health": "down" if r.last_error else "up", "scrapes": int(r.scrapes),
             "failures": int(r.failures), "errors": json.loads(r.errors)} for r in rows]


@contextlib.contextmanager
def lease(engine: Engine, lock_path: str | None = None, wait: Callable[[], bool] | None = None) -> Iterator[bool]:
    """Hold the deployment's one scraper lease while the block runs; yields False if `wait` gave up."""
    if db.is_postgres(engine):
        with engine.connect() as conn:
            while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _SCRAPE_LOCK}).scalar():
                conn.rollback()
                if wait is None or not wait():
                    yield False
                    return
            conn.commit()
            try:
                yield True
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SCRAPE_LOCK})
                conn.commit()
        return
    import fcntl

    path = lock_path or f"{engine.url.database or 'hotpath'}.scrape.lock"
    with open(path, "a+") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if wait is None or not wait():
                    yield False
                    return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
