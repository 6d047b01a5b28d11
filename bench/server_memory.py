"""Worker memory after the query benchmark's queries, and their speed, under two heap policies in one
run (issue 15 point 11): HEAP_IDLE_TRIM_S=0 (the parent commit's behaviour: each worker keeps up to
1 GiB of freed heap for good) against the default idle trim.

For each policy: `hotpath server --workers 2` (default threads) on the `server_query.py` dataset;
two clients send the benchmark's flame-graph queries over HTTP (1 h, 24 h, 24 h of one service;
`--runs` rounds back to back, new connection each, so both workers serve), then the workers sit
idle for HEAP_IDLE_TRIM_S + 5 s and each one's RSS is read from /proc (with its peak, VmHWM);
then one round of queries after the idle spell (a trimmed heap faults its pages in again).

  python bench/server_query.py --keep          # loads the dataset once, prints its URL
  python bench/server_memory.py --db URL       # or without --db: loads a fresh one (slow)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_sim import FleetConfig
from server_common import drop_database, fresh_database
from server_query import load_dataset
from sqlalchemy import text

from server import db


def start_server(url: str, port: int, workers: int, idle_trim_s: int) -> subprocess.Popen:
    env = {**os.environ, "HOTPATH_MAINTENANCE_INTERVAL_S": "0", "HOTPATH_LOG_LEVEL": "WARNING",
           "HOTPATH_HEAP_IDLE_TRIM_S": str(idle_trim_s)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "hotpath", "server", "--db", url, "--bind", f"127.0.0.1:{port}",
                             "--workers", str(workers), "--no-auth", "--auto-upgrade"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def _client(port: int, paths: list[str], rounds: int, out: Any) -> None:
    took: dict[str, list[float]] = {p: [] for p in paths}
    for _ in range(rounds):
        for path in paths:
            started = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=300) as resp:
                resp.read()
            took[path].append(time.monotonic() - started)
    out.put(took)


def run_queries(port: int, paths: list[str], rounds: int, clients: int) -> dict[str, list[float]]:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(port, paths, rounds, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    merged: dict[str, list[float]] = {p: [] for p in paths}
    for _ in procs:
        for path, values in out.get().items():
            merged[path] += values
    for p in procs:
        p.join()
    return merged


def worker_memory(master: int) -> list[tuple[int, int, int]]:
    """(pid, VmRSS MB, VmHWM MB) of each worker (the master's children)."""
    out = []
    for child in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        status = Path(f"/proc/{child}/status").read_text().splitlines()
        kb = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("VmRSS", "VmHWM"))}
        out.append((int(child), kb["VmRSS"] // 1024, kb["VmHWM"] // 1024))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", help="a database loaded by `server_query.py --keep`")
    ap.add_argument("--hosts", type=int, default=100, help="without --db: hosts to load")
    ap.add_argument("--runs", type=int, default=5, help="rounds of the queries per client")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--idle-trim", type=int, default=10, help="HEAP_IDLE_TRIM_S of the policy measured (default 10)")
    ap.add_argument("--port", type=int, default=4831)
    args = ap.parse_args(argv)

    url = args.db or fresh_database("hp_bench_memory")
    try:
        if not args.db:
            now = int(time.time())
            load_dataset(url, FleetConfig(hosts=args.hosts), now - now % 3600 - 2 * 3600, 60, 2)
        engine = db.make_engine(url)
        with engine.connect() as conn:
            newest = int(conn.execute(text("SELECT max(ts) FROM batches")).scalar())
        engine.dispose()
        t1 = newest - newest % 3600 + 3600 - 30  # as server_query.py: an unaligned last hour
        kinds = {"1 h": ("cpu{}", t1 - 3600), "24 h": ("cpu{}", t1 - 86400),
                 "24 h svc": ('cpu{service="svc-03"}', t1 - 86400)}
        paths = {k: "/api/v1/flamegraph?" + urllib.parse.urlencode({"query": q, "from": t0, "until": t1})
                 for k, (q, t0) in kinds.items()}
        results = {}
        for name, idle in (("keep freed heap (HEAP_IDLE_TRIM_S=0, before)", 0),
                           (f"idle trim (HEAP_IDLE_TRIM_S={args.idle_trim})", args.idle_trim)):
            server = start_server(url, args.port, args.workers, idle)
            try:
                run_queries(args.port, list(paths.values()), 1, 2)  # warm: dictionary caches, as in server_query
                hot = run_queries(args.port, list(paths.values()), args.runs, 2)
                busy = worker_memory(server.pid)
                time.sleep(max(idle, 5) + 5)
                idle_mem = worker_memory(server.pid)
                cold = run_queries(args.port, list(paths.values()), 1, 2)
            finally:
                server.terminate()
                server.wait(timeout=30)
            results[name] = (hot, cold, busy, idle_mem)
            print(name)
            for kind, path in paths.items():
                print(f"  {kind:9s} p50 back to back {statistics.median(hot[path]) * 1000:6.0f} ms   "
                      f"first after the idle spell {statistics.median(cold[path]) * 1000:6.0f} ms")
            print("  worker RSS right after the queries (MB): " + ", ".join(f"{r}" for _p, r, _h in busy))
            print("  worker RSS after idle (MB): " + ", ".join(f"{r} (peak {h})" for _p, r, h in idle_mem)
                  + "   [target <= 300]")
        (h0, c0, _b0, m0), (h1, c1, _b1, m1) = results.values()
        print("idle trim / keep:")
        for kind, path in paths.items():
            print(f"  {kind:9s} back-to-back p50 {statistics.median(h1[path]) / statistics.median(h0[path]):.2f}x, "
                  f"after idle {statistics.median(c1[path]) / statistics.median(c0[path]):.2f}x")
        print(f"  max worker RSS after idle: {max(r for _p, r, _h in m1)} MB vs {max(r for _p, r, _h in m0)} MB")
    finally:
        if not args.db:
            drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
