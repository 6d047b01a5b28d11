"""Storing one profile: series upsert, dictionary ids, one compact batch row — all in one transaction."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Connection, delete, insert, update
from sqlalchemy.dialects import postgresql, sqlite

from profiler.model import Profile, ValueType
from profiler.types import MAIN_VALUE, PROFILE_TYPES, profile_type_of
from server import db
from server.models import batches, ingest_keys, rollup_buckets, sample_labels, series
from server.storage import rows
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


def canonical_columns(profile: Profile) -> tuple[str, list[ValueType], list[int], int]:
    """(type, sample types, column order, main column) with known types in their canonical order."""
    ptype = profile_type_of(profile)
    have = list(profile.sample_types)
    known = PROFILE_TYPES.get(ptype)
    if known and set(known) == set(have):
        order = [have.index(vt) for vt in known]
        types = list(known)
    else:
        order, types = list(range(len(have))), have
    main_vt = MAIN_VALUE.get(ptype)
    main = types.index(main_vt) if main_vt in types else len(types) - 1
    return ptype, types, order, main


def _insert_ignore(conn: Connection, table, values: dict | list[dict], keys: list[str]):  # type: ignore[no-untyped-def]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return conn.execute(dialect.insert(table).on_conflict_do_nothing(index_elements=keys), values)


def _inserted(conn: Connection, table, values: dict, keys: list[str]) -> bool:  # type: ignore[no-untyped-def]
    """Insert unless the key exists; True when this call inserted (rowcount is unreliable here)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=keys).returning(table.c[keys[0]])
    return conn.execute(stmt, values).first() is not None


def store(storage: Storage, profile: Profile, labels: dict[str, str], key: str | None,
          now: float | None = None, frames: dict | None = None) -> IngestResult:  # type: ignore[type-arg]
    """Store `profile` under series `labels`; one transaction, committed before returning."""
    now_s = int(now if now is not None else time.time())
    ptype, types, order, main = canonical_columns(profile)
    if not types:
        raise IngestRejected("profile has no sample types")
    ts = profile.time_nanos // 1_000_000_000 if profile.time_nanos > 0 else now_s
    oldest = now_s - storage.retention_days * 86400
    if ts < oldest:
        raise IngestRejected(f"profile time {ts} is older than the retention window ({storage.retention_days} days)")
    if ts > now_s + 3600:
        raise IngestRejected(f"profile time {ts} is more than an hour in the future (server time {now_s})")
    sample_types = [[vt.type, vt.unit] for vt in types]
    sid = series_id(ptype, labels, sample_types)

    samples = profile.samples
    n = len(samples)
    values = np.zeros((n, len(types)), dtype=np.int64)
    if n:
        raw = np.asarray([s.values for s in samples], dtype=np.int64).reshape(n, -1)
        values = raw[:, order]
    interned: dict[tuple[tuple[str, str], ...], int] = {}
    label_idx = np.fromiter((interned.setdefault(s.labels, len(interned)) for s in samples), np.int64, n)
    label_sets = list(interned)
    has_labels = any(label_sets)
    total = int(values[:, main].sum()) if n else 0
    storage.partitions.ensure_day(ts)

    with db.write(storage.engine) as conn:
        batch_id = secrets.randbits(53)  # JSON-safe in browsers
        key_row = {"key": key, "batch_id": batch_id, "created_at": now_s}
        if key is not None and not _inserted(conn, ingest_keys, key_row, ["key"]):
            return IngestResult("duplicate")
        _touch_series(storage, conn, sid, ptype, labels, sample_types, ts)
        stack_ids, pending_f, pending_s = storage.dictionary.assign(conn, [s.stack for s in samples], frames)
        entries = rows.combine(np.asarray(stack_ids, dtype=np.int64), values,
                               label_idx if has_labels else None)
        row = rows.encode(entries, label_sets if has_labels else None)
        counters = {k: int(v) for k, v in profile.counters.items()} if profile.counters else None
        conn.execute(insert(batches), {
            **row, "series_id": sid, "ts": ts, "id": batch_id, "total": total, "period": int(profile.period),
            "duration_ns": int(profile.duration_nanos), "counters": json.dumps(counters) if counters else None,
        })
        fresh_labels = _touch_sample_labels(storage, conn, label_sets, ts) if has_labels else []
        if ts < now_s - storage.rollup_grace_s:
            # A late batch for a bucket that may already be rolled up: have it recomputed.
            for step in STEPS:
                conn.execute(delete(rollup_buckets).where(rollup_buckets.c.step == step,
                                                          rollup_buckets.c.ts == ts - ts % step))
    storage.dictionary.committed(pending_f, pending_s)
    first, last = storage.seen_series.get(sid, (ts, ts))
    storage.seen_series[sid] = (min(first, ts), max(last, ts))
    if len(storage.seen_labels) > 1_000_000:
        storage.seen_labels.clear()
    for pair in fresh_labels:
        storage.seen_labels[pair] = ts
    return IngestResult("stored", batch_id, n, int(entries.stack_ids.size))


def _touch_series(storage: Storage, conn: Connection, sid: int, ptype: str, labels: dict[str, str],
                  sample_types: list[list[str]], ts: int) -> None:
    seen = storage.seen_series.get(sid)
    if seen is not None and seen[0] <= ts and seen[1] >= ts - _STALE_S:
        return
    if not _inserted(conn, series, {
        "id": sid, "profile_type": ptype, "labels": json.dumps(labels, sort_keys=True, separators=(",", ":")),
        "sample_types": json.dumps(sample_types), "first_seen": ts, "last_seen": ts,
    }, ["id"]):
        conn.execute(update(series).where(series.c.id == sid, series.c.last_seen < ts).values(last_seen=ts))
        conn.execute(update(series).where(series.c.id == sid, series.c.first_seen > ts).values(first_seen=ts))


def _touch_sample_labels(storage: Storage, conn: Connection, label_sets: list,
                         ts: int) -> list[tuple[str, str]]:
    fresh = []
    seen = storage.seen_labels
    for labels in label_sets:
        for pair in labels:
            last = seen.get(pair)
            if last is None or last < ts - _STALE_S:
                fresh.append(pair)
    if not fresh:
        return []
    unique = sorted(set(fresh))
    _insert_ignore(conn, sample_labels, [{"name": k, "value": v, "last_seen": ts} for k, v in unique],
                   ["name", "value"])
    for k, v in unique:
        conn.execute(update(sample_labels).where(sample_labels.c.name == k, sample_labels.c.value == v,
                                                 sample_labels.c.last_seen < ts).values(last_seen=ts))
    return unique
