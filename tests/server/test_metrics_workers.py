"""/metrics under `hotpath server --workers 2` sums every worker (Prometheus multiprocess mode), whichever answers."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.server.test_up import free_port

HEALTHZ_ROUND = 40
INGESTS = 6


def get(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    # urllib opens a new connection per request: a sync worker serves one connection, then the
    # next accept may land on the other worker.
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read()


def start_server(tmp_path: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"HOTPATH_LOG_LEVEL": "WARNING", "TMPDIR": str(tmp_path / "tmp")})
    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "hotpath", "server", "--data-dir", str(tmp_path / "data"),
                             "--auto-upgrade", "--workers", "2", "--threads", "1", "--no-auth",
                             "--bind", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            # /readyz, not /healthz: the wait must not add to the /healthz count checked below.
            if get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                return proc
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"server not ready: {proc.stderr.read() if proc.stderr else ''}")


def sample(text: str, name: str, labels: dict[str, str]) -> float:
    found = [s.value for fam in text_string_to_metric_families(text) for s in fam.samples
             if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found} in\n{text}"
    return found[0]


def metrics_dir(tmp_path: Path) -> Path:
    dirs = list((tmp_path / "tmp").glob("hotpath-metrics-*"))
    assert len(dirs) == 1, f"expected the server's one private metrics directory under TMPDIR: {dirs}"
    return dirs[0]


def worker_pids(path: Path) -> set[str]:
    # Each worker writes <kind>_<pid>.db files as soon as its app has created its metrics.
    return {m.group(1) for f in path.iterdir() if (m := re.fullmatch(r"[a-z_]+?_(\d+)\.db", f.name))}


def healthz_by_worker(path: Path, pids: set[str], into: Path) -> dict[str, float]:
    """Each worker's own /healthz count, read from a copy of its counter file alone."""
    out = {}
    for pid in pids:
        one = into / pid
        one.mkdir(exist_ok=True)
        if (path / f"counter_{pid}.db").exists():
            shutil.copy(path / f"counter_{pid}.db", one / f"counter_{pid}.db")
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(one))
        out[pid] = sum(s.value for fam in registry.collect() for s in fam.samples
                       if s.name == "hotpath_http_requests_total" and s.labels.get("endpoint") == "/healthz")
    return out


def test_metrics_sum_all_workers(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(tmp_path, port)
    try:
        path = metrics_dir(tmp_path)
        assert oct(path.stat().st_mode & 0o777) == "0o700"
        deadline = time.monotonic() + 60
        while len(worker_pids(path)) < 2:  # /readyz answered by one worker; wait for the other to boot
            assert time.monotonic() < deadline, f"second worker never booted: {sorted(os.listdir(path))}"
            time.sleep(0.2)
        pids = worker_pids(path)
        assert len(pids) == 2, sorted(os.listdir(path))
        sent = 0
        for _ in range(10):  # rounds until the kernel has handed connections to both workers
            for _ in range(HEALTHZ_ROUND):
                assert get(f"{base}/healthz")[0] == 200
            sent += HEALTHZ_ROUND
            per_worker = healthz_by_worker(path, pids, tmp_path)
            if all(n > 0 for n in per_worker.values()):
                break
        assert all(n > 0 for n in per_worker.values()), f"one worker served every request: {per_worker}"
        assert sum(per_worker.values()) == sent
        for i in range(INGESTS):
            status, _ = get(f"{base}/api/v1/ingest?service=workers&type=cpu&sample_rate=100",
                            data=f"main;a;b {i + 1}\nmain;c 2\n".encode(), headers={"Content-Type": "text/plain"})
            assert status == 200
        for _ in range(8):  # each scrape may land on either worker; all must agree on the totals
            status, body = get(f"{base}/metrics")
            assert status == 200
            text = body.decode()
            assert sample(text, "hotpath_http_requests_total", {"endpoint": "/healthz", "status": "200"}) == sent
            assert sample(text, "hotpath_http_requests_total", {"endpoint": "/api/v1/ingest", "status": "200"}) \
                == INGESTS
            assert sample(text, "hotpath_ingest_batches_total", {"status": "stored"}) == INGESTS
            assert sample(text, "hotpath_ingest_samples_total", {}) == 2 * INGESTS
            assert sample(text, "hotpath_ingest_seconds_count", {}) == INGESTS
            # SQLite: NullPool, no fixed size; every connection went back after its request.
            assert sample(text, "hotpath_db_pool_checked_out", {}) == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    assert not list((tmp_path / "tmp").glob("hotpath-metrics-*")), "the metrics directory outlived the server"


def test_serve_refuses_when_prometheus_client_is_already_imported() -> None:
    from server.gunicorn_app import serve

    assert "prometheus_client" in sys.modules  # imported by this test module
    try:
        serve({}, "127.0.0.1:0", 1)
    except RuntimeError as exc:
        assert "before serve()" in str(exc)
    else:
        raise AssertionError("serve() ran with per-process metric values")
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_pool_gauges_follow_checkouts() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import QueuePool

    from server.metrics import Metrics

    engine = create_engine("sqlite://", poolclass=QueuePool, pool_size=3)
    metrics = Metrics(engine)
    with engine.connect(), engine.connect():
        assert sample(metrics.render().decode(), "hotpath_db_pool_checked_out", {}) == 2
    assert sample(metrics.render().decode(), "hotpath_db_pool_checked_out", {}) == 0
    assert sample(metrics.render().decode(), "hotpath_db_pool_size", {}) == 3
    engine.dispose()
