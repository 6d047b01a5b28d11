"""Loading a simulated fleet straight through the storage layer (no HTTP), in parallel processes.

Used by `server_query.py` and `server_storage.py` to build 36,000-batch datasets in minutes; the
HTTP path is measured separately by `server_ingest.py`.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_sim import Fleet, FleetConfig, encode

from server import db
from server.storage import Storage


def _worker(args: tuple[str, FleetConfig, float, float, int, int, int]) -> dict[str, int]:
    url, cfg, start, duration, part, parts, pprof_every = args
    fleet = Fleet(cfg)
    engine = db.make_engine(url)
    storage = Storage(engine)
    entries = batches = pprof_bytes = pprof_batches = 0
    t = start
    began = time.perf_counter()
    while t < start + duration:
        for host in range(part, cfg.hosts, parts):
            profile = fleet.batch(host, t)
            if pprof_every and batches % pprof_every == 0:
                pprof_bytes += len(encode(profile))
                pprof_batches += 1
            entries += storage.ingest(profile, fleet.series_labels(host), now=t + 1).entries
            batches += 1
            if part == 0 and batches % 2000 == 0:
                rate = batches * parts / (time.perf_counter() - began)
                print(f"  loaded ~{batches * parts} batches ({rate:.0f}/s)", file=sys.stderr, flush=True)
        t += cfg.interval_s
    engine.dispose()
    return {"batches": batches, "entries": entries, "pprof_bytes": pprof_bytes, "pprof_batches": pprof_batches}


def load_parallel(url: str, cfg: FleetConfig, start: float, duration: float, processes: int = 2,
                  pprof_every: int = 0) -> dict[str, float]:
    """Ingest the fleet over [start, start+duration); `pprof_every` samples gzipped-pprof sizes."""
    began = time.perf_counter()
    Storage(db.make_engine(url)).partitions.ensure_day(int(start))
    jobs = [(url, cfg, start, duration, i, processes, pprof_every) for i in range(processes)]
    with mp.get_context("spawn").Pool(processes) as pool:
        results = pool.map(_worker, jobs)
    out: dict[str, float] = {k: sum(r[k] for r in results) for k in results[0]}
    out["seconds"] = time.perf_counter() - began
    return out


def relation_bytes(url: str) -> dict[str, int]:
    """On-disk bytes per table (partitions folded into their parent), indexes and TOAST included."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT coalesce(p.relname, c.relname), pg_total_relation_size(c.oid) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'")).all()
    engine.dispose()
    out: dict[str, int] = {}
    for parent, size in rows:
        out[parent] = out.get(parent, 0) + int(size)
    return out
