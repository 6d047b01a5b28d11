"""The storage service layer: the only code that reads or writes profile data.

`Storage` hides the dialect: PostgreSQL gets day partitions dropped for retention; SQLite gets
the same tables, one file, and DELETE for retention. Views call these methods and never commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine, func, select, text

from profiler.model import Frame, ValueType
from profiler.types import aggregation, query_types
from server import db
from server.models import batches, sample_labels, series
from server.storage import ingest as _ingest
from server.storage import query as _query
from server.storage import rollup as _rollup
from server.storage import series_index
from server.storage.dictionary import Dictionary
from server.storage.partitions import Partitions

if TYPE_CHECKING:
    from profiler.model import Profile, ProfileTable
    from profiler.selector import Selector

IngestRejected = _ingest.IngestRejected
IngestResult = _ingest.IngestResult
Selection = _query.Selection
_MAINTENANCE_LOCK = 0x686F7470  # "hotp"
BUILTIN_TYPES = (("cpu", "cpu", "nanoseconds"), ("offcpu", "off_cpu", "nanoseconds"))


class Storage:
    """Profile storage over one SQLAlchemy engine (shared by every request of a process)."""

    def __init__(self, engine: Engine, retention_days: int = 30, rollup_grace_s: int = 120,
                 cache_entries: int = 1_000_000) -> None:
        self.engine = engine
        self.retention_days = retention_days
        self.rollup_grace_s = rollup_grace_s
        self.dictionary = Dictionary(cache_entries)
        self.partitions = Partitions(engine)
        self.seen_series: dict[int, tuple[int, int]] = {}  # first/last seen, as stored
        self.seen_labels: dict[tuple[str, str], int] = {}

    # -- write ----------------------------------------------------------------------------------
    def ingest(self, profile: Profile | ProfileTable, labels: dict[str, str], key: str | None = None,
               now: float | None = None, name: str = "") -> IngestResult:
        """Store one profile (the columnar table the HTTP API decodes to, or the object model) under
        profile `name` (inferred from its sample types when "")."""
        from profiler.model import ProfileTable

        table = profile if isinstance(profile, ProfileTable) else ProfileTable.from_profile(profile)
        return self.partitions.retrying(lambda: _ingest.store(self, table, labels, key, now, name))

    # -- read -----------------------------------------------------------------------------------
    def select(self, selector: Selector, t0: int, t1: int, all_columns: bool = True) -> Selection:
        with db.read(self.engine) as conn:
            return _query.select_merged(conn, selector, t0, t1, all_columns)

    def resolve(self, stack_ids: Any) -> dict[int, tuple[Frame, ...]]:
        with db.read(self.engine) as conn:
            return self.dictionary.resolve(conn, stack_ids)

    def stacks(self, selection: Selection, column: int | None = None) -> list[tuple[tuple[Frame, ...], int]]:
        """(frames root first, value) pairs of a selection, for tree building."""
        col = selection.main if column is None else column
        frames = self.resolve(selection.stack_ids.tolist())
        vals = selection.values[:, col].tolist() if selection.values.size else []
        return [(frames[s], v) for s, v in zip(selection.stack_ids.tolist(), vals) if s in frames]

    def tree(self, selection: Selection, prefix: Sequence[str] | None = None, column: int | None = None) -> Any:
        """The selection's flame tree (profiler.flametree), optionally only stacks under `prefix`."""
        from profiler.flametree import build_tree_ids

        col = selection.main if column is None else column
        with db.read(self.engine) as conn:
            frames, flat, lengths, kept = self.dictionary.flat(conn, selection.stack_ids)
        values = selection.values[kept, col] if selection.values.size else np.zeros(0, np.int64)
        if prefix:
            offsets = np.cumsum(lengths) - lengths
            ok = lengths >= len(prefix)
            for j, name in enumerate(prefix):
                match = np.fromiter((f.function == name for f in frames), dtype=bool, count=len(frames))
                pos = np.where(ok, offsets + j, 0)
                ok &= match[flat[pos]] if flat.size else ok
            flat, lengths, values = flat[np.repeat(ok, lengths)], lengths[ok], values[ok]
        return build_tree_ids(frames, flat, lengths, values)

    def timeline(self, selector: Selector, t0: int, t1: int, step: int, group_by: str | None = None,
                 max_groups: int = 100) -> _query.Timeline:
        with db.read(self.engine) as conn:
            return _query.timeline(conn, selector, t0, t1, step, group_by, max_groups)

    def profile_types(self) -> list[dict[str, str]]:
        """Every queryable type: name (`cpu`, `memory:inuse_space`), sample type, unit, aggregation."""
        with db.read(self.engine) as conn:
            rows = conn.execute(select(series.c.profile_type, series.c.sample_types).distinct()).all()
        out = {name: (ValueType(sample, unit)) for name, sample, unit in BUILTIN_TYPES}
        for ptype, types in rows:
            for qtype, vt in query_types(ptype, [ValueType(t, u) for t, u in json.loads(types)]):
                out.setdefault(qtype, vt)
        return [{"name": k, "sample_type": vt.type, "unit": vt.unit, "aggregation": aggregation(vt.type)}
                for k, vt in out.items()]

    def label_names(self, t0: int, t1: int) -> list[str]:
        names: set[str] = set()
        with db.read(self.engine) as conn:
            names.update(series_index.label_names(conn, t0, t1))
            names.update(conn.execute(select(sample_labels.c.name).distinct().where(
                sample_labels.c.last_seen >= t0 - 3600)).scalars())
        return sorted(names)

    def label_values(self, name: str, t0: int, t1: int, selector: Selector | None = None,
                     limit: int = 10_000) -> list[str]:
        values: set[str] = set()
        with db.read(self.engine) as conn:
            ptype = selector.profile_type if selector and selector.profile_type else None
            if selector:
                values.update(s.labels[name] for s, _rest in _query.matching_series(conn, selector, ptype, t0, t1)
                              if name in s.labels)
            else:
                values.update(series_index.label_values(conn, name, t0, t1, limit))
            query = select(sample_labels.c.value).where(sample_labels.c.name == name,
                                                        sample_labels.c.last_seen >= t0 - 3600)
            values.update(conn.execute(query.limit(limit)).scalars())
        return sorted(values)[:limit]

    def ping(self) -> None:
        with db.read(self.engine) as conn:
            conn.execute(select(1))

    def stats(self) -> dict[str, int]:
        with db.read(self.engine) as conn:
            return {"batches": int(conn.execute(select(func.count()).select_from(batches)).scalar() or 0),
                    "series": int(conn.execute(select(func.count()).select_from(series)).scalar() or 0)}

    # -- maintenance ----------------------------------------------------------------------------
    def maintain(self, now: int | None = None, ahead_days: int = 2) -> dict[str, Any]:
        """Create partitions ahead, roll up complete buckets, apply retention.

        Every gunicorn worker (and every server replica) runs this loop; on PostgreSQL an advisory
        lock lets one of them do a round while the others skip it.
        """
        if not db.is_postgres(self.engine):
            return self._maintain(now, ahead_days)
        with self.engine.connect() as conn:
            if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _MAINTENANCE_LOCK}).scalar():
                conn.rollback()
                return {"rolled_buckets": 0, "dropped": [], "skipped": True}
            conn.commit()
            try:
                return self._maintain(now, ahead_days)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MAINTENANCE_LOCK})
                conn.commit()

    def _maintain(self, now: int | None, ahead_days: int) -> dict[str, Any]:
        now = int(now if now is not None else time.time())
        self.partitions.ensure_ahead(now, ahead_days)
        rolled = _rollup.run(self, now)
        dropped = self.partitions.drop_before(now - self.retention_days * 86400)
        return {"rolled_buckets": rolled, "dropped": dropped}

    def rollup(self, now: int | None = None, lookback_s: int = 2 * 86400) -> int:
        return _rollup.run(self, now, lookback_s)
