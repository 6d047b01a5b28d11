"""Storage cost: bytes per ingested (batch, stack) entry, all tables and indexes counted, against the
same batches kept as gzipped pprof.

Measures a database loaded by `server_query.py --keep` (pass `--db URL`) or loads its own fleet
(`--hosts`, `--minutes`) through the storage layer. The gzipped-pprof baseline re-encodes stored
batches exactly (stacks, values and per-sample labels read back from the database) for a sample
of `--sample` batches and scales by entries.

  python bench/server_storage.py --hosts 100 --minutes 20
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_sim import FleetConfig
from server_common import drop_database, fresh_database
from server_load import load_parallel, relation_bytes

from profiler import pprof
from profiler.model import Sample, ValueType
from profiler.types import new_cpu_profile
from server import db
from server.models import batches
from server.storage import Storage, rows


def pprof_size_of_batches(storage: Storage, sample: int) -> tuple[int, int]:
    """(gzipped pprof bytes, entries) of `sample` stored batches rebuilt exactly."""
    with db.read(storage.engine) as conn:
        keys = conn.execute(select(batches.c.series_id, batches.c.ts, batches.c.id)).all()
    picked = random.Random(1).sample(keys, min(sample, len(keys)))
    total_bytes = total_entries = 0
    for sid, ts, bid in picked:
        with db.read(storage.engine) as conn:
            row = conn.execute(select(batches).where(batches.c.series_id == sid, batches.c.ts == ts,
                                                     batches.c.id == bid)).one()
        entries = rows.decode(row)
        frames = storage.resolve(entries.stack_ids.tolist())
        prof = new_cpu_profile(19, time_nanos=ts * 1_000_000_000, duration_nanos=int(row.duration_ns))
        prof.period = int(row.period)
        sets = entries.label_sets or [{}]
        idx = entries.label_idx.tolist() if entries.label_idx is not None else [0] * entries.stack_ids.size
        prof.samples = [Sample(frames[s], tuple(v), tuple(sorted(sets[i].items())))
                        for s, v, i in zip(entries.stack_ids.tolist(), entries.values.tolist(), idx)]
        assert prof.sample_types[0] == ValueType("samples", "count")
        total_bytes += len(pprof.encode(prof, compress=True))
        total_entries += entries.stack_ids.size
    return total_bytes, total_entries


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", help="measure this already-loaded database")
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--minutes", type=int, default=20)
    ap.add_argument("--sample", type=int, default=300, help="batches re-encoded for the pprof baseline")
    args = ap.parse_args(argv)
    url = args.db or fresh_database("hp_bench_storage")
    try:
        if not args.db:
            now = int(time.time())
            start = now - now % 3600 - 2 * 3600
            load_parallel(url, FleetConfig(hosts=args.hosts), start, args.minutes * 60)
            storage = Storage(db.make_engine(url), rollup_grace_s=0)
            storage.rollup(now=start + args.minutes * 60 + 3600, lookback_s=4 * 3600)
        storage = Storage(db.make_engine(url))
        with db.autocommit(storage.engine) as conn:
            conn.execute(text("VACUUM ANALYZE"))
        with db.read(storage.engine) as conn:
            n_batches = int(conn.execute(select(func.count()).select_from(batches)).scalar() or 0)
            n_entries = int(conn.execute(select(func.sum(batches.c.n_entries))).scalar() or 0)
        sizes = relation_bytes(url)
        total = sum(sizes.values())
        gz, gz_entries = pprof_size_of_batches(storage, args.sample)
        gz_per_entry = gz / max(gz_entries, 1)
        print(f"{n_batches} batches, {n_entries} (batch, stack) entries")
        for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
            if size > 65536:
                print(f"  {name:<16} {size / 1e6:8.1f} MB  {size / n_entries:6.2f} B/entry")
        print(f"all tables and indexes: {total / 1e6:.1f} MB = {total / n_entries:.2f} B/entry  [target <= 10 B]")
        print(f"same batches as gzipped pprof: {gz_per_entry:.2f} B/entry ({args.sample} batches re-encoded) "
              f"-> stored is {gz_per_entry / (total / n_entries):.1f}x smaller")
        storage.engine.dispose()
    finally:
        if not args.db:
            drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
