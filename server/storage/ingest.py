"""Storing one profile: series upsert, dictionary ids, one compact batch row — all in one transaction."""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Connection, delete, func, insert
from sqlalchemy.dialects import postgresql, sqlite

from profiler.model import Profile, ProfileTable, ValueType
from profiler.types import PROFILE_TYPES, column_of, infer_profile_name
from server import db
from server.models import batches, ingest_keys, rollup_buckets, sample_labels, series, series_labels
from server.storage import rows, series_index
from server.storage.dictionary import Assignment
from server.storage.plan import STEPS

if TYPE_CHECKING:
    from server.storage import Storage

_STALE_S = 3600  # series/label `last_seen` is refreshed at most this often per process


class IngestRejected(ValueError):
    """The profile cannot be stored as sent (maps to HTTP 422)."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    status: str  # "stored" or "duplicate"
    id: int = 0
    samples: int = 0
    entries: int = 0


def series_id(profile_type: str, labels: dict[str, str], sample_types: list[list[str]]) -> int:
    text = json.dumps([profile_type, sorted(labels.items()), sample_types], separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


def canonical_columns(profile: Profile | ProfileTable, name: str = "") -> tuple[str, list[ValueType], list[int], int]:
    """(profile name, sample types, column order, main column) with known types in their canonical order.

    Every sample type is kept as a column of one batch row: the types of one pprof share its stacks."""
    ptype = name or infer_profile_name(profile)
    have = list(profile.sample_types)
    known = PROFILE_TYPES.get(ptype)
    if known and set(known) == set(have):
        order = [have.index(vt) for vt in known]
        types = list(known)
    else:
        order, types = list(range(len(have))), have
    return ptype, types, order, column_of(ptype, None, types)


def _insert_ignore(conn: Connection, table, values: dict | list[dict], keys: list[str]):  # type: ignore[no-untyped-def]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return conn.execute(dialect.insert(table).on_conflict_do_nothing(index_elements=keys), values)


def _inserted(conn: Connection, table, values: dict, keys: list[str]) -> bool:  # type: ignore[no-untyped-def]
    """Insert unless the key exists; True when this call inserted (rowcount is unreliable here)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=keys).returning(table.c[keys[0]])
    return conn.execute(stmt, values).first() is not None


_BATCH_COLS = ("series_id", "ts", "id", "n_entries", "total", "period", "duration_ns", "stack_ids", "vals",
               "label_sets", "label_idx", "counters")
_BATCH_TYPES = ("bigint", "bigint", "bigint", "integer", "bigint", "bigint", "bigint", "bytea", "bytea", "text",
                "bytea", "text")
# PostgreSQL: the idempotency key and the batch in ONE statement (a data-modifying CTE), so a batch
# whose dictionary entries are all cached is one round trip in autocommit: the statement is its
# own transaction, and it has committed when execute() returns. A duplicate key inserts nothing.
_PG_INSERT_BATCH = "INSERT INTO batches ({}) VALUES ({})".format(
    ", ".join(_BATCH_COLS), ", ".join(f"%({c})s" for c in _BATCH_COLS))
_PG_INSERT_KEYED = (
    "WITH k AS (INSERT INTO ingest_keys (key, batch_id, created_at) VALUES (%(key)s, %(id)s, %(created_at)s) "
    "ON CONFLICT (key) DO NOTHING RETURNING 1) "
    "INSERT INTO batches ({}) SELECT {} WHERE EXISTS (SELECT FROM k) RETURNING id".format(
        ", ".join(_BATCH_COLS), ", ".join(f"%({c})s::{t}" for c, t in zip(_BATCH_COLS, _BATCH_TYPES))))


def _insert_batch(conn: Connection, row: dict, key: str | None, now_s: int) -> bool:  # type: ignore[type-arg]
    """Insert the batch (and its idempotency key); False when the key was already stored."""
    if conn.dialect.name == "postgresql":
        if key is None:
            conn.exec_driver_sql(_PG_INSERT_BATCH, row)
            return True
        return conn.exec_driver_sql(_PG_INSERT_KEYED, {**row, "key": key, "created_at": now_s}).first() is not None
    if key is not None and not _inserted(conn, ingest_keys, {"key": key, "batch_id": row["id"], "created_at": now_s},
                                         ["key"]):
        return False
    conn.execute(insert(batches), row)
    return True


def store(storage: Storage, table: ProfileTable, labels: dict[str, str], key: str | None,
          now: float | None = None, name: str = "") -> IngestResult:
    """Store `table` under series `labels`; committed before returning.

    The steady state (series and label pairs recently touched by this process, every function and
    stack id cached, batch not late) is one autocommitted statement on PostgreSQL; anything else
    runs in one transaction with the dictionary inserts and touches.
    """
    now_s = int(now if now is not None else time.time())
    ptype, types, order, main = canonical_columns(table, name)
    if not types:
        raise IngestRejected("profile has no sample types")
    ts = table.time_nanos // 1_000_000_000 if table.time_nanos > 0 else now_s
    oldest = now_s - storage.retention_days * 86400
    if ts < oldest:
        raise IngestRejected(f"profile time {ts} is older than the retention window ({storage.retention_days} days)")
    if ts > now_s + 3600:
        raise IngestRejected(f"profile time {ts} is more than an hour in the future (server time {now_s})")
    sample_types = [[vt.type, vt.unit] for vt in types]
    sid = series_id(ptype, labels, sample_types)

    n = len(table.stacks)
    values = np.asarray(table.values, dtype=np.int64).reshape(n, len(table.sample_types))
    if order != list(range(values.shape[1])):
        values = values[:, order]
    interned = dict.fromkeys(table.labels, 0)  # distinct label sets in first-seen order, at C speed
    for i, ls in enumerate(interned):
        interned[ls] = i
    label_idx = np.fromiter(map(interned.__getitem__, table.labels), np.int64, n)
    label_sets = list(interned)
    has_labels = any(label_sets)
    total = int(values[:, main].sum()) if n else 0
    storage.partitions.ensure_day(ts)

    flat_stacks = table.flat_stacks()  # made once: a table decoded to tuples (folded text) builds it
    assignment = storage.dictionary.plan(table.frames, flat_stacks)
    # JSON-safe in browsers; unique within (series, second), not a secret: the process PRNG (reseeded
    # after fork) spares a getrandom() syscall per request.
    batch_id = random.getrandbits(53)
    counters = {k: int(v) for k, v in table.counters.items()} if table.counters else None
    meta = {"series_id": sid, "ts": ts, "id": batch_id, "total": total, "period": int(table.period),
            "duration_ns": int(table.duration_nanos), "counters": json.dumps(counters) if counters else None}
    fresh_labels = _fresh_label_pairs(storage, label_sets, ts) if has_labels else []
    late = ts < now_s - storage.rollup_grace_s
    steady = (assignment.complete and not fresh_labels and not late and _series_fresh(storage, sid, ts)
              and db.is_postgres(storage.engine))
    if steady:
        row = _row(assignment, values, label_idx if has_labels else None, label_sets, meta)
        with storage.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            if not _insert_batch(conn, row, key, now_s):
                return IngestResult("duplicate")
    else:
        with db.write(storage.engine) as conn:
            if not assignment.complete:
                storage.dictionary.fill(conn, assignment, flat_stacks)
            row = _row(assignment, values, label_idx if has_labels else None, label_sets, meta)
            stored = _insert_batch(conn, row, key, now_s)
            touched = False
            if stored:
                touched = _touch_series(storage, conn, sid, ptype, labels, sample_types, ts)
                if fresh_labels:
                    _touch_sample_labels(conn, fresh_labels, ts)
                if late:
                    # A late batch for a bucket that may already be rolled up: have it recomputed.
                    for step in STEPS:
                        conn.execute(delete(rollup_buckets).where(rollup_buckets.c.step == step,
                                                                  rollup_buckets.c.ts == ts - ts % step))
        storage.dictionary.committed(assignment)  # dictionary rows are valid even for a duplicate
        if not stored:
            return IngestResult("duplicate")
        if touched:  # seen_series holds what the database holds: a stale last_seen hides the series
            first, last = storage.seen_series.get(sid, (ts, ts))
            storage.seen_series[sid] = (min(first, ts), max(last, ts))
        if len(storage.seen_labels) > 1_000_000:
            storage.seen_labels.clear()
        for pair in fresh_labels:
            storage.seen_labels[pair] = ts
    return IngestResult("stored", batch_id, n, row["n_entries"])


def _row(assignment: Assignment, values: np.ndarray, label_idx: np.ndarray | None, label_sets: list,
         meta: dict) -> dict:  # type: ignore[type-arg]
    ids = np.fromiter(assignment.stack_ids, np.int64, len(assignment.stack_ids))  # type: ignore[arg-type]
    entries = rows.combine(ids, values, label_idx)
    return {**rows.encode(entries, label_sets if label_idx is not None else None), **meta}


def _series_fresh(storage: Storage, sid: int, ts: int) -> bool:
    seen = storage.seen_series.get(sid)
    return seen is not None and seen[0] <= ts and seen[1] >= ts - _STALE_S


def _fresh_label_pairs(storage: Storage, label_sets: list, ts: int) -> list[tuple[str, str]]:
    """Per-sample label pairs this process has not stored as seen within the last `_STALE_S`."""
    seen = storage.seen_labels
    stale = ts - _STALE_S
    fresh = {pair for labels in label_sets for pair in labels
             if (last := seen.get(pair)) is None or last < stale}
    return sorted(fresh)


def _touch_series(storage: Storage, conn: Connection, sid: int, ptype: str, labels: dict[str, str],
                  sample_types: list[list[str]], ts: int) -> bool:
    """Upsert the series' first/last seen (unless this process stored them within the hour); True if written."""
    if _series_fresh(storage, sid, ts):
        return False
    pg = conn.dialect.name == "postgresql"
    stmt = (postgresql if pg else sqlite).insert(series).values(
        id=sid, profile_type=ptype, labels=json.dumps(labels, sort_keys=True, separators=(",", ":")),
        sample_types=json.dumps(sample_types), first_seen=ts, last_seen=ts)
    least, greatest = (func.least, func.greatest) if pg else (func.min, func.max)
    conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={
        "first_seen": least(series.c.first_seen, stmt.excluded.first_seen),
        "last_seen": greatest(series.c.last_seen, stmt.excluded.last_seen)}))
    if sid not in storage.seen_series and labels:  # first sight in this process: index its label pairs
        _insert_ignore(conn, series_labels, series_index.label_rows(sid, labels), ["name", "value_hash", "series_id"])
    return True


def _touch_sample_labels(conn: Connection, pairs: list[tuple[str, str]], ts: int) -> None:
    pg = conn.dialect.name == "postgresql"
    stmt = (postgresql if pg else sqlite).insert(sample_labels)
    greatest = func.greatest if pg else func.max
    conn.execute(stmt.on_conflict_do_update(index_elements=["name", "value"], set_={
        "last_seen": greatest(sample_labels.c.last_seen, stmt.excluded.last_seen)}),
        [{"name": k, "value": v, "last_seen": ts} for k, v in pairs])
