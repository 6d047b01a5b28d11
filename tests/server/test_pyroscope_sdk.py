"""Acceptance 1: real Pyroscope SDKs against a real `hotpath server`.

The Python SDK (`pyroscope-io` from PyPI, push API): a workload with a known hot function runs ~15 s
under `pyroscope.configure(...)` with tags and Basic-auth credentials carrying an ingest token; its
functions and tags are then queryable through /api/v1/top, /api/v1/flamegraph and the label APIs,
as type `cpu` and service = application_name. The Node SDK (`@pyroscope/nodejs` from npm, legacy
`/ingest` with pprof) likewise, as type `wall` (what it samples).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require

WORKLOAD = r"""
import sys, time
import pyroscope

pyroscope.configure(application_name="sdk.demo", server_address=sys.argv[1], basic_auth_username="anyone",
                    basic_auth_password=sys.argv[2], tags={"region": "eu-west", "stage": "test"},
                    tenant_id="acme")


def hot_spin():
    s = 0
    for i in range(200_000):
        s += i * i % 7
    return s


def cold_spin():
    s = 0
    for i in range(50_000):
        s += i % 3
    return s


end = time.time() + float(sys.argv[3])
while time.time() < end:
    hot_spin()
    cold_spin()
pyroscope.shutdown()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


NODE_DIR = Path(__file__).resolve().parents[1] / "clients" / "node"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp_path = tmp_path_factory.mktemp("server")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"HOTPATH_LOG_LEVEL": "WARNING", "TMPDIR": str(tmp_path)})
    data = str(tmp_path / "data")
    hotpath = [sys.executable, "-m", "hotpath"]
    subprocess.run([*hotpath, "db", "upgrade", "--data-dir", data], check=True, env=env, capture_output=True)
    tokens = {scope: subprocess.run([*hotpath, "token", "create", "--scope", scope, "--data-dir", data], env=env,
                                    check=True, capture_output=True, text=True).stdout.strip()
              for scope in ("ingest", "read")}
    port = free_port()
    proc = subprocess.Popen([*hotpath, "server", "--data-dir", data, "--bind", f"127.0.0.1:{port}", "--workers", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                urllib.request.urlopen(f"{base}/readyz", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise AssertionError("server not ready") from None
                time.sleep(0.2)
        yield base, tokens
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_pyroscope_python_sdk_pushes_to_hotpath(server: Any, tmp_path: Path) -> None:
    try:
        import pyroscope  # noqa: F401
    except ImportError:
        require(False, "pyroscope-io (pip install -e '.[test]')")
    base, tokens = server
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    run = subprocess.run([sys.executable, str(script), base, tokens["ingest"], "15"], check=False, capture_output=True,
                         text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    query = 'cpu{service="sdk.demo", region="eu-west", stage="test", tenant="acme"}'
    window = urllib.parse.urlencode({"query": query, "from": "now-5m", "until": "now+5m"})
    top = get(f"{base}/api/v1/top?{window}", tokens["read"])
    self_ns = {f["name"]: f["self"] for f in top["functions"]}
    assert top["type"] == "cpu" and top["total"] > 0, top
    # the loop spends ~4x longer in hot_spin than in cold_spin: a plausible share, not an exact one
    share = self_ns.get("hot_spin", 0) / top["total"]
    assert share > 0.5, (share, self_ns)
    assert self_ns.get("hot_spin", 0) > self_ns.get("cold_spin", 0), self_ns
    fg = get(f"{base}/api/v1/flamegraph?{window}&max_nodes=1000", tokens["read"])
    assert "hot_spin" in fg["names"] and fg["numTicks"] == top["total"]
    names = get(f"{base}/api/v1/labels", tokens["read"])
    for label in ("service", "region", "stage", "tenant"):
        assert label in json.dumps(names), names
    assert "eu-west" in json.dumps(get(f"{base}/api/v1/labels/region/values", tokens["read"]))
    types = json.dumps(get(f"{base}/api/v1/profile-types", tokens["read"]))
    assert "cpu" in types


def test_pyroscope_node_sdk_ingests_to_hotpath(server: Any, tmp_path: Path) -> None:
    node = shutil.which("node")
    require(node is not None and (NODE_DIR / "node_modules" / "@pyroscope" / "nodejs").is_dir(),
            "node and @pyroscope/nodejs (bash scripts/setup.sh runs npm ci in tests/clients/node)")
    base, tokens = server
    run = subprocess.run([node, str(NODE_DIR / "pyroscope_workload.js"), base, tokens["ingest"], "10"],
                         check=False, capture_output=True, text=True, timeout=120, cwd=NODE_DIR,
                         env={**os.environ, "DEBUG": "pyroscope"})
    assert run.returncode == 0, run.stderr
    assert "rejected" not in run.stderr, run.stderr
    query = 'wall{service="node.demo", region="eu", tenant="acme", otel_scope_name="com.grafana.pyroscope/nodejs"}'
    window = urllib.parse.urlencode({"query": query, "from": "now-5m", "until": "now+5m"})
    top = get(f"{base}/api/v1/top?{window}", tokens["read"])
    assert top["type"] == "wall" and top["total"] > 0, top
    hot = sum(f["self"] for f in top["functions"] if "hotSpin" in f["name"])
    cold = sum(f["self"] for f in top["functions"] if "coldSpin" in f["name"])
    assert hot > cold > 0 and hot / top["total"] > 0.4, (hot, cold, top["total"], top["functions"][:5])
    heap = get(f"{base}/api/v1/top?" + urllib.parse.urlencode(
        {"query": 'memory:inuse_space{service="node.demo"}', "from": "now-5m", "until": "now+5m"}), tokens["read"])
    assert heap["total"] > 0 and heap["unit"] == "bytes", heap
