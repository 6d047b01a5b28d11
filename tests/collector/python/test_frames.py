"""The user-space Python stack reader against the known chain of py_chain.py and against py-spy
(from PyPI) reading the same stopped process, under both CPython builds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from collector.python.code import CodeCache
from collector.python.detect import Interpreter, find_interpreter
from collector.python.frames import read_frames
from collector.python.procmem import ProcessMemory
from collector.python.threads import thread_states
from collector.symbolize.procmaps import capture
from tests.collector.python.conftest import CHAIN, LEAF_LINE, WORKER_LINE, Parked
from tests.conftest import require


def _walk(parked: Parked) -> tuple[Interpreter, dict[int, list[tuple[str, str, int, bool]]]]:
    info = capture(parked.pid)
    cache = CodeCache()
    out = {}
    with ProcessMemory(parked.pid) as mem:
        interp = find_interpreter(parked.pid, info.maps, mem)
        assert isinstance(interp, Interpreter), interp
        tstates, why = thread_states(mem, interp)
        assert why == ""
        for tid, tstate in tstates.items():
            refs, why = read_frames(mem, interp.layout, tstate)
            assert why == ""
            out[tid] = [(c.qualname, c.filename, c.line(r.lasti), r.is_entry)
                        for r in refs for c in [cache.get(parked.pid, r.code, r.stamp, mem, interp.layout)]]
    return interp, out


def _version(python: Path) -> tuple[int, int, int]:
    out = subprocess.run([str(python), "-c", "import sys; print(*sys.version_info[:3])"], check=True,
                         capture_output=True, text=True).stdout
    return tuple(int(x) for x in out.split())  # type: ignore[return-value]


def test_detects_version_from_the_binary(parked: Parked) -> None:
    interp, _ = _walk(parked)
    assert interp.version == _version(parked.python)
    assert ("libpython3.11.so" in interp.path) == ("pyenv" in str(parked.python))
    assert interp.eval_start < interp.eval_end


def test_known_chain_with_lines_and_entries(parked: Parked) -> None:
    _, stacks = _walk(parked)
    assert set(stacks) == {parked.main_tid, parked.worker_tid}
    chain = str(CHAIN)
    main = stacks[parked.main_tid]
    assert [f[0] for f in main] == ["leaf", "Outer.callback", "Outer.method", "main", "<module>"]
    assert {f[1] for f in main} == {chain}
    assert main[0][2] == LEAF_LINE
    # Outer.callback is called back from C (sorted's key=): a new eval loop, an entry frame.
    assert [f[3] for f in main] == [False, True, False, False, True]
    worker = stacks[parked.worker_tid]
    assert worker[0][:3] == ("worker", chain, WORKER_LINE)
    assert [f[0] for f in worker[1:]] == ["Thread.run", "Thread._bootstrap_inner", "Thread._bootstrap"]
    assert all(f[1].endswith("/threading.py") for f in worker[1:])


def test_agrees_with_py_spy(parked: Parked) -> None:
    py_spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    require(py_spy is not None, "py-spy (pip install -e .[test])")
    _, stacks = _walk(parked)
    dump = json.loads(subprocess.run([py_spy, "dump", "--json", "--nonblocking", "--pid", str(parked.pid)],
                                     check=True, capture_output=True, text=True, timeout=30).stdout)
    theirs = {t["os_thread_id"]: [(f["name"], f["filename"], f["line"], f["is_entry"]) for f in t["frames"]]
              for t in dump}
    assert theirs == stacks
