"""Sustained ingest over HTTP into gunicorn + PostgreSQL, and retention dropping a day meanwhile.

Starts `hotpath server --workers N` on a fresh PostgreSQL database, pre-encodes fleet batches
(~300 unique stacks each, gzipped pprof, as collectors send them), warms the server up with one
pass, then keeps `--clients` connections posting for `--seconds`. Prints batches/s and latency
percentiles, next to the same clients hitting `/healthz` (the HTTP floor) as the same-run baseline.
In the middle of the run a 35-day-old partition is dropped by retention; latencies
while it runs are reported separately.

  python bench/server_ingest.py --workers 3 --clients 8 --seconds 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_sim import Fleet, FleetConfig, Pusher, encode
from server_common import drop_database, fresh_database, percentile

from server import auth, db
from server.storage import Storage


def start_server(url: str, port: int, workers: int) -> subprocess.Popen:
    # The bench drops the old day itself (mid-run); the server's own maintenance would do it at start.
    env = {**os.environ, "HOTPATH_MAINTENANCE_INTERVAL_S": "0", "HOTPATH_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "hotpath", "server", "--db", url, "--bind", f"127.0.0.1:{port}",
                             "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def drive(pusher: Pusher, payloads: list[tuple[bytes, dict[str, str]]], clients: int, seconds: float,
          path: str | None = None) -> list[tuple[float, float, int]]:
    """(start time, latency, status) of every request sent by `clients` threads for `seconds`."""
    out: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(offset: int) -> None:
        i = offset
        mine = []
        while time.monotonic() < deadline:
            started = time.monotonic()
            if path:
                conn = pusher._conn()
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                status, lat = resp.status, time.monotonic() - started
            else:
                body, labels = payloads[i % len(payloads)]
                status, lat = pusher.push(body, labels)
            mine.append((started, lat, status))
            i += clients
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def summary(name: str, rows: list[tuple[float, float, int]], seconds: float) -> str:
    lats = [r[1] * 1000 for r in rows]
    bad = sum(1 for r in rows if r[2] != 200)
    return (f"{name}: {len(rows) / seconds:.0f} req/s, p50 {percentile(lats, 50):.1f} ms, "
            f"p99 {percentile(lats, 99):.1f} ms, max {max(lats):.0f} ms, errors {bad}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--hosts", type=int, default=2000, help="simulated hosts (distinct series)")
    ap.add_argument("--payloads", type=int, default=600, help="distinct pre-encoded batches to cycle through")
    ap.add_argument("--port", type=int, default=4817)
    args = ap.parse_args(argv)

    url = fresh_database("hp_bench_ingest")
    engine = db.make_engine(url)
    token = auth.create_token(engine, ["ingest"], "bench")
    storage = Storage(engine)
    now = time.time()
    # An old day with data, for retention to drop during the run.
    old = now - 35 * 86400
    old_fleet = Fleet(FleetConfig(hosts=5, services=2, seed=7))
    for host, t, profile in old_fleet.batches(old, 300):
        storage.ingest(profile, old_fleet.series_labels(host), now=t + 1)
    fleet = Fleet(FleetConfig(hosts=args.hosts))
    print(f"encoding {args.payloads} batches...", file=sys.stderr)
    payloads = []
    sizes = []
    for i in range(args.payloads):
        host = (i * 7919) % args.hosts
        body = encode(fleet.batch(host, now - 5))
        sizes.append(len(body))
        payloads.append((body, fleet.series_labels(host)))
    server = start_server(url, args.port, args.workers)
    try:
        pusher = Pusher(f"http://127.0.0.1:{args.port}", token)
        drive(pusher, payloads, args.clients, 0.001)  # open connections
        warm = drive(pusher, payloads, args.clients, min(20.0, args.seconds / 2))  # dictionaries warm up
        print(summary("warm-up (cold dictionaries)", warm, min(20.0, args.seconds / 2)))
        base = drive(Pusher(f"http://127.0.0.1:{args.port}", None), payloads, args.clients, 5, path="/healthz")
        print(summary("baseline GET /healthz", base, 5))
        drop_window: list[float] = []

        def retention() -> None:
            time.sleep(args.seconds / 2)
            t0 = time.monotonic()
            dropped = Storage(db.make_engine(url)).partitions.drop_before(int(time.time()) - 30 * 86400)
            drop_window.extend([t0, time.monotonic()])
            print(f"retention dropped {dropped} in {(drop_window[1] - t0) * 1000:.0f} ms during ingest")

        ret = threading.Thread(target=retention)
        ret.start()
        rows = drive(pusher, payloads, args.clients, args.seconds)
        ret.join()
        print(f"payload: {statistics.mean(sizes) / 1024:.1f} KiB gzipped pprof, ~300 unique stacks, "
              f"{args.workers} gunicorn workers, {args.clients} client connections")
        print(summary("sustained ingest", rows, args.seconds) + "   [target >= 200/s, p99 <= 250 ms]")
        if drop_window:
            during = [r for r in rows if drop_window[0] - 0.5 <= r[0] <= drop_window[1] + 0.5]
            if during:
                lat = [r[1] * 1000 for r in during]
                print(f"  during the partition drop: {len(during)} requests, max {max(lat):.0f} ms, "
                      f"p99 {percentile(lat, 99):.0f} ms")
        ok = [r[1] for r in rows if r[2] == 200]
        print(f"ratio ingest p50 / healthz p50: "
              f"{statistics.median(ok) / statistics.median([r[1] for r in base]):.1f}x")
    finally:
        server.terminate()
        server.wait(timeout=30)
        engine.dispose()
        drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
