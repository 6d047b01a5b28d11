"""The real commands with real BPF: `hotpath collector` through an outage, SIGKILL and SIGTERM;
`hotpath record` output read by `go tool pprof` with the names `perf script` shows."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from profiler import pprof
from tests.conftest import require

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]


class Agent:
    """`python -m hotpath collector` in a subprocess, its status lines collected."""

    def __init__(self, server_url: str, token_file: Path, spool: Path) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hotpath", "collector", "--server", server_url, "--token-file",
             str(token_file), "--interval", "1s", "--spool-dir", str(spool), "--frequency", "49"],
            cwd=ROOT, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())

    def intervals(self) -> int:
        return sum(1 for line in self.lines if re.search(r"interval \d+ samples=", line))

    def wait_intervals(self, n: int, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while self.intervals() < n:
            assert self.proc.poll() is None, "\n".join(self.lines)
            assert time.monotonic() < end, "\n".join(self.lines)
            time.sleep(0.2)

    def finish(self, sig: int) -> int:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        self._reader.join(timeout=5)
        return rc


def _spooled_keys(spool: Path) -> set[str]:
    return {json.loads(p.read_text())["key"] for p in spool.glob("*.json")}


def test_outage_sigkill_restart_sigterm_every_interval_once(bpf_ready, ingest_server, tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("secret-token\n")
    spool = tmp_path / "spool"
    ingest_server.mode = "500"  # server failing from the start
    first = Agent(ingest_server.url, token, spool)
    first.wait_intervals(3)
    # BCC (and its LLVM) stayed in the loader subprocess; the agent samples with fds it was handed.
    mapped = Path(f"/proc/{first.proc.pid}/maps").read_text()
    assert "libbcc" not in mapped and "libLLVM" not in mapped
    assert any(re.search(r"samples=[1-9]", line) for line in first.lines), first.lines
    assert first.finish(signal.SIGKILL) == -signal.SIGKILL
    killed_keys = _spooled_keys(spool)
    completed = first.intervals()
    assert len(killed_keys) >= 2 * 3  # every completed interval was on disk (cpu + offcpu)
    assert ingest_server.stored == {}

    second = Agent(ingest_server.url, token, spool)
    second.wait_intervals(2)  # still failing: spooling, retrying with backoff
    ingest_server.mode = "ok"
    second.wait_intervals(second.intervals() + 4)
    assert second.finish(signal.SIGTERM) == 0
    stored = ingest_server.stored
    assert killed_keys <= set(stored)
    # Exactly once: every interval of both runs stored under its own key, nothing left behind.
    assert len(stored) == 2 * (second.intervals() + completed) or len(stored) == 2 * (
        second.intervals() + completed + 1), (len(stored), completed, second.intervals())
    assert _spooled_keys(spool) == set()
    assert all(a == "Bearer secret-token" for a in ingest_server.auth)
    types = {len(pprof.decode(b).sample_types) for b in stored.values()}
    assert types == {1, 2}  # offcpu and cpu batches
    assert any("spooled=" in line for line in second.lines)


def _perf_names(perf_data: Path, binary_name: str) -> set[str]:
    out = subprocess.run(["perf", "script", "-i", str(perf_data), "-F", "ip,sym,dso"],
                         capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines():
        m = re.match(r"\s*[0-9a-f]+\s+(\S+)\s+\((.*)\)", line)
        if m and os.path.basename(m.group(2)) == binary_name:
            names.add(m.group(1).split("+")[0])
    return names


def test_record_pprof_opens_in_go_tool_with_perf_names(bpf_ready, build, go_bin, tmp_path) -> None:
    require(shutil.which("perf") is not None, "perf (linux-perf) for the comparison")
    exe = build("cpu_split")
    perf_data = tmp_path / "perf.data"
    subprocess.run(["perf", "record", "-q", "-F", "99", "-g", "-o", str(perf_data), "--", str(exe), "2"],
                   check=True, capture_output=True)
    perf_names = _perf_names(perf_data, exe.name)
    assert {"main", "path_a", "spin"} <= perf_names

    work = subprocess.Popen([str(exe), "30"])
    try:
        out = tmp_path / "cpu.pb.gz"
        rec = subprocess.run([sys.executable, "-m", "hotpath", "record", "--duration", "4", "--pid",
                              str(work.pid), "-o", str(out)], cwd=ROOT, capture_output=True, text=True,
                             timeout=120, check=False)
    finally:
        work.kill()
        work.wait()
    assert rec.returncode == 0, rec.stderr
    assert "wrote" in rec.stderr and "hotpath record:" in rec.stderr
    top = subprocess.run([go_bin, "tool", "pprof", "-top", "-nodecount", "200", str(out)],
                         capture_output=True, text=True, check=True).stdout
    ours = set()
    for line in top.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1].endswith("%") and parts[4].endswith("%"):
            ours.add(parts[-1])
    workload_funcs = {n for n in perf_names if not n.startswith("_")}
    assert workload_funcs <= ours, (workload_funcs, ours)
