"""Fleet simulator: realistic batches from many services and hosts, pushed through the HTTP API.

Each service has a universe of stacks built from shared call paths (deep: 10..120 frames, some
with kernel frames); every batch picks ~`unique_per_batch` distinct stacks by a Zipf law, with
per-sample labels (pid/process/thread) whose PIDs churn over time. Used by the server benchmarks
and the UI's tests.

  python bench/fleet_sim.py --server http://127.0.0.1:4040 --token-file t --hosts 20 --duration 60
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from profiler.model import Frame, FrameKind, Profile, Sample
from profiler.types import new_cpu_profile


@dataclass
class FleetConfig:
    services: int = 10
    hosts: int = 100
    stacks_per_service: int = 4000
    functions_per_service: int = 600
    unique_per_batch: int = 300
    zipf_s: float = 1.05
    min_depth: int = 10
    max_depth: int = 120
    processes_per_host: int = 4
    pid_churn: float = 0.02  # chance per batch that one process restarts with a new PID
    hz: int = 19
    interval_s: int = 10
    seed: int = 1


class Fleet:
    """Deterministic synthetic fleet; `batch(host, t)` returns one 10-second profile."""

    def __init__(self, cfg: FleetConfig) -> None:
        self.cfg = cfg
        rng = np.random.default_rng(cfg.seed)
        self.rng = rng
        kernel = [Frame(n, "[kernel.kallsyms]", FrameKind.KERNEL) for n in (
            "entry_SYSCALL_64", "do_syscall_64", "__x64_sys_read", "vfs_read", "tcp_recvmsg", "schedule",
            "__x64_sys_futex", "futex_wait", "ksys_write", "ext4_file_write_iter")]
        self.services: list[str] = [f"svc-{i:02d}" for i in range(cfg.services)]
        self.universe: list[list[tuple[Frame, ...]]] = []
        for svc in self.services:
            binary = f"/usr/bin/{svc}"
            funcs = [Frame(f"{svc}::mod{j % 40}::fn_{j}", binary if j % 5 else "/usr/lib/libc.so.6",
                           FrameKind.NATIVE) for j in range(cfg.functions_per_service)]
            roots = [Frame("_start", binary, FrameKind.NATIVE), Frame("main", binary, FrameKind.NATIVE)]
            stacks = self._call_tree_stacks(rng, roots, funcs, kernel)
            self.universe.append(stacks)
        ranks = np.arange(1, cfg.stacks_per_service + 1, dtype=np.float64)
        weights = ranks ** -cfg.zipf_s
        self.p = weights / weights.sum()
        self.host_names = [f"host-{h:04d}" for h in range(cfg.hosts)]
        self.pids = [[10_000 + h * 100 + k for k in range(cfg.processes_per_host)] for h in range(cfg.hosts)]
        self.next_pid = 10_000_000

    def _call_tree_stacks(self, rng: np.random.Generator, roots: list[Frame], funcs: list[Frame],
                          kernel: list[Frame]) -> list[tuple[Frame, ...]]:
        """Distinct stacks as root paths to nodes of one random call tree per service.

        Real programs share long prefixes (main -> server loop -> handler ...) and differ near the
        leaves: the tree grows mostly by extending the newest chain (depth) and sometimes by
        branching off any node, so a merged flame graph has about two nodes per distinct stack.
        """
        cfg = self.cfg
        n_nodes = cfg.stacks_per_service * 2
        parent = [-1]
        depth = [len(roots)]
        frame: list[Frame | None] = [None]
        while len(parent) < n_nodes:
            last = len(parent) - 1
            p = last if rng.random() < 0.8 else int(rng.integers(0, len(parent)))
            while depth[p] >= cfg.max_depth:
                p = int(rng.integers(0, len(parent)))
            parent.append(p)
            depth.append(depth[p] + 1)
            frame.append(funcs[int(rng.integers(0, len(funcs)))])
        candidates = [i for i in range(1, n_nodes) if depth[i] >= cfg.min_depth] or list(range(1, n_nodes))
        picks = rng.choice(len(candidates), size=min(cfg.stacks_per_service, len(candidates)), replace=False)
        stacks: list[tuple[Frame, ...]] = []
        for k in picks:
            node, path = candidates[int(k)], []
            while node > 0:
                path.append(frame[node])
                node = parent[node]
            path.reverse()
            stack = tuple(roots) + tuple(path)  # type: ignore[arg-type]
            if rng.random() < 0.25:
                stack += tuple(kernel[: int(rng.integers(1, 5))])
            stacks.append(stack)
        return stacks

    def service_of(self, host: int) -> int:
        return host % self.cfg.services

    def series_labels(self, host: int) -> dict[str, str]:
        return {"service": self.services[self.service_of(host)], "host": self.host_names[host]}

    def batch(self, host: int, t: float) -> Profile:
        cfg, rng = self.cfg, self.rng
        svc = self.service_of(host)
        prof = new_cpu_profile(cfg.hz, time_nanos=int(t * 1e9), duration_nanos=cfg.interval_s * 1_000_000_000)
        if rng.random() < cfg.pid_churn:
            self.pids[host][int(rng.integers(0, cfg.processes_per_host))] = self.next_pid
            self.next_pid += 1
        n = min(cfg.unique_per_batch, cfg.stacks_per_service)
        picks = rng.choice(cfg.stacks_per_service, size=n, replace=False, p=self.p)
        counts = 1 + rng.geometric(0.5, size=n)
        procs = rng.integers(0, cfg.processes_per_host, size=n)
        universe = self.universe[svc]
        name = self.services[svc]
        pids = self.pids[host]
        label_sets = [(("pid", str(pids[k])), ("process", f"{name}-w{k}"), ("thread", f"{name}-w{k}"))
                      for k in range(cfg.processes_per_host)]
        period = prof.period
        prof.samples = [Sample(universe[int(i)], (int(c), int(c) * period), label_sets[int(k)])
                        for i, c, k in zip(picks, counts, procs)]
        return prof

    def batches(self, start: float, duration_s: float) -> Iterator[tuple[int, float, Profile]]:
        """Every host's batches in time order over [start, start + duration)."""
        t = start
        while t < start + duration_s:
            for host in range(self.cfg.hosts):
                yield host, t, self.batch(host, t)
            t += self.cfg.interval_s


def encode(profile: Profile) -> bytes:
    from profiler import pprof

    data = pprof.encode(profile, compress=True)
    return data if data[:2] == b"\x1f\x8b" else gzip.compress(data)


class Pusher:
    """Keep-alive HTTP client sending pre-encoded batches; records latencies."""

    def __init__(self, server: str, token: str | None) -> None:
        parsed = urllib.parse.urlsplit(server)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.headers = {"Content-Type": "application/octet-stream"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        return conn

    def push(self, body: bytes, labels: dict[str, str], key: str | None = None) -> tuple[int, float]:
        headers = dict(self.headers)
        headers["Idempotency-Key"] = key or uuid.uuid4().hex
        path = "/api/v1/ingest?" + urllib.parse.urlencode(labels)
        started = time.perf_counter()
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                return resp.status, time.perf_counter() - started
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default="http://127.0.0.1:4040")
    ap.add_argument("--token-file", type=Path)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--services", type=int, default=5)
    ap.add_argument("--duration", type=float, default=60, help="simulated seconds of fleet time")
    ap.add_argument("--start", type=float, help="unix time of the first batch (default now - duration)")
    ap.add_argument("--realtime", action="store_true", help="send each interval when it is due")
    args = ap.parse_args(argv)
    token = args.token_file.read_text().strip() if args.token_file else None
    fleet = Fleet(FleetConfig(hosts=args.hosts, services=args.services))
    start = args.start if args.start is not None else time.time() - args.duration
    pusher = Pusher(args.server, token)
    sent = errors = 0
    t_begin = time.time()
    for host, t, profile in fleet.batches(start, args.duration):
        if args.realtime:
            time.sleep(max(0.0, t - start - (time.time() - t_begin)))
        status, _ = pusher.push(encode(profile), fleet.series_labels(host))
        sent += 1
        errors += status != 200
    print(f"sent {sent} batches, {errors} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
