"""PythonStacks: recorded words -> named frames merged into native stacks, with counted reasons."""

from __future__ import annotations

from collector.bpf_abi import DEFINES
from collector.python.frames import read_frames
from collector.python.merge import EVAL_FRAME
from collector.python.stacks import NOT_TRACKED, PARTIAL_MERGE, PythonStacks
from collector.python.tracker import PythonProcesses
from profiler.model import Frame, FrameKind
from tests.collector.python.test_bad_input import CODES, _fake, _interp

OK, NO_THREAD, TRUNCATED = DEFINES["HP_PY_END_OK"], DEFINES["HP_PY_END_NO_THREAD"], DEFINES["HP_PY_END_TRUNCATED"]


def _words(refs) -> list[int]:
    out = []
    for r in refs:
        out += [r.code, r.stamp << 32 | int(r.is_entry) << 31 | (r.lasti & 0x7FFFFFFF)]
    return out


def _setup():
    mem, ts = _fake(3)
    procs = PythonProcesses()
    entry = procs.track(_interp(), mem)
    assert entry.tstates == {4242: ts}
    refs, _ = read_frames(mem, entry.interp.layout, ts)
    return PythonStacks(procs), _words(refs), mem


def test_merged_and_named_after_exit() -> None:
    stacks, words, mem = _setup()
    native = [Frame("nanosleep", "libc.so.6", FrameKind.NATIVE), Frame(EVAL_FRAME, "python", FrameKind.NATIVE),
              Frame("main", "python", FrameKind.NATIVE)]
    stacks.warm(1, words)  # BPF announced the stack: names read while the process lives
    stacks.procs.mark_dead(1)
    mem.regions.clear()  # the process is gone
    counters: dict[str, int] = {}
    out = stacks.merged(1, native, words, OK, counters, weight=5)
    assert [f.function for f in out] == ["nanosleep", "app.f0", "app.f1", "app.f2", "main"]
    assert counters == {"python_samples": 5}


def test_reasons_are_counted_with_placeholders() -> None:
    stacks, words, _ = _setup()
    native = [Frame("nanosleep", "libc.so.6", FrameKind.NATIVE)]
    counters: dict[str, int] = {}
    out = stacks.merged(1, native, words[:4], TRUNCATED, counters, weight=2)
    assert [f.function for f in out] == ["nanosleep", "app.f0", "app.f1", "[python: deeper frames truncated]"]
    assert counters == {"python_samples": 2, PARTIAL_MERGE: 2, "python_truncated": 2}
    counters = {}
    out = stacks.merged(1, native, [], NO_THREAD, counters, weight=1)
    assert [f.function for f in out] == ["nanosleep", "[python: thread not registered yet]"]
    assert counters == {"python_samples": 1, "python_no_thread": 1}
    counters = {}
    out = stacks.merged(99, native, words, OK, counters, weight=1)
    assert out[-1].function == f"[{NOT_TRACKED}]"
    assert counters == {"python_samples": 1, NOT_TRACKED: 1}
    # Unreadable code object: a placeholder per frame, counted with the sample's weight.
    stacks2, words2, mem2 = _setup()
    mem2.regions.pop(CODES + 0x200)
    counters = {}
    out = stacks2.merged(1, native, words2, OK, counters, weight=3)
    assert out[1].function == f"[python code {CODES:#x}]" and counters["python_code_unreadable"] == 3
    assert stacks.merged(1, native, [], 0, counters, 1) is native  # not a Python process
