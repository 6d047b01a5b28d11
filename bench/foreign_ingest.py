"""Ingest through the foreign protocols against the native `/api/v1/ingest`: same payloads, same run.

Starts `hotpath server` on a fresh PostgreSQL database and pre-builds, from the same fleet batches
(gzipped pprof, ~300 unique stacks), one request per batch for each protocol: native
`/api/v1/ingest`, Pyroscope push (`PushRequest`, gzipped, Basic auth), Pyroscope legacy
`/ingest?format=pprof`, and OTLP `/v1development/profiles` (converted by tests/server/otlp_convert.py,
gzipped). All land in the same series. After a warm-up pass, blocks of `--block-seconds` alternate
native, push, native, legacy, native, otlp, native, ... for `--rounds`; each protocol block's rate and
server CPU per batch (gunicorn + this database's PostgreSQL backends) are divided by the mean of the
native blocks around it (bench/ratios.py), so machine drift cancels. Target: within 20 % of native.

  python bench/foreign_ingest.py --rounds 3 --block-seconds 5
"""

from __future__ import annotations

import argparse
import base64
import gzip
import http.client
import multiprocessing as mp
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_sim import Fleet, FleetConfig, encode
from ratios import describe, sandwiched
from server_common import drop_database, fresh_database
from server_ingest import CpuMeter, start_server

from server import auth, db
from server.protocols import pyroscope_push_pb2 as push_pb
from tests.server.otlp_convert import pprof_to_otlp

Request = tuple[str, bytes, dict[str, str]]
PROTOCOLS = ("push", "legacy", "otlp")


def requests(fleet: Fleet, hosts: int, payloads: int, token: str, t: float) -> dict[str, list[Request]]:
    bearer = {"Authorization": f"Bearer {token}"}
    basic = {"Authorization": "Basic " + base64.b64encode(f"bench:{token}".encode()).decode()}
    out: dict[str, list[Request]] = {"native": [], "push": [], "legacy": [], "otlp": []}
    for i in range(payloads):
        host = (i * 7919) % hosts
        labels = fleet.series_labels(host)
        pprof = encode(fleet.batch(host, t))
        out["native"].append(("/api/v1/ingest?" + urllib.parse.urlencode(labels), pprof,
                              {**bearer, "Content-Type": "application/octet-stream"}))
        req = push_pb.PushRequest()
        series = req.series.add()
        for name, value in (("service_name", labels["service"]), ("host", labels["host"]),
                            ("__name__", "process_cpu")):
            series.labels.add(name=name, value=value)
        series.samples.add(raw_profile=pprof)
        out["push"].append(("/push.v1.PusherService/Push", gzip.compress(req.SerializeToString(), 6),
                            {**basic, "Content-Type": "application/proto", "Content-Encoding": "gzip"}))
        name = f"{labels['service']}.cpu{{host={labels['host']}}}"
        out["legacy"].append(("/ingest?" + urllib.parse.urlencode({"name": name, "format": "pprof"}), pprof,
                              {**bearer, "Content-Type": "application/octet-stream"}))
        otlp = pprof_to_otlp(pprof, {"service.name": labels["service"], "host.name": labels["host"]})
        out["otlp"].append(("/v1development/profiles", gzip.compress(otlp.SerializeToString(), 6),
                            {**bearer, "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}))
    return out


def _client(port: int, work: list[Request], offset: int, stride: int, start_at: float, seconds: float,
            out: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    ok = bad = 0
    i = offset
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        path, body, headers = work[i % len(work)]
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        ok, bad = (ok + 1, bad) if resp.status == 200 else (ok, bad + 1)
        i += stride
    out.put((ok, bad))


def block(port: int, work: list[Request], clients: int, seconds: float, meter: CpuMeter) -> tuple[float, float]:
    """(batches/s, server + PostgreSQL CPU ms per batch) of `clients` processes posting `work` for `seconds`."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start_at = time.time() + 0.2
    procs = [ctx.Process(target=_client, args=(port, work, k, clients, start_at, seconds, out)) for k in range(clients)]
    for p in procs:
        p.start()
    s0, p0 = meter.sample()
    ok = bad = 0
    for _ in procs:
        a, b = out.get()
        ok, bad = ok + a, bad + b
    s1, p1 = meter.sample()
    for p in procs:
        p.join()
    if bad:
        raise RuntimeError(f"{bad} requests failed")
    cpu = CpuMeter.used(s0, s1) + CpuMeter.used(p0, p1)
    return ok / seconds, cpu / max(1, ok) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--block-seconds", type=float, default=5)
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--payloads", type=int, default=100)
    ap.add_argument("--port", type=int, default=4819)
    args = ap.parse_args(argv)

    url = fresh_database("hp_bench_foreign")
    engine = db.make_engine(url)
    token = auth.create_token(engine, ["ingest"], "bench")
    fleet = Fleet(FleetConfig(hosts=args.hosts))
    work = requests(fleet, args.hosts, args.payloads, token, time.time() + 60)
    for name, reqs in work.items():
        print(f"{name}: {sum(len(b) for _, b, _ in reqs) / len(reqs) / 1024:.1f} KiB a request")
    server = start_server(url, args.port, args.workers, args.threads)
    meter = CpuMeter(server.pid, make_url(url).database or "")
    try:
        for name in ("native", *PROTOCOLS):  # warm-up: each worker caches the fleet's stacks and series
            block(args.port, work[name], args.clients, args.block_seconds / 2, meter)
        natives: list[tuple[float, float]] = [block(args.port, work["native"], args.clients, args.block_seconds, meter)]
        runs: dict[str, list[tuple[float, float]]] = {p: [] for p in PROTOCOLS}
        bases: dict[str, list[tuple[float, float]]] = {p: [natives[-1]] for p in PROTOCOLS}
        for _ in range(args.rounds):
            for name in PROTOCOLS:
                runs[name].append(block(args.port, work[name], args.clients, args.block_seconds, meter))
                natives.append(block(args.port, work["native"], args.clients, args.block_seconds, meter))
                bases[name].append(natives[-1])
        rate = sum(r for r, _ in natives) / len(natives)
        cpu = sum(c for _, c in natives) / len(natives)
        print(f"native /api/v1/ingest: {rate:.0f} batches/s, {cpu:.2f} ms CPU a batch (mean of {len(natives)} blocks)")
        for name in PROTOCOLS:
            r = [x for x, _ in runs[name]]
            c = [x for _, x in runs[name]]
            print(f"{name}: {sum(r) / len(r):.0f} batches/s, {sum(c) / len(c):.2f} ms CPU a batch; vs native: "
                  f"rate {describe(sandwiched(r, [x for x, _ in bases[name]]))}; "
                  f"CPU/batch {describe(sandwiched(c, [x for _, x in bases[name]]))}   [target: within 20 %]")
    finally:
        server.terminate()
        server.wait(timeout=30)
        engine.dispose()
        drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
