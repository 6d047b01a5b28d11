"""PythonProcesses: detection from process snapshots, and thread maps kept current as threads start."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from collector.python.detect import Interpreter
from collector.python.tracker import PythonProcesses
from collector.symbolize.procmaps import capture
from tests.conftest import require

THREADS = Path(__file__).resolve().parent.parent / "workloads" / "py_threads.py"


class DictSink:
    def __init__(self) -> None:
        self.procs: dict[int, Interpreter] = {}
        self.threads: dict[int, int] = {}

    def set_process(self, interp: Interpreter) -> None:
        self.procs[interp.pid] = interp

    def set_threads(self, pid: int, added: dict[int, int], removed: list[int]) -> None:
        self.threads.update(added)
        for tid in removed:
            self.threads.pop(tid, None)

    def drop_process(self, pid: int, tids: list[int]) -> None:
        self.procs.pop(pid, None)
        for tid in tids:
            self.threads.pop(tid, None)


def test_new_threads_appear_after_refresh(python: Path) -> None:
    require(os.geteuid() == 0, "root")
    proc = subprocess.Popen([str(python), str(THREADS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    sink = DictSink()
    procs = PythonProcesses(sink)
    try:
        main_tid = int(proc.stdout.readline())  # type: ignore[union-attr]
        entry = procs.observe(capture(proc.pid))  # type: ignore[arg-type]
        assert entry is not None and set(sink.procs) == {proc.pid}
        assert set(sink.threads) == {main_tid}
        assert procs.observe(capture(proc.pid)) is entry  # unchanged: not detected again  # type: ignore[arg-type]
        started = []
        for _ in range(3):
            proc.stdin.write("\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            started.append(int(proc.stdout.readline()))  # type: ignore[union-attr]
        procs.refresh()
        assert set(sink.threads) == {main_tid, *started}
        assert all(sink.threads[t] for t in started)
        assert procs.counters == {"python_processes": 1}
    finally:
        proc.kill()
        proc.wait()
    procs.refresh()  # the process is gone: the last map is kept for its final samples
    assert set(sink.threads) == {main_tid, *started}
    procs.mark_dead(proc.pid)
    procs.forget(proc.pid)
    assert sink.procs == {} and sink.threads == {}


def test_other_processes_are_not_python() -> None:
    require(os.geteuid() == 0, "root")
    proc = subprocess.Popen(["sleep", "30"])
    try:
        procs = PythonProcesses(DictSink())
        assert procs.observe(capture(proc.pid)) is None  # type: ignore[arg-type]
        assert procs.counters == {} and procs.pids() == []
    finally:
        proc.kill()
        proc.wait()
