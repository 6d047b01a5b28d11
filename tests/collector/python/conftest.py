"""Fixtures: the two CPython 3.11 builds of this machine, and a Python process parked in a known chain."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require

PYENV_PREFIX = Path("/root/.pyenv/versions/3.11.7")
PYTHONS = {
    "pyenv-3.11.7": PYENV_PREFIX / "bin" / "python3.11",
    "debian-3.11.2": Path("/usr/bin/python3.11"),
}
CHAIN = Path(__file__).resolve().parent.parent / "workloads" / "py_chain.py"


def _line_of(marker: str) -> int:
    for i, text in enumerate(CHAIN.read_text().splitlines(), 1):
        if marker in text:
            return i
    raise AssertionError(marker)


LEAF_LINE = _line_of("# LEAF_LINE")
WORKER_LINE = _line_of("# WORKER_LINE")


@pytest.fixture(params=sorted(PYTHONS), scope="module")
def python(request: pytest.FixtureRequest) -> Path:
    path = PYTHONS[request.param]
    require(path.exists(), f"{path} (scripts/setup.sh installs Debian's python3.11; pyenv 3.11.7 is the image's)")
    return path


@dataclass
class Parked:
    pid: int
    main_tid: int
    worker_tid: int
    python: Path


@pytest.fixture()
def parked(python: Path) -> Iterator[Parked]:
    """py_chain.py running under `python`, then stopped (SIGSTOP) while both threads sleep."""
    require(os.geteuid() == 0, "root to read /proc/PID/mem of another process")
    proc = subprocess.Popen([str(python), str(CHAIN)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()  # type: ignore[union-attr]
        assert line and line[0] == "ready", line
        time.sleep(0.2)  # both threads reach their sleep loops
        os.kill(proc.pid, signal.SIGSTOP)
        worker = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        yield Parked(proc.pid, int(line[1]), worker[0] if worker else 0, python)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
