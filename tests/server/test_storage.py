"""Storage layer: exact round trips, per-sample label filters, rollups, retention, idempotency, dedup."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select, text

from profiler.selector import parse_selector
from server import db
from server.models import batches, functions, stacks
from server.storage import IngestRejected, Storage
from tests.server.helpers import cpu_profile

NOW = 0  # set when the module's storage fixture starts (modules are imported long before they run)


@pytest.fixture(scope="module")
def storage(migrated_url: str) -> Any:
    global NOW
    NOW = int(time.time())
    engine = db.make_engine(migrated_url)
    yield Storage(engine, retention_days=30, rollup_grace_s=0)
    engine.dispose()


def merged(storage: Storage, query: str, t0: int, t1: int) -> dict[str, int]:
    sel = storage.select(parse_selector(query), t0, t1)
    return {";".join(f.function for f in frames): v for frames, v in storage.stacks(sel)}


def test_round_trip_and_dedup(storage: Storage) -> None:
    at = NOW - 7200
    prof = cpu_profile({"main;a;b": 3, "main;a": 2, "main;c;b": 5},
                       labels={"main;a;b": {"pid": "1", "process": "app"}, "main;c;b": {"pid": "2", "process": "java"}},
                       at=at)
    period = prof.period
    res = storage.ingest(prof, {"service": "rt", "host": "h1"})
    assert res.status == "stored" and res.samples == 3
    storage.ingest(cpu_profile({"main;a;b": 1}, at=at + 10), {"service": "rt", "host": "h2"})
    got = merged(storage, 'cpu{service="rt"}', at - 1, at + 60)
    assert got == {"main;a;b": 4 * period, "main;a": 2 * period, "main;c;b": 5 * period}
    assert merged(storage, 'cpu{service="rt", host="h2"}', at - 1, at + 60) == {"main;a;b": period}
    # per-sample labels filter without being series labels
    assert merged(storage, 'cpu{service="rt", process!="java"}', at - 1, at + 60) == {
        "main;a;b": 4 * period, "main;a": 2 * period}
    assert merged(storage, 'cpu{service="rt", process=~"ja.*"}', at - 1, at + 60) == {"main;c;b": 5 * period}
    # time range excludes
    assert merged(storage, 'cpu{service="rt"}', at + 5, at + 60) == {"main;a;b": period}
    with storage.engine.connect() as conn:
        names = conn.execute(select(functions.c.name).where(functions.c.name.in_(["main", "a", "b", "c"]))).all()
        assert len(names) == 4  # each function stored once
        n_stacks = conn.execute(select(func.count()).select_from(stacks)).scalar()
        assert n_stacks >= 3
    sel = storage.select(parse_selector('cpu{service="rt"}'), at - 1, at + 60)
    assert sel.stack_ids.size == 3


def test_sql_metacharacters_in_labels(storage: Storage) -> None:
    nasty = "x'); DROP TABLE batches; --\"\\%_"
    storage.ingest(cpu_profile({"main;q": 1}, labels={"main;q": {"process": nasty}}, at=NOW), {"service": nasty})
    assert storage.label_values("service", NOW - 3600, NOW + 60) .count(nasty) == 1
    assert nasty in storage.label_values("process", NOW - 3600, NOW + 60)
    got = merged(storage, 'cpu{service=~"x..; DROP TABLE batches; --.*"}', NOW - 3600, NOW + 60)
    assert list(got) == ["main;q"]
    with storage.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(batches)).scalar() >= 1


def test_rejects_out_of_retention(storage: Storage) -> None:
    with pytest.raises(IngestRejected, match="retention"):
        storage.ingest(cpu_profile({"a": 1}, at=NOW - 40 * 86400), {"service": "old"})
    with pytest.raises(IngestRejected, match="future"):
        storage.ingest(cpu_profile({"a": 1}, at=NOW + 7200), {"service": "old"})


def test_rollups_give_the_same_answer(storage: Storage) -> None:
    base = (NOW - 3 * 3600) - (NOW - 3 * 3600) % 3600
    for i in range(0, 3600 + 600, 10):
        storage.ingest(cpu_profile({"main;r": 1 + i % 7, f"main;r;x{i % 13}": 2}, at=base + i,
                                   labels={"main;r": {"pid": str(i % 3)}}), {"service": "roll", "host": "h"})
    before = merged(storage, 'cpu{service="roll"}', base, base + 4200)
    before_filtered = merged(storage, 'cpu{service="roll", pid="1"}', base, base + 4200)
    storage.rollup(now=NOW)
    sel = storage.select(parse_selector('cpu{service="roll"}'), base, base + 4200)
    assert sel.rows_read < 50  # one hourly row + ten minute rows instead of 420 batches
    assert merged(storage, 'cpu{service="roll"}', base, base + 4200) == before
    assert merged(storage, 'cpu{service="roll", pid="1"}', base, base + 4200) == before_filtered
    # a late batch invalidates its bucket; the next rollup includes it
    storage.ingest(cpu_profile({"main;late": 5}, at=base + 100), {"service": "roll", "host": "h"})
    storage.rollup(now=NOW)
    after = merged(storage, 'cpu{service="roll"}', base, base + 4200)
    assert after["main;late"] > 0 and after["main;r"] == before["main;r"]


def test_concurrent_duplicate_keys_store_once(storage: Storage) -> None:
    results: list[str] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        results.append(storage.ingest(cpu_profile({"main;dup": 1}, at=NOW), {"service": "dup"}, key="same-key").status)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["duplicate"] * 7 + ["stored"]
    assert merged(storage, 'cpu{service="dup"}', NOW - 60, NOW + 60) == {"main;dup": cpu_profile({}).period}


def test_retention(storage: Storage) -> None:
    old = NOW - 33 * 86400
    storage.ingest(cpu_profile({"main;old": 1}, at=old), {"service": "ret"}, now=old)
    storage.ingest(cpu_profile({"main;new": 1}, at=NOW), {"service": "ret"})
    assert "main;old" in merged(storage, 'cpu{service="ret"}', old - 10, NOW + 60)
    result = storage.maintain(now=NOW)
    assert "main;old" not in merged(storage, 'cpu{service="ret"}', old - 10, NOW + 60)
    assert "main;new" in merged(storage, 'cpu{service="ret"}', old - 10, NOW + 60)
    if db.is_postgres(storage.engine):
        day = old - old % 86400
        from server.storage.partitions import day_name

        assert day_name("batches", day) in result["dropped"]
        with storage.engine.connect() as conn:
            assert conn.execute(text("SELECT to_regclass(:n)"), {"n": day_name("batches", day)}).scalar() is None
        assert all(d >= NOW - 31 * 86400 for d in storage.partitions.existing_days())
        assert NOW + 86400 - (NOW + 86400) % 86400 in storage.partitions.existing_days()  # created ahead
