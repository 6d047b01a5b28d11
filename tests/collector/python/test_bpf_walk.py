"""The BPF Python walk (bpf/hp_python.bpf.h) against the user-space reader, in a real BPF program
(tests/collector/python/py_walk_probe.bpf.c) walking real CPython 3.11 threads of both builds."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from collector.bpf_abi import BPF_DIR, DEFINES, PY_PROC
from collector.bpfmaps import BpfMap, possible_cpus
from collector.python.bpf_record import END_NAMES, decode_words, py_proc_value
from collector.python.bpf_sink import BpfSink
from collector.python.code import CodeCache
from collector.python.frames import FrameRef, read_frames
from collector.python.layout import PY311
from collector.python.procmem import ProcessMemory
from collector.python.tracker import PythonProcesses
from collector.symbolize.procmaps import capture
from tests.collector.python.conftest import CHAIN
from tests.conftest import require

PROBE = Path(__file__).with_name("py_walk_probe.bpf.c")


def test_py_proc_layout_matches_the_c_struct(tmp_path: Path) -> None:
    require(shutil.which("gcc") is not None, "gcc")
    fields = [n for n in PY_PROC.names if n != "pad"]
    src = tmp_path / "abi.c"
    src.write_text("#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n#include \"hp_python.h\"\n"
                   "int main(void) {\n"
                   + "".join(f'printf("{n} %zu\\n", offsetof(struct hp_py_proc, {n}));\n' for n in fields)
                   + 'printf("size %zu\\n", sizeof(struct hp_py_proc));\nreturn 0;\n}\n')
    subprocess.run(["gcc", f"-I{BPF_DIR}", str(src), "-o", str(tmp_path / "abi")], check=True)
    out = dict(line.split() for line in subprocess.run([str(tmp_path / "abi")], check=True, capture_output=True,
                                                         text=True).stdout.splitlines())
    assert {n: int(out[n]) for n in fields} == {n: PY_PROC.fields[n][1] for n in fields}
    assert int(out["size"]) == PY_PROC.itemsize


def test_decode_words() -> None:
    words = [0x1000, 5 << 32 | 1 << 31 | 7, 0, 0, 0x2000, 6 << 32 | 0x7FFFFFFF]
    assert decode_words(words) == [FrameRef(0x1000, 5, 7, True), FrameRef(0x2000, 6, -1, False)]
    words = [0x1000, 5 << 32 | 3, 0, 0]  # a shim frame after it: an entry (3.12+)
    assert decode_words(words) == [FrameRef(0x1000, 5, 3, True)]
    assert decode_words([]) == []
    assert np.frombuffer(py_proc_value(PY311), PY_PROC)["frame_window"][0] <= DEFINES["HP_PY_WINDOW"]


@pytest.fixture(scope="module")
def probe(bpf_ready: None):
    from collector.bpf_loader import import_bcc

    bcc = import_bcc()
    bpf = bcc.BPF(src_file=str(PROBE).encode(), cflags=[f"-I{BPF_DIR}"])
    yield bpf
    bpf.cleanup()


def _map(bpf, name: str) -> BpfMap:
    return BpfMap(os.dup(bpf[name.encode()].get_fd()), name, possible_cpus())


def _walks(bpf) -> dict[int, tuple[int, list[int]]]:
    out = {}
    for k, v in bpf[b"walks"].items():
        out[k.value] = (v.end, [int(v.st.ips[i]) for i in range(v.st.n)])
    return out


def test_bpf_walk_matches_user_space(probe, python: Path) -> None:
    probe[b"walks"].clear()
    sink = BpfSink(_map(probe, "py_procs"), _map(probe, "py_threads"))
    procs = PythonProcesses(sink)
    proc = subprocess.Popen([str(python), str(CHAIN)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()  # type: ignore[union-attr]
        assert line[0] == "ready"
        entry = procs.observe(capture(proc.pid))  # type: ignore[arg-type]
        assert entry is not None and len(entry.tstates) == 2
        time.sleep(0.3)  # several sleeps of both threads, walked
        os.kill(proc.pid, signal.SIGSTOP)
        walks = _walks(probe)
        assert set(walks) == set(entry.tstates)
        cache = CodeCache()
        with ProcessMemory(proc.pid) as mem:
            for tid, tstate in entry.tstates.items():
                end, words = walks[tid]
                assert END_NAMES[end] == "python_ok"
                theirs, why = read_frames(mem, entry.interp.layout, tstate)
                assert why == ""
                ours = decode_words(words)
                assert len(ours) == len(theirs) >= 4

                def key(r: FrameRef) -> tuple:
                    c = cache.get(proc.pid, r.code, r.stamp, mem, entry.interp.layout)
                    return r.code, r.stamp, r.is_entry, c.qualname, c.line(r.lasti)

                assert [key(r) for r in ours] == [key(r) for r in theirs]
        # A thread the maps do not know yet is counted as such, not walked.
        sink.set_threads(proc.pid, {}, [int(line[1])])
        probe[b"walks"].clear()
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.2)
        walks = _walks(probe)
        assert END_NAMES[walks[int(line[1])][0]] == "python_no_thread" and walks[int(line[1])][1] == []
        assert END_NAMES[walks[max(set(entry.tstates) - {int(line[1])})][0]] == "python_ok"
    finally:
        proc.kill()
        proc.wait()
        procs.forget(proc.pid)
    assert sink.procs.keys() == [] and sink.threads.keys() == []
