"""Sustained ingest over HTTP into gunicorn + PostgreSQL, and retention dropping a day meanwhile.

Starts `hotpath server --workers N --threads T` on a fresh PostgreSQL database, pre-encodes fleet
batches (~300 unique stacks each, gzipped pprof, as collectors send them), warms the server up
with `--warmup-rounds` passes over them (every worker must have cached a steady fleet's stacks),
then `--clients` client processes (one keep-alive connection each, pre-built requests) post for
`--seconds`. Prints batches/s and latency percentiles; CPU per request of the server (gunicorn
master + workers), of this database's PostgreSQL backends and of the clients themselves; and,
as the same-run baseline, the same clients hitting `/healthz` (rate, server CPU per request).
In the middle of the run a 35-day-old partition is dropped by retention; latencies while it runs
are reported separately.

  python bench/server_ingest.py --workers 2 --threads 1 --clients 4 --seconds 30
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_sim import Fleet, FleetConfig, encode
from server_common import drop_database, fresh_database, percentile

from server import auth, db
from server.storage import Storage


def start_server(url: str, port: int, workers: int, threads: int) -> subprocess.Popen:
    # The bench drops the old day itself (mid-run); the server's own maintenance would do it at start.
    env = {**os.environ, "HOTPATH_MAINTENANCE_INTERVAL_S": "0", "HOTPATH_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "hotpath", "server", "--db", url, "--bind", f"127.0.0.1:{port}",
                             "--workers", str(workers), "--threads", str(threads)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def _client(port: int, token: str | None, work: list[tuple[str, bytes]], offset: int, stride: int,
            start_at: float, seconds: float, out: Any, rounds: int = 0) -> None:
    """One client process: a keep-alive connection, requests back to back until the deadline."""
    headers = {"Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    rows = []
    i = offset
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = time.process_time()
    deadline = time.monotonic() + seconds
    limit = offset + rounds * len(work) if rounds else None
    while time.monotonic() < deadline and (limit is None or i < limit):
        path, body = work[i % len(work)]
        started = time.monotonic()
        try:
            if body:
                conn.request("POST", path, body=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
            else:
                conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (http.client.HTTPException, OSError):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            status = 0
        rows.append((time.time() - (time.monotonic() - started), time.monotonic() - started, status))
        i += stride
    out.put((rows, time.process_time() - cpu0))


def drive(port: int, token: str | None, work: list[tuple[str, bytes]], clients: int,
          seconds: float, rounds: int = 0) -> tuple[list[tuple[float, float, int]], float]:
    """(wall start, latency, status) of every request sent by `clients` processes for `seconds`
    (or until `rounds` passes over `work`), and the clients' own CPU seconds. Processes, not threads: one GIL must not cap the load."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start_at = time.time() + 0.3
    procs = [ctx.Process(target=_client, args=(port, token, work, k, clients, start_at, seconds, out, rounds))
             for k in range(clients)]
    for p in procs:
        p.start()
    rows: list[tuple[float, float, int]] = []
    cpu = 0.0
    for _ in procs:
        got, used = out.get()
        rows.extend(got)
        cpu += used
    for p in procs:
        p.join()
    return rows, cpu


def _cpu_ticks(pids: list[int]) -> dict[int, int]:
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    return out


def _pids(match: Callable[[int, str, str], bool]) -> list[int]:
    """Pids whose (ppid, comm, cmdline) match."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if match(ppid, comm, cmd):
            pids.append(int(d.name))
    return pids


class CpuMeter:
    """CPU seconds of the server (gunicorn master + workers) and of this database's backends."""

    def __init__(self, server_pid: int, dbname: str) -> None:
        self.server_pid, self.dbname = server_pid, dbname

    def sample(self) -> tuple[dict[int, int], dict[int, int]]:
        server = [self.server_pid, *_pids(lambda ppid, _c, _m: ppid == self.server_pid)]
        backends = _pids(lambda _p, comm, cmd: comm == "postgres" and f" {self.dbname} " in cmd)
        return _cpu_ticks(server), _cpu_ticks(backends)

    @staticmethod
    def used(before: dict[int, int], after: dict[int, int]) -> float:
        return sum(t - before.get(pid, 0) for pid, t in after.items()) / os.sysconf("SC_CLK_TCK")


def summary(name: str, rows: list[tuple[float, float, int]], seconds: float) -> str:
    lats = [r[1] * 1000 for r in rows]
    bad = sum(1 for r in rows if r[2] != 200)
    return (f"{name}: {len(rows) / seconds:.0f} req/s, p50 {percentile(lats, 50):.1f} ms, "
            f"p99 {percentile(lats, 99):.1f} ms, max {max(lats):.0f} ms, errors {bad}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker")
    ap.add_argument("--clients", type=int, default=6, help="client processes, one keep-alive connection each")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=150, help="at most this many seconds of warm-up")
    ap.add_argument("--warmup-rounds", type=int, default=6,
                    help="warm-up passes over the payloads (each worker must have cached their stacks)")
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
    work: list[tuple[str, bytes]] = []
    for i in range(args.payloads):
        host = (i * 7919) % args.hosts
        # Stamped ahead by the warm-up's length, so batches are still current (not late) when measured.
        body = encode(fleet.batch(host, time.time() + args.warmup))
        work.append(("/api/v1/ingest?" + urllib.parse.urlencode(fleet.series_labels(host)), body))
    sizes = [len(b) for _, b in work]
    server = start_server(url, args.port, args.workers, args.threads)
    dbname = make_url(url).database or ""
    meter = CpuMeter(server.pid, dbname)
    try:
        # Warm-up: every payload a few times, so each worker's dictionary and series caches have
        # seen them (a steady fleet repeats its stacks); then measure steady-state ingest.
        t0 = time.monotonic()
        warm, _ = drive(args.port, token, work, args.clients, args.warmup, rounds=args.warmup_rounds)
        print(summary(f"warm-up ({args.warmup_rounds} passes, cold dictionaries)", warm, time.monotonic() - t0))
        b0, _ = meter.sample()
        base, base_cpu = drive(args.port, None, [("/healthz", b"")], args.clients, 5)
        b1, _ = meter.sample()
        base_srv = CpuMeter.used(b0, b1) / max(1, len(base))
        print(summary("baseline GET /healthz", base, 5) + f", server CPU {base_srv * 1000:.2f} ms/req")
        drop_window: list[float] = []

        def retention() -> None:
            time.sleep(args.seconds / 2)
            t0 = time.time()
            dropped = Storage(db.make_engine(url)).partitions.drop_before(int(time.time()) - 30 * 86400)
            drop_window.extend([t0, time.time()])
            print(f"retention dropped {dropped} in {(drop_window[1] - t0) * 1000:.0f} ms during ingest")

        ret = threading.Thread(target=retention)
        ret.start()
        srv0, pg0 = meter.sample()
        stat0 = _proc_stat()
        rows, client_cpu = drive(args.port, token, work, args.clients, args.seconds)
        srv1, pg1 = meter.sample()
        stat1 = _proc_stat()
        ret.join()
        print(f"payload: {statistics.mean(sizes) / 1024:.1f} KiB gzipped pprof, ~300 unique stacks, "
              f"{args.workers} gunicorn workers x {args.threads} threads, {args.clients} client processes")
        print(summary("sustained ingest", rows, args.seconds) + "   [target >= 200/s, p99 <= 250 ms]")
        n = max(1, len(rows))
        machine = _machine_busy(stat0, stat1)
        print(f"CPU per request: server {CpuMeter.used(srv0, srv1) / n * 1000:.2f} ms, "
              f"PostgreSQL backends {CpuMeter.used(pg0, pg1) / n * 1000:.2f} ms, "
              f"bench clients {client_cpu / n * 1000:.2f} ms; machine busy {machine}")
        if drop_window:
            during = [r for r in rows if drop_window[0] - 0.5 <= r[0] <= drop_window[1] + 0.5]
            if during:
                lat = [r[1] * 1000 for r in during]
                print(f"  during the partition drop: {len(during)} requests, max {max(lat):.0f} ms, "
                      f"p99 {percentile(lat, 99):.0f} ms")
        ok = [r[1] for r in rows if r[2] == 200]
        print(f"baseline ratio: ingest {len(rows) / args.seconds:.0f} req/s = "
              f"{len(rows) / args.seconds / (len(base) / 5):.2f}x the /healthz rate ({len(base) / 5:.0f} req/s, "
              f"clients {base_cpu / max(1, len(base)) * 1000:.2f} ms CPU/req); ingest p50 = "
              f"{statistics.median(ok) / statistics.median([r[1] for r in base]):.1f}x healthz p50")
    finally:
        server.terminate()
        server.wait(timeout=30)
        engine.dispose()
        drop_database(url)
    return 0


def _proc_stat() -> tuple[int, int]:
    """(busy, total) jiffies of all cores from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _machine_busy(before: tuple[int, int], after: tuple[int, int]) -> str:
    """Share of all cores busy over the run (everything on the machine, other benchmarks too)."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return f"{busy / total:.0%}" if total else "n/a"


if __name__ == "__main__":
    sys.exit(main())
