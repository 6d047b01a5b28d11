"""Finding the series a selector picks through the `series_labels` index, not by reading every series.

A positive matcher (`name="v"`, or `name=~"re"` that cannot match the empty string) narrows the
candidates through the index: an equality by its value hash, a regex over the distinct values of its
name only. Every candidate is then checked against the whole selector (negative matchers, and labels
a series lacks, which per-sample labels may still carry). A matcher on a name that per-sample labels
use cannot narrow series (a series without that label may hold matching samples), so it is left to
the check; a selector with no narrowing matcher reads every series of its type, as it must.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from profiler.model import ValueType
from server import deadline
from server.models import sample_labels, series, series_labels
from server.storage.plan import HOUR

if TYPE_CHECKING:
    from profiler.selector import Matcher, Selector

CHUNK = 500


@dataclass(slots=True)
class SeriesRow:
    id: int
    profile_type: str
    labels: dict[str, str]
    sample_types: list[ValueType]
    first_seen: int = 0
    last_seen: int = 0


def value_hash(value: str) -> int:
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def label_rows(series_id: int, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The `series_labels` rows of one series (inserted with the series)."""
    return [{"name": k, "value_hash": value_hash(v), "series_id": series_id, "value": v} for k, v in labels.items()]


def split_matchers(selector: Selector, labels: dict[str, str]) -> tuple[bool, list[Matcher]]:
    """(series-level verdict, matchers left for per-sample labels) for one series."""
    rest = []
    for m in selector.matchers:
        if m.name in labels:
            if not m.matches(labels[m.name]):
                return False, []
        else:
            rest.append(m)
    return True, rest


def _narrows(conn: Connection, m: Matcher) -> bool:
    if m.op not in ("=", "=~") or m.matches(""):
        return False
    used_per_sample = conn.execute(select(sample_labels.c.name).where(sample_labels.c.name == m.name).limit(1))
    return used_per_sample.first() is None


def _ids_for(conn: Connection, m: Matcher) -> set[int]:
    """Series ids whose label `m.name` satisfies the positive matcher `m`."""
    sl = series_labels.c
    if m.op == "=":
        query = select(sl.series_id).where(sl.name == m.name, sl.value_hash == value_hash(m.value), sl.value == m.value)
        return {int(s) for s in conn.execute(query).scalars()}
    hashes = []
    for n, value in enumerate(conn.execute(select(sl.value_hash, sl.value).where(sl.name == m.name).distinct())):
        if n % 4096 == 0:
            deadline.check()
        if m.matches(value[1]):
            hashes.append(int(value[0]))
    out: set[int] = set()
    for i in range(0, len(hashes), CHUNK):
        part = hashes[i:i + CHUNK]
        for sid, value in conn.execute(select(sl.series_id, sl.value).where(sl.name == m.name,
                                                                            sl.value_hash.in_(part))):
            if m.matches(value):  # a hash collision costs a check, never a wrong answer
                out.add(int(sid))
    return out


def _rows(conn: Connection, query: Any) -> list[SeriesRow]:
    out = []
    for n, r in enumerate(conn.execute(query)):
        if n % 4096 == 0:
            deadline.check()
        out.append(SeriesRow(int(r.id), r.profile_type, json.loads(r.labels),
                             [ValueType(t, u) for t, u in json.loads(r.sample_types)], int(r.first_seen),
                             int(r.last_seen)))
    return out


def load_series(conn: Connection, profile_type: str | None, t0: int, t1: int,
                ids: set[int] | None = None) -> list[SeriesRow]:
    """Series of a type alive in [t0, t1) (`last_seen` is refreshed hourly: an hour of slack), optionally
    only those in `ids`."""
    query = select(series).where(series.c.first_seen <= t1, series.c.last_seen >= t0 - HOUR)
    if profile_type:
        query = query.where(series.c.profile_type == profile_type)
    if ids is None:
        return _rows(conn, query)
    ordered = sorted(ids)
    out = []
    for i in range(0, len(ordered), CHUNK):
        out.extend(_rows(conn, query.where(series.c.id.in_(ordered[i:i + CHUNK]))))
    return out


def matching_series(conn: Connection, selector: Selector, profile_type: str | None, t0: int,
                    t1: int) -> list[tuple[SeriesRow, list[Matcher]]]:
    """(series, matchers left for per-sample labels) for each series `selector` picks in [t0, t1)."""
    ids: set[int] | None = None
    for m in selector.matchers:
        if _narrows(conn, m):
            found = _ids_for(conn, m)
            ids = found if ids is None else ids & found
            if not ids:
                return []
    out = []
    for s in load_series(conn, profile_type, t0, t1, ids):
        ok, rest = split_matchers(selector, s.labels)
        if ok:
            out.append((s, rest))
    return out
