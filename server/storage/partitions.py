"""PostgreSQL day partitions of `batches` and `rollups`: created ahead, dropped for retention.

Retention detaches a whole day (`DETACH PARTITION ... CONCURRENTLY`, which does not block inserts
into other partitions) and drops it: no DELETE, no vacuum debt. On SQLite (one file, one writer)
the same interface deletes rows instead.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine, delete, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from server import db
from server.models import batches, ingest_keys, rollup_buckets, rollups

log = logging.getLogger("hotpath.retention")
DAY = 86400
PARTITIONED = ("batches", "rollups")
_ALREADY_EXISTS = ("42P07", "23505")  # duplicate_table; unique_violation in the catalog
_CHECK_VIOLATION = "23514"  # what PostgreSQL raises for a row no partition accepts
T = TypeVar("T")


def is_missing_partition(error: BaseException) -> bool:
    """True for PostgreSQL's "no partition of relation ... found for row"."""
    return (isinstance(error, IntegrityError) and db.sqlstate(error) == _CHECK_VIOLATION
            and "no partition" in str(error.orig))


def day_name(table: str, day_start: int) -> str:
    return f"{table}_p{dt.datetime.fromtimestamp(day_start, dt.UTC):%Y%m%d}"


class Partitions:
    """Knows which day partitions exist (cached) and creates or drops them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.enabled = db.is_postgres(engine)
        self._known: set[int] | None = None
        self._lock = threading.Lock()

    def existing_days(self) -> set[int]:
        """Day starts (unix seconds) that have a `batches` partition."""
        if not self.enabled:
            return set()
        with db.read(self.engine) as conn:
            names = conn.execute(text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'batches'"
            )).scalars().all()
        days = set()
        for name in names:
            try:
                day = dt.datetime.strptime(name[-8:], "%Y%m%d").replace(tzinfo=dt.UTC)
            except ValueError:
                continue
            days.add(int(day.timestamp()))
        return days

    def ensure_day(self, ts: int) -> None:
        """Make sure the day holding `ts` has partitions (cheap when cached)."""
        if not self.enabled:
            return
        day = ts - ts % DAY
        known = self._known
        if known is not None and day in known:
            return
        with self._lock:
            if self._known is None:
                self._known = self.existing_days()
            if day in self._known:
                return
            with db.autocommit(self.engine) as conn:
                for table in PARTITIONED:
                    try:
                        conn.execute(text(
                            f"CREATE TABLE IF NOT EXISTS {day_name(table, day)} PARTITION OF {table} "
                            f"FOR VALUES FROM ({day}) TO ({day + DAY})"
                        ))
                    except DBAPIError as exc:
                        # IF NOT EXISTS is not safe against a concurrent create: another worker's
                        # first batch of the day can win between the check and the insert.
                        if getattr(exc.orig, "sqlstate", None) not in _ALREADY_EXISTS:
                            raise
            self._known = self._known | {day}

    def retrying(self, write: Callable[[], T]) -> T:
        """Run `write` (which calls `ensure_day` for its rows), once more if a partition was missing.

        The cache of known days is per process: another server on the same database (with a shorter
        retention) may have dropped a day this one still believes exists, and its insert then finds
        no partition. The catalog is read again, the day re-created, and the write retried once.
        """
        try:
            return write()
        except IntegrityError as exc:
            if not is_missing_partition(exc):
                raise
            log.warning("a day partition was dropped under this server: re-creating it",
                        extra={"error": str(exc.orig).splitlines()[0]})
            with self._lock:
                self._known = None
            return write()

    def ensure_ahead(self, now: int, days_ahead: int) -> None:
        for i in range(-1, days_ahead + 1):
            self.ensure_day(now + i * DAY)

    def drop_before(self, cutoff: int) -> list[str]:
        """Remove data older than `cutoff` (whole days on PostgreSQL); returns what was dropped."""
        cutoff_day = cutoff - cutoff % DAY
        dropped: list[str] = []
        if not self.enabled:
            with db.write(self.engine) as conn:
                n = conn.execute(delete(batches).where(batches.c.ts < cutoff_day)).rowcount
                conn.execute(delete(rollups).where(rollups.c.ts < cutoff_day))
                conn.execute(delete(rollup_buckets).where(rollup_buckets.c.ts < cutoff_day))
                conn.execute(delete(ingest_keys).where(ingest_keys.c.created_at < cutoff_day))
            if n:
                dropped.append(f"{n} batches")
            return dropped
        with self._lock:
            days = sorted(d for d in self.existing_days() if d + DAY <= cutoff_day)
            for day in days:
                for table in PARTITIONED:
                    name = day_name(table, day)
                    with db.autocommit(self.engine) as conn:
                        exists = conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar()
                        if exists is None:
                            continue
                        conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {name} CONCURRENTLY"))
                        conn.execute(text(f"DROP TABLE {name}"))
                    dropped.append(name)
                    log.info("retention dropped partition", extra={"partition": name})
            self._known = None
        with db.write(self.engine) as conn:
            conn.execute(delete(rollup_buckets).where(rollup_buckets.c.ts < cutoff_day))
            conn.execute(delete(ingest_keys).where(ingest_keys.c.created_at < cutoff_day))
        return dropped
