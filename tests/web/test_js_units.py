"""Run the web UI's pure-module unit tests (`node --test web/tests/`) as part of pytest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]


def test_node_unit_tests_pass() -> None:
    node = shutil.which("node")
    require(node is not None, "node (v20+) for the web UI's unit tests")
    proc = subprocess.run([node, "--test", "web/tests/"], cwd=ROOT, check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"node --test failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    assert "# fail 0" in proc.stdout
    assert "# pass 0" not in proc.stdout, "no tests ran"
