"""Slow clients against a real server on PostgreSQL: 100 slow-loris connections next to 4 ingest
clients, 2 query clients and a /healthz prober (issue 15, the load check).

Starts `hotpath server --workers W --threads T` on a fresh database, preloads an hour of fleet
data for the query clients (the flame graph of that fixed hour, so every phase queries the same
data), then runs phases of `--seconds` each: baseline (no slow-loris), slow-loris, baseline again.
The slow-loris process keeps `--loris` connections open for its whole phase, each sending one byte
every 2 s: half drip a request's headers, half send whole headers then drip the body; a connection
the server closes (408 at its deadline) is replaced at once. Prints per phase /healthz (a new
connection every 0.2 s, 5 s timeout), ingest and query latencies, and the slow-loris phase's
ratios against the mean of the two baselines around it (same run).

  python bench/server_slowloris.py --seconds 60
  python bench/server_slowloris.py --seconds 20 --server-repo /tmp/old-checkout   # an older server
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import selectors
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_sim import Fleet, FleetConfig, encode
from server_common import drop_database, fresh_database, percentile

from server import auth, db
from server.storage import Storage

Row = tuple[float, int]  # (latency s, status; 0 = no answer)


def start_server(url: str, port: int, workers: int, threads: int, repo: str | None) -> subprocess.Popen:
    env = {**os.environ, "HOTPATH_MAINTENANCE_INTERVAL_S": "0", "HOTPATH_LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if repo:
        env["PYTHONPATH"] = repo
    proc = subprocess.Popen([sys.executable, "-m", "hotpath", "server", "--db", url, "--bind", f"127.0.0.1:{port}",
                             "--workers", str(workers), "--threads", str(threads)], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def _keepalive_client(port: int, token: str, work: list[tuple[str, bytes]], offset: int, stride: int,
                      until: float, out: Any) -> None:
    """Requests back to back on one keep-alive connection (POST when there is a body, else GET)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    rows: list[Row] = []
    i = offset
    while time.time() < until:
        path, body = work[i % len(work)]
        started = time.monotonic()
        try:
            if body:
                conn.request("POST", path, body=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
            else:
                conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (http.client.HTTPException, OSError):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            status = 0
        rows.append((time.monotonic() - started, status))
        i += stride
    out.put(("ingest" if work[0][1] else "query", rows))


def _healthz_prober(port: int, until: float, out: Any) -> None:
    rows: list[Row] = []
    while time.time() < until:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
                resp.read()
                status = resp.status
        except OSError:
            status = 0
        rows.append((time.monotonic() - started, status))
        time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))
    out.put(("healthz", rows))


def _loris(port: int, n: int, until: float, out: Any) -> None:
    """`n` connections, each sending one byte every 2 s; closed ones are replaced at once."""
    head = b"POST /api/v1/ingest?service=loris&type=cpu HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
    with_body = head + b"Content-Length: 4096\r\n\r\n"
    sel = selectors.DefaultSelector()
    conns: dict[socket.socket, list[Any]] = {}
    stats = {"opened": 0, "answered_408": 0, "closed_other": 0}

    def open_one(k: int) -> None:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        if k % 2:  # whole headers now, then the body a byte at a time
            s.sendall(with_body)
            conns[s] = [b"a" * 4096, 0, k]
        else:
            conns[s] = [head + b"X-Slow: " + b"b" * 4000, 0, k]
        sel.register(s, selectors.EVENT_READ)
        stats["opened"] += 1

    for k in range(n):
        open_one(k)
    next_drip = time.monotonic()
    while time.time() < until:
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            try:
                got = s.recv(65536)
            except OSError:
                got = b""
            stats["answered_408" if got.startswith(b"HTTP/1.1 408") else "closed_other"] += 1
            k = conns.pop(s)[2]
            sel.unregister(s)
            s.close()
            open_one(k)
        if time.monotonic() >= next_drip:
            next_drip += 2.0
            for s, state in conns.items():
                data, pos, _k = state
                try:
                    s.send(data[pos:pos + 1])
                    state[1] = (pos + 1) % len(data)
                except OSError:
                    pass
    stats["open_at_end"] = len(conns)
    for s in conns:
        s.close()
    out.put(("loris", stats))


def phase(port: int, token: str, ingest_work: list[tuple[str, bytes]], query_path: str, seconds: float,
          ingest_clients: int, query_clients: int, loris: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    until = time.time() + seconds
    procs = []
    if loris:
        procs.append(ctx.Process(target=_loris, args=(port, loris, until + 1, out)))
        procs[-1].start()
        time.sleep(2.5)  # every slow connection open and dripping before measuring
        until += 2.5
    procs += [ctx.Process(target=_keepalive_client, args=(port, token, ingest_work, k, ingest_clients, until, out))
              for k in range(ingest_clients)]
    procs += [ctx.Process(target=_keepalive_client, args=(port, token, [(query_path, b"")], 0, 1, until, out))
              for _ in range(query_clients)]
    procs.append(ctx.Process(target=_healthz_prober, args=(port, until, out)))
    for p in procs[1 if loris else 0:]:
        p.start()
    got: dict[str, Any] = {"ingest": [], "query": [], "healthz": [], "loris": {}}
    for _ in procs:
        kind, rows = out.get()
        if kind == "loris":
            got["loris"] = rows
        else:
            got[kind] += rows
    for p in procs:
        p.join()
    got["seconds"] = seconds
    return got


def line(name: str, rows: list[Row], seconds: float) -> str:
    ms = [r[0] * 1000 for r in rows]
    bad = sum(1 for r in rows if r[1] != 200)
    return (f"  {name:8s} {len(rows):6d} req ({len(rows) / seconds:6.1f}/s)  p50 {percentile(ms, 50):7.1f} ms  "
            f"p99 {percentile(ms, 99):7.1f} ms  max {max(ms, default=float('nan')):7.0f} ms  not 200: {bad}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60, help="length of each phase (default 60)")
    ap.add_argument("--warmup", type=float, default=30, help="seconds of warm-up before the phases (default 30)")
    ap.add_argument("--loris", type=int, default=100, help="slow-loris connections (default 100)")
    ap.add_argument("--ingest-clients", type=int, default=4)
    ap.add_argument("--query-clients", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--hosts", type=int, default=200, help="simulated hosts (distinct ingest series)")
    ap.add_argument("--preload-hosts", type=int, default=20, help="hosts in the queried hour")
    ap.add_argument("--port", type=int, default=4823)
    ap.add_argument("--server-repo", help="run the server from this checkout (e.g. the parent commit's)")
    args = ap.parse_args(argv)

    url = fresh_database("hp_bench_loris")
    engine = db.make_engine(url)
    token = auth.create_token(engine, ["ingest", "read"], "bench")
    now = time.time()
    hour0 = now - now % 3600 - 2 * 3600  # a whole past hour, rolled up as a running server would have it
    fleet = Fleet(FleetConfig(hosts=args.hosts))
    storage = Storage(engine, rollup_grace_s=0)
    for host, t, profile in Fleet(FleetConfig(hosts=args.preload_hosts, seed=3)).batches(hour0, 3600):
        storage.ingest(profile, {**fleet.series_labels(host), "service": "preloaded"}, now=t + 1)
    storage.rollup(now=hour0 + 3600 + 1, lookback_s=int(now - hour0) + 3600)
    query_path = "/api/v1/flamegraph?" + urllib.parse.urlencode(
        {"query": 'cpu{service="preloaded"}', "from": int(hour0), "until": int(hour0 + 3600)})
    work = []
    for i in range(600):
        host = (i * 7919) % args.hosts
        work.append(("/api/v1/ingest?" + urllib.parse.urlencode(fleet.series_labels(host)),
                      encode(fleet.batch(host, now))))
    server = start_server(url, args.port, args.workers, args.threads, args.server_repo)
    try:
        # Warm-up: the workers' dictionary caches learn the fleet's stacks (a steady fleet repeats them).
        phase(args.port, token, work, query_path, args.warmup, args.ingest_clients, args.query_clients, 0)
        runs = [("baseline", 0), ("slow-loris", args.loris), ("baseline", 0)]
        results = []
        for name, loris in runs:
            got = phase(args.port, token, work, query_path, args.seconds, args.ingest_clients,
                        args.query_clients, loris)
            results.append(got)
            print(f"{name} ({loris} slow connections, {args.seconds:.0f} s, {args.workers} workers x "
                  f"{args.threads} threads):")
            for kind in ("healthz", "ingest", "query"):
                print(line(kind, got[kind], got["seconds"]))
            if loris:
                print(f"  slow-loris: {got['loris']}")
        loris_run, bases = results[1], (results[0], results[2])
        print("slow-loris phase / mean of the baselines around it:")
        for kind in ("healthz", "ingest"):
            for q in (50, 99):
                base = sum(percentile([r[0] for r in b[kind]], q) for b in bases) / 2
                ratio = percentile([r[0] for r in loris_run[kind]], q) / base
                print(f"  {kind} p{q}: {ratio:.2f}x  [target <= 2x]")
        missed = sum(1 for r in loris_run["healthz"] if r[1] != 200)
        p99 = percentile([r[0] * 1000 for r in loris_run["ingest"]], 99)
        print(f"under slow-loris: /healthz unanswered {missed} of {len(loris_run['healthz'])} [target 0]; "
              f"ingest p99 {p99:.0f} ms [target <= 250 ms]")
    finally:
        server.terminate()
        server.wait(timeout=30)
        engine.dispose()
        drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
