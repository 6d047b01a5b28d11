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

from sqlalchemy import BigInteger, Connection, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY

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


def id_filters(conn: Connection, column: Any, ids: list[int]) -> list[Any]:
    """WHERE clauses that together pick `column` in `ids`: one `= ANY(array)` on PostgreSQL (planned
    3-4x faster than thousands of IN parameters), chunks within SQLite's parameter limit otherwise."""
    if conn.dialect.name == "postgresql":
        return [column == func.any(bindparam(None, list(ids), type_=ARRAY(BigInteger)))]
    return [column.in_(ids[i:i + 5000]) for i in range(0, len(ids), 5000)] or [column.in_([])]


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
    values = conn.execute(select(sl.value_hash, sl.value).where(sl.name == m.name).distinct()).all()
    hashes = []
    for start in range(0, len(values), 4096):
        deadline.check()
        hashes += [int(h) for h, v in values[start:start + 4096] if m.matches(v)]
    out: set[int] = set()
    for i in range(0, len(hashes), CHUNK):
        part = hashes[i:i + CHUNK]
        for sid, value in conn.execute(select(sl.series_id, sl.value).where(sl.name == m.name,
                                                                            sl.value_hash.in_(part))):
            if m.matches(value):  # a hash collision costs a check, never a wrong answer
                out.add(int(sid))
    return out


# Parsed labels and sample types by series id. A series id is a hash of exactly these, so an entry
# can never go stale, whatever the database: a query reads only ids and first/last seen, and parses
# the JSON of series it has not met (at 10k series the parsing was most of a query's cost).
_PARSED: dict[int, tuple[str, dict[str, str], list[ValueType]]] = {}
PARSED_LIMIT = 1_000_000


def _rows(conn: Connection, query: Any) -> list[SeriesRow]:
    """SeriesRows for `query` (a select over `series` narrowed by WHERE clauses)."""
    seen = []
    for n, (sid, first, last) in enumerate(conn.execute(query.with_only_columns(
            series.c.id, series.c.first_seen, series.c.last_seen))):
        if n % 4096 == 0:
            deadline.check()
        seen.append((int(sid), int(first), int(last)))
    missing = [sid for sid, _f, _l in seen if sid not in _PARSED]
    if len(_PARSED) + len(missing) > PARSED_LIMIT:
        _PARSED.clear()
    parsed: dict[int, tuple[str, dict[str, str], list[ValueType]]] = {}
    cols = (series.c.id, series.c.profile_type, series.c.labels, series.c.sample_types)
    for picks in id_filters(conn, series.c.id, missing) if missing else []:
        deadline.check()
        for sid, ptype, labels, types in conn.execute(select(*cols).where(picks)):
            parsed[int(sid)] = (ptype, json.loads(labels), [ValueType(t, u) for t, u in json.loads(types)])
    _PARSED.update(parsed)
    out = []
    for sid, first, last in seen:
        found = parsed.get(sid) or _PARSED.get(sid)
        if found is not None:
            out.append(SeriesRow(sid, found[0], found[1], found[2], first, last))
    return out


def load_series(conn: Connection, profile_type: str | None, t0: int, t1: int,
                ids: set[int] | None = None) -> list[SeriesRow]:
    """Series of a type alive in [t0, t1) (`last_seen` is refreshed hourly: an hour of slack), optionally
    only those in `ids`."""
    query = select(series.c.id).where(series.c.first_seen <= t1, series.c.last_seen >= t0 - HOUR)
    if profile_type:
        query = query.where(series.c.profile_type == profile_type)
    if ids is None:
        return _rows(conn, query)
    out = []
    for picks in id_filters(conn, series.c.id, sorted(ids)):
        out.extend(_rows(conn, query.where(picks)))
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
    found = load_series(conn, profile_type, t0, t1, ids)
    if not selector.matchers:
        return [(s, []) for s in found]
    out = []
    for s in found:
        ok, rest = split_matchers(selector, s.labels)
        if ok:
            out.append((s, rest))
    return out


def _alive(t0: int, t1: int) -> Any:
    return (series.c.first_seen <= t1) & (series.c.last_seen >= t0 - HOUR)


def label_names(conn: Connection, t0: int, t1: int) -> list[str]:
    """Names of the series labels of series alive in [t0, t1), from the index (no series JSON read)."""
    sl = series_labels.c
    query = select(sl.name).distinct().join_from(series_labels, series, series.c.id == sl.series_id)
    return [str(n) for n in conn.execute(query.where(_alive(t0, t1))).scalars()]


def label_values(conn: Connection, name: str, t0: int, t1: int, limit: int) -> list[str]:
    """Values of series label `name` among series alive in [t0, t1), from the index."""
    sl = series_labels.c
    query = select(sl.value).distinct().join_from(series_labels, series, series.c.id == sl.series_id)
    return [str(v) for v in conn.execute(query.where(sl.name == name, _alive(t0, t1)).limit(limit)).scalars()]
