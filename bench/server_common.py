"""Shared pieces of the server benchmarks: throwaway PostgreSQL databases and percentiles."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


from server import db

PG_URL = os.environ.get("HOTPATH_TEST_PG_URL", "postgresql+psycopg://hotpath:hotpath@127.0.0.1:5432/hotpath_test")


def fresh_database(prefix: str = "hp_bench") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    db.upgrade(url)
    return url


def drop_database(url: str) -> None:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def start_server(url: str, port: int, args: list[str], env: dict[str, str] | None = None,
                 cwd: str | None = None) -> subprocess.Popen:
    """`hotpath server` on 127.0.0.1:port with extra flags and environment; returns once /readyz answers."""
    env = {**os.environ, "HOTPATH_MAINTENANCE_INTERVAL_S": "0", "HOTPATH_LOG_LEVEL": "WARNING", **(env or {})}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the server makes its own
    proc = subprocess.Popen([sys.executable, "-m", "hotpath", "server", "--db", url, "--bind", f"127.0.0.1:{port}",
                             *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]
