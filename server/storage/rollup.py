"""Rollups: merge each series' batches per minute, and minutes per hour, once a bucket is complete."""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import and_, delete, insert, select

from server import db
from server.models import batches, rollup_buckets, rollups
from server.storage import rows
from server.storage.plan import MINUTE, STEPS
from server.storage.query import SNAPSHOTS

if TYPE_CHECKING:
    from server.storage import Storage

log = logging.getLogger("hotpath.rollup")
_COLS = ("series_id", "n_entries", "total", "period", "duration_ns", "stack_ids", "vals", "label_sets",
         "label_idx", "counters")


def _merge_rows(source: list) -> dict:  # type: ignore[type-arg]
    """One rollup row from several rows: per-stack sums, per-sample labels dropped.

    Dropping labels keeps a rollup row at one entry per distinct stack (PIDs would multiply it);
    selections that filter on per-sample labels read raw batches instead.
    """
    parts = [rows.decode(r) for r in source]
    merged = rows.combine(np.concatenate([p.stack_ids for p in parts]), np.concatenate([p.values for p in parts]),
                          None)
    out = rows.encode(merged, None)
    counters: dict[str, int] = defaultdict(int)
    for r in source:
        row = json.loads(r.counters or "{}")
        # How many profiles the row merges, so gauges (live heap) can still be averaged over a range.
        counters[SNAPSHOTS] += int(row.pop(SNAPSHOTS, 1))
        for k, v in row.items():
            counters[k] += int(v)
    out.update(total=sum(int(r.total) for r in source), period=int(source[0].period),
               duration_ns=sum(int(r.duration_ns) for r in source),
               counters=json.dumps(dict(counters)) if counters else None)
    return out


def roll_bucket(storage: Storage, step: int, start: int) -> int:
    """(Re)compute one bucket for every series; returns the number of rollup rows written."""
    if step == MINUTE:
        src, where = batches, and_(batches.c.ts >= start, batches.c.ts < start + step)
    else:
        finer = STEPS[STEPS.index(step) + 1]
        src = rollups
        where = and_(rollups.c.step == finer, rollups.c.ts >= start, rollups.c.ts < start + step)
    storage.partitions.ensure_day(start)
    written = 0
    with db.write(storage.engine) as conn:
        grouped: dict[int, list] = defaultdict(list)  # type: ignore[type-arg]
        cols = [src.c[name] for name in _COLS]
        for r in conn.execute(select(*cols).where(where)):
            grouped[int(r.series_id)].append(r)
        conn.execute(delete(rollups).where(rollups.c.step == step, rollups.c.ts == start))
        for sid, source in grouped.items():
            conn.execute(insert(rollups), {**_merge_rows(source), "series_id": sid, "step": step, "ts": start})
            written += 1
        conn.execute(delete(rollup_buckets).where(rollup_buckets.c.step == step, rollup_buckets.c.ts == start))
        conn.execute(insert(rollup_buckets), {"step": step, "ts": start, "done_at": int(time.time())})
    return written


def run(storage: Storage, now: int | None = None, lookback_s: int = 2 * 86400, limit: int = 10_000) -> int:
    """Roll up every complete, not-yet-done minute and hour within `lookback_s`; returns buckets done."""
    now = int(now if now is not None else time.time())
    horizon = now - storage.rollup_grace_s
    oldest = now - lookback_s
    with db.read(storage.engine) as conn:
        done = {(int(s), int(t)) for s, t in conn.execute(
            select(rollup_buckets.c.step, rollup_buckets.c.ts).where(rollup_buckets.c.ts >= oldest))}
        lo = conn.execute(select(batches.c.ts).where(batches.c.ts >= oldest).order_by(batches.c.ts).limit(1)).scalar()
    if lo is None:
        return 0
    count = 0
    for step in reversed(STEPS):  # fine to coarse: each tier is built from the one below
        start = int(lo) - int(lo) % step
        while start + step <= horizon and count < limit:
            if (step, start) not in done:
                storage.partitions.retrying(lambda: roll_bucket(storage, step, start))  # noqa: B023 - called now
                count += 1
            start += step
    return count
