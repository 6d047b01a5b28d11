"""Query cost against the number of stored series (issue 15, point 10): 100 vs 10,000 series, same run.

Two PostgreSQL databases hold the same per-series data (one series per host, `--batches` batches of
~40 stacks in the last hour) for `--small` and `--large` hosts. One batch is ingested through the
storage layer; the rest are copies of its row under other series (SQL, seconds instead of an hour of
ingest). Each query then runs through the Flask app (HTTP path without sockets, no auth), alternating
small and large databases, and the large/small cost is printed as a same-run ratio (bench/ratios.py):
a selective query should cost the same whatever else is stored.

  python bench/server_query_scale.py --small 100 --large 10000 --runs 9
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import inspect, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratios import describe, sandwiched
from server_common import drop_database, fresh_database

from profiler.model import Frame, FrameKind, Sample
from profiler.types import new_cpu_profile
from server import db
from server.storage import Storage
from server.storage.ingest import series_id

QUERIES = {
    "flame, one host": ("/api/v1/flamegraph", {"query": 'cpu{service="svc-2", host="h-00042"}'}),
    "flame, regex 10 hosts": ("/api/v1/flamegraph", {"query": 'cpu{host=~"h-0004[0-9]"}'}),
    "series, one host": ("/api/v1/series", {"query": 'cpu{host="h-00042"}'}),
    "series group_by=host, all": ("/api/v1/series", {"query": "cpu{}", "group_by": "host"}),
    "label values of service": ("/api/v1/labels/service/values", {}),
}


def labels_of(h: int) -> dict[str, str]:
    return {"service": f"svc-{h % 10}", "host": f"h-{h:05d}"}


def load(url: str, hosts: int, batches: int, now: int) -> None:
    """One real batch per time slot for host 0, then its rows copied to every other host."""
    storage = Storage(db.make_engine(url))
    for b in range(batches):
        prof = new_cpu_profile(19, time_nanos=(now - 3000 + b * 600) * 10**9, duration_nanos=10**10)
        for s in range(40):
            stack = tuple(Frame(f"fn_{s}_{d}", "/usr/bin/app", FrameKind.NATIVE) for d in range(12))
            prof.samples.append(Sample(stack, (s + 1, (s + 1) * prof.period)))
        storage.ingest(prof, labels_of(0), now=now)
    engine = storage.engine
    sample_types = json.dumps([["samples", "count"], ["cpu", "nanoseconds"]])
    has_index = inspect(engine).has_table("series_labels")  # absent before the label index (old code)
    with db.write(engine) as conn:
        sid0 = series_id("cpu", labels_of(0), json.loads(sample_types))
        rows = conn.execute(text("SELECT * FROM batches WHERE series_id = :s"), {"s": sid0}).mappings().all()
        first, last = conn.execute(text("SELECT first_seen, last_seen FROM series WHERE id = :s"),
                                   {"s": sid0}).one()
        series_rows, label_rows, batch_rows = [], [], []
        for h in range(1, hosts):
            labels = labels_of(h)
            sid = series_id("cpu", labels, json.loads(sample_types))
            series_rows.append({"id": sid, "profile_type": "cpu", "labels": json.dumps(labels, sort_keys=True,
                                separators=(",", ":")), "sample_types": sample_types, "first_seen": first,
                                "last_seen": last})
            if has_index:
                from server.storage.series_index import label_rows as index_rows

                label_rows.extend(index_rows(sid, labels))
            for r in rows:
                batch_rows.append({**r, "series_id": sid})
        conn.execute(text("INSERT INTO series (id, profile_type, labels, sample_types, first_seen, last_seen) "
                          "VALUES (:id, :profile_type, :labels, :sample_types, :first_seen, :last_seen)"), series_rows)
        if label_rows:
            conn.execute(text("INSERT INTO series_labels (name, value_hash, series_id, value) "
                              "VALUES (:name, :value_hash, :series_id, :value)"), label_rows)
        cols = list(rows[0].keys())
        conn.execute(text(f"INSERT INTO batches ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"),
                     batch_rows)
    with db.autocommit(engine) as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()


def run_query(client: object, path: str, params: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    resp = client.get(path, query_string={**params, "from": "now-1h"})  # type: ignore[attr-defined]
    body = resp.get_data()
    elapsed = time.perf_counter() - started
    assert resp.status_code == 200, (path, params, body[:300])
    return elapsed, len(body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=10_000)
    ap.add_argument("--batches", type=int, default=6, help="batches per series in the last hour")
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args(argv)

    from server.app import create_app

    now = int(time.time())
    urls = {n: fresh_database(f"hp_bench_scale{n}") for n in (args.small, args.large)}
    apps = {}
    try:
        for n, url in urls.items():
            began = time.perf_counter()
            load(url, n, args.batches, now)
            print(f"loaded {n} series x {args.batches} batches in {time.perf_counter() - began:.1f} s", file=sys.stderr)
            apps[n] = create_app({"DATABASE_URL": url, "TESTING": True, "MAINTENANCE_INTERVAL_S": 0, "AUTH": False,
                                  "DATA_DIR": tempfile.mkdtemp(), "LOG_LEVEL": "WARNING"})
        clients = {n: a.test_client() for n, a in apps.items()}
        for name, (path, params) in QUERIES.items():
            for c in clients.values():  # warm the dictionary caches, as a running server has them
                run_query(c, path, params)
            small: list[float] = []
            large: list[float] = []
            sizes = {}
            for _ in range(args.runs):
                seconds, sizes[args.small] = run_query(clients[args.small], path, params)
                small.append(seconds)
                seconds, sizes[args.large] = run_query(clients[args.large], path, params)
                large.append(seconds)
            seconds, _size = run_query(clients[args.small], path, params)
            small.append(seconds)
            ratio = describe(sandwiched(large, small))
            print(f"{name:28s} {args.small:>6} series: p50 {statistics.median(small) * 1000:7.1f} ms "
                  f"({sizes[args.small] / 1e3:7.1f} kB) | {args.large} series: p50 "
                  f"{statistics.median(large) * 1000:7.1f} ms ({sizes[args.large] / 1e3:7.1f} kB) | "
                  f"large/small {ratio}")
    finally:
        for a in apps.values():
            a.extensions["hotpath"].storage.engine.dispose()
        for url in urls.values():
            drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
