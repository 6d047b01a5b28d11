"""Flame-graph query latency over 1 h and 24 h of a 100-host fleet (PostgreSQL).

Loads 1 h of the simulated fleet (hosts x 360 batches, ~300 unique stacks each) through the storage
layer (not HTTP, to save time; ingest over HTTP is `server_ingest.py`), rolls it up, then:
  * 1 h: flame graph (build + trim to 2,048 nodes + wire JSON) over an unaligned last hour, p50/p90,
    against the same query forced onto raw batches (no rollups) as the same-run baseline;
  * 24 h: the loaded hour's hourly rollups are copied to the 23 hours before it (and the earliest
    hour's minute rollups and raw batches too, for the unaligned edge), then the same query over 24 h.
    The copy stands in for 23 more hours of ingest (864,000 batches would take hours here); it
    keeps each hour's data as large as a real one, but the stack universe does not grow with time.

  python bench/server_query.py --hosts 100 --runs 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_sim import FleetConfig
from server_common import drop_database, fresh_database
from server_load import load_parallel, relation_bytes

from profiler.selector import parse_selector
from server import db, render
from server.heap import keep_freed_memory
from server.storage import Storage
from server.storage import query as squery


def flame(storage: Storage, query: str, t0: int, t1: int, max_nodes: int = 2048) -> tuple[float, int, int]:
    started = time.perf_counter()
    sel = storage.select(parse_selector(query), t0, t1, all_columns=False)
    doc = render.flame_json(storage, sel, max_nodes, None)
    body = json.dumps(doc)
    return time.perf_counter() - started, sel.rows_read, len(body)


def timed_runs(storage: Storage, query: str, t0: int, t1: int, runs: int) -> tuple[list[float], int]:
    flame(storage, query, t0, t1)  # warm the dictionary caches, as a running server has them
    out, rows = [], 0
    for _ in range(runs):
        seconds, rows, _size = flame(storage, query, t0, t1)
        out.append(seconds)
    return out, rows


def replicate_hours(url: str, hour: int, back: int) -> None:
    """Copy the loaded hour's rollups to `back` earlier hours; the earliest gets raw + minute data too."""
    engine = db.make_engine(url)
    storage = Storage(engine)
    for k in range(1, back + 1):
        storage.partitions.ensure_day(hour - k * 3600)
    cols = "n_entries, total, period, duration_ns, stack_ids, vals, label_sets, label_idx, counters"
    with db.write(engine) as conn:
        for k in range(1, back + 1):
            shift = k * 3600
            steps = "(60, 600, 3600)" if k == back else "(3600)"
            conn.execute(text(
                f"INSERT INTO rollups (series_id, step, ts, {cols}) SELECT series_id, step, ts - {shift}, {cols} "
                f"FROM rollups WHERE ts >= {hour} AND ts < {hour + 3600} AND step IN {steps}"))
            conn.execute(text(
                f"INSERT INTO rollup_buckets (step, ts, done_at) SELECT step, ts - {shift}, done_at "
                f"FROM rollup_buckets WHERE ts >= {hour} AND ts < {hour + 3600} AND step IN {steps}"))
            if k == back:
                conn.execute(text(
                    f"INSERT INTO batches (series_id, ts, id, {cols}) SELECT series_id, ts - {shift}, id + 1, {cols} "
                    f"FROM batches WHERE ts >= {hour} AND ts < {hour + 3600}"))
        conn.execute(text(f"UPDATE series SET first_seen = first_seen - {back * 3600 + 3600}"))
    with db.autocommit(engine) as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()


def load_dataset(url: str, cfg: FleetConfig, hour: int, minutes: int, processes: int) -> None:
    """`minutes` of the fleet from `hour` on, rolled up, and its rollups copied to the 23 hours before."""
    print(f"loading {cfg.hosts} hosts x {minutes} min ({cfg.hosts * minutes * 6} batches)...", file=sys.stderr)
    loaded = load_parallel(url, cfg, hour, minutes * 60, processes)
    print(f"loaded {int(loaded['batches'])} batches, {int(loaded['entries'])} entries in "
          f"{loaded['seconds']:.0f} s ({loaded['batches'] / loaded['seconds']:.0f} batches/s, storage layer)")
    storage = Storage(db.make_engine(url), rollup_grace_s=0)
    began = time.perf_counter()
    now = int(time.time())
    buckets = storage.rollup(now=hour + 3600 + 1, lookback_s=3 * 3600 + now - hour)
    print(f"rollup: {buckets} buckets in {time.perf_counter() - began:.1f} s")
    storage.engine.dispose()
    replicate_hours(url, hour, 23)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--minutes", type=int, default=60, help="minutes of fleet data to load (default 60)")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the database (prints its URL)")
    ap.add_argument("--db", help="reuse a database loaded by an earlier --keep run")
    args = ap.parse_args(argv)

    cfg = FleetConfig(hosts=args.hosts, services=args.services)
    now = int(time.time())
    hour = now - now % 3600 - 2 * 3600  # a whole past hour, so it can be rolled up
    keep_freed_memory()  # as every server worker does
    url = args.db or fresh_database("hp_bench_query")
    try:
        if not args.db:
            load_dataset(url, cfg, hour, args.minutes, args.processes)
        storage = Storage(db.make_engine(url), rollup_grace_s=0)
        if args.db:  # the loaded hour is the newest one in the database
            with storage.engine.connect() as conn:
                newest = int(conn.execute(text("SELECT max(ts) FROM batches")).scalar())
            hour = newest - newest % 3600
        query = "cpu{}"
        t1 = hour + args.minutes * 60 - 30  # unaligned: minute and raw edges are exercised too
        t0 = t1 - 3600
        one_h, rows_1h = timed_runs(storage, query, t0, t1, args.runs)
        # Same-run baseline: identical query with the rollup plan disabled (every raw batch read).
        original = squery.plan_for
        squery.plan_for = lambda conn, a, b: squery.make_plan(a, b, {})
        raw_1h, rows_raw = timed_runs(storage, query, t0, t1, max(3, args.runs // 2))
        squery.plan_for = original
        day, rows_24h = timed_runs(storage, query, t1 - 86400, t1, args.runs)
        svc, rows_svc = timed_runs(storage, 'cpu{service="svc-03"}', t1 - 86400, t1, args.runs)
        p50 = statistics.median
        print(f"flame graph 1 h  ({rows_1h} rows read): p50 {p50(one_h) * 1000:.0f} ms, max {max(one_h) * 1000:.0f} ms"
              f"  [target <= 500 ms]")
        print(f"  baseline 1 h from raw batches only ({rows_raw} rows): p50 {p50(raw_1h) * 1000:.0f} ms "
              f"-> rollups are {p50(raw_1h) / p50(one_h):.1f}x faster")
        print(f"flame graph 24 h ({rows_24h} rows read): p50 {p50(day) * 1000:.0f} ms, max {max(day) * 1000:.0f} ms"
              f"  [target <= 2000 ms]; 24h/1h ratio {p50(day) / p50(one_h):.2f}")
        print(f"flame graph 24 h, one service ({rows_svc} rows): p50 {p50(svc) * 1000:.0f} ms")
        sizes = relation_bytes(url)
        print("relation sizes (MB): " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sorted(sizes.items()) if v > 1e5))
        storage.engine.dispose()
    finally:
        if args.keep or args.db:
            print(f"database kept: {url}")
        else:
            drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
