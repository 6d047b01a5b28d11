"""The ingest hot path: one statement when every id is cached, caches only after commit, idle pings."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import event, text

from profiler.selector import parse_selector
from server import db
from server.storage import Storage
from server.storage import ingest as ingest_mod
from server.storage.partitions import Partitions
from tests.server.conftest import drop_pg_database, fresh_pg_database
from tests.server.helpers import cpu_profile


@pytest.fixture(scope="module")
def storage(migrated_url: str) -> Any:
    engine = db.make_engine(migrated_url)
    yield Storage(engine, retention_days=30, rollup_grace_s=3600)
    engine.dispose()


def merged(storage: Storage, query: str, t0: int, t1: int) -> dict[str, int]:
    sel = storage.select(parse_selector(query), t0, t1)
    return {";".join(f.function for f in frames): v for frames, v in storage.stacks(sel)}


class Statements:
    """Counts the SQL statements an engine sends (BEGIN/COMMIT are not statements here)."""

    def __init__(self, engine: Any) -> None:
        self.sql: list[str] = []
        event.listen(engine, "before_cursor_execute", self._seen)
        self.engine = engine

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.sql.append(statement)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def test_steady_state_batch_is_one_statement(storage: Storage) -> None:
    now = int(time.time())
    labels = {"service": "steady", "host": "h1"}
    prof = cpu_profile({"main;a;b": 3, "main;c": 2}, labels={"main;c": {"pid": "7"}}, at=now - 20)
    first = storage.ingest(prof, labels, key="steady-1")
    assert first.status == "stored"
    counter = Statements(storage.engine)
    try:
        again = storage.ingest(cpu_profile({"main;a;b": 3, "main;c": 2}, labels={"main;c": {"pid": "7"}},
                                           at=now - 10), labels, key="steady-2")
        dup = storage.ingest(cpu_profile({"main;a;b": 100}, at=now - 10), labels, key="steady-2")
    finally:
        counter.close()
    assert again.status == "stored" and dup.status == "duplicate"
    batch_sql = [s for s in counter.sql if "batches" in s]
    if db.is_postgres(storage.engine):
        # Everything cached: key + batch in one autocommitted statement per request, nothing else.
        assert len(counter.sql) == 2 and len(batch_sql) == 2, counter.sql
        assert all("ingest_keys" in s for s in batch_sql)
    else:
        assert len(batch_sql) == 1  # SQLite: the duplicate stops at the key insert
    period = prof.period
    got = merged(storage, 'cpu{service="steady"}', now - 60, now + 60)
    assert got == {"main;a;b": 6 * period, "main;c": 4 * period}  # the duplicate stored nothing
    pid = merged(storage, 'cpu{service="steady", pid="7"}', now - 60, now + 60)
    assert pid == {"main;c": 4 * period}


def test_rolled_back_batch_leaves_no_cached_ids(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    now = int(time.time())
    labels = {"service": "rollback"}
    before_f, before_s = len(storage.dictionary.function_ids), len(storage.dictionary.stack_ids)

    def fail(*_args: Any) -> bool:
        raise RuntimeError("database went away mid-transaction")

    monkeypatch.setattr(ingest_mod, "_insert_batch", fail)
    with pytest.raises(RuntimeError):
        storage.ingest(cpu_profile({"main;rb_new_fn;rb_leaf": 4}, at=now - 5), labels, key="rb-1")
    monkeypatch.undo()
    # The functions/stacks were inserted and rolled back: none may be cached with a dead id.
    assert len(storage.dictionary.function_ids) == before_f
    assert len(storage.dictionary.stack_ids) == before_s
    res = storage.ingest(cpu_profile({"main;rb_new_fn;rb_leaf": 4}, at=now - 5), labels, key="rb-1")
    assert res.status == "stored"  # the key was rolled back too
    assert merged(storage, 'cpu{service="rollback"}', now - 60, now + 60) == {
        "main;rb_new_fn;rb_leaf": 4 * cpu_profile({}).period}


def test_two_processes_share_ids_through_the_database(storage: Storage) -> None:
    """Separate caches (two gunicorn workers) agree on ids: misses fall back to the stored rows."""
    now = int(time.time())
    other = Storage(storage.engine, retention_days=30, rollup_grace_s=3600)
    stacks = {"main;shared;x": 1, "main;shared;y": 2}
    storage.ingest(cpu_profile(stacks, at=now - 5), {"service": "share", "host": "a"})
    other.ingest(cpu_profile(stacks, at=now - 5), {"service": "share", "host": "b"})
    a = storage.dictionary.stack_ids
    b = other.dictionary.stack_ids
    common = set(a) & set(b)
    assert len(common) >= 2 and all(a[k] == b[k] for k in common)
    assert merged(storage, 'cpu{service="share"}', now - 60, now + 60) == {
        k: 2 * v * cpu_profile({}).period for k, v in stacks.items()}


def test_idle_connection_is_pinged_and_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    url = fresh_pg_database()  # a server database: SQLite has no pool to go stale
    engine = db.make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        admin = db.make_engine(url)
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            conn.commit()
        admin.dispose()
        monkeypatch.setattr(db, "PING_IDLE_S", 0.0)  # the pooled connection now counts as idle
        with engine.connect() as conn:  # the ping finds it dead; the pool opens a fresh one
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        engine.dispose()
        drop_pg_database(url)


def test_workers_creating_the_same_day_partition_at_once() -> None:
    """Every worker's first batch of a new day creates its partition; racing creates must not fail."""
    url = fresh_pg_database()
    try:
        db.upgrade(url)
        engine = db.make_engine(url, pool_size=8)
        day = int(time.time()) + 5 * 86400
        for attempt in range(5):  # the race is timing-dependent: several rounds, several days
            target = day + attempt * 86400
            workers = [Partitions(engine) for _ in range(8)]
            for p in workers:
                p._known = p.existing_days()  # as a running worker would have loaded them
            barrier = threading.Barrier(len(workers))
            errors: list[BaseException] = []

            def create(p: Partitions, at: int, barrier: threading.Barrier, errors: list[BaseException]) -> None:
                barrier.wait()
                try:
                    p.ensure_day(at)
                except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)

            threads = [threading.Thread(target=create, args=(p, target, barrier, errors)) for p in workers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
            assert target - target % 86400 in Partitions(engine).existing_days()
        engine.dispose()
    finally:
        drop_pg_database(url)
