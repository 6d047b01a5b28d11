"""Shared pieces of the server benchmarks: throwaway PostgreSQL databases, bulk loading, sizes."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_sim import Fleet

from server import db
from server.storage import Storage

PG_URL = os.environ.get("HOTPATH_TEST_PG_URL", "postgresql+psycopg://hotpath:hotpath@127.0.0.1:5432/hotpath_test")


def fresh_database(prefix: str = "hp_bench") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    db.upgrade(url)
    return url


def drop_database(url: str) -> None:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def load(storage: Storage, fleet: Fleet, start: float, duration_s: float, encode_pprof: bool = False,
         progress: bool = True) -> dict[str, float]:
    """Ingest the fleet's batches over [start, start+duration) through the storage layer (no HTTP)."""
    entries = batches = pprof_bytes = 0
    began = time.perf_counter()
    total = int(duration_s / fleet.cfg.interval_s) * fleet.cfg.hosts
    for host, t, profile in fleet.batches(start, duration_s):
        if encode_pprof:
            from fleet_sim import encode

            pprof_bytes += len(encode(profile))
        res = storage.ingest(profile, fleet.series_labels(host), now=t + 1)
        entries += res.entries
        batches += 1
        if progress and batches % 2000 == 0:
            rate = batches / (time.perf_counter() - began)
            print(f"  loaded {batches}/{total} batches ({rate:.0f}/s)", file=sys.stderr, flush=True)
    return {"batches": batches, "entries": entries, "pprof_gz_bytes": pprof_bytes,
            "seconds": time.perf_counter() - began}


def table_bytes(url: str) -> dict[str, int]:
    """Bytes on disk per table (partitions folded into their parent), indexes and TOAST included."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT c.relname, coalesce(p.relname, c.relname) AS parent, pg_total_relation_size(c.oid) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')")).all()
    engine.dispose()
    out: dict[str, int] = {}
    for _name, parent, size in rows:
        out[parent] = out.get(parent, 0) + int(size)
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]
