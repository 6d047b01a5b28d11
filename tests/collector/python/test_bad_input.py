"""Bad input: frames freed mid-walk, cycles, unreadable or replaced code objects, unknown versions,
a process in another mount namespace. Each gets a counted reason and keeps what was read."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from collector.python import layout as layout_mod
from collector.python.code import CodeCache, CodeReadError
from collector.python.detect import UNKNOWN_VERSION, Interpreter, NotWalkable, find_interpreter
from collector.python.frames import CYCLE, READ_FAULT, TRUNCATED, FrameRef, fold_stamp, read_frames
from collector.python.layout import PY311 as L
from collector.python.names import UNREADABLE_CODE, Namer
from collector.python.procmem import FakeMemory, ProcessMemory
from collector.python.threads import thread_states
from collector.symbolize.procmaps import capture
from profiler.model import FrameKind
from tests.collector.python.conftest import CHAIN, PYTHONS
from tests.conftest import require

RUNTIME, INTERP, TSTATE, CFRAME = 0x10000, 0x20000, 0x30000, 0x40000
FRAMES = 0x50000  # frame i at FRAMES + i * 0x100
CODES = 0x60000   # code object i at CODES + i * 0x1000, its strings after it


def _put(buf: bytearray, off: int, fmt: str, *values: int) -> None:
    struct.pack_into(fmt, buf, off, *values)


def _ascii(text: str) -> bytes:
    head = bytearray(L.unicode_ascii_data)
    _put(head, L.unicode_length, "<q", len(text))
    _put(head, L.unicode_state, "<I", (1 << 2) | (1 << 5) | (1 << 6))  # kind 1, compact, ascii
    return bytes(head) + text.encode() + b"\0"


def _code(mem: FakeMemory, i: int, qualname: str, firstlineno: int) -> int:
    addr = CODES + i * 0x1000
    obj = bytearray(L.code_bytecode + 16)
    _put(obj, L.code_size, "<q", 8)
    _put(obj, L.code_firstlineno, "<ii", firstlineno, 3)
    for off, text, at in ((L.code_qualname, qualname, 0x200), (L.code_filename, "/srv/app.py", 0x400)):
        _put(obj, off, "<Q", addr + at)
        mem.write(addr + at, _ascii(text))
    table = bytearray(L.bytes_data) + bytes([0x80 | (13 << 3) | 7, 2])  # 8 units, line +1
    _put(table, L.bytes_size, "<q", 2)
    _put(obj, L.code_linetable, "<Q", addr + 0x600)
    mem.write(addr + 0x600, bytes(table))
    mem.write(addr, bytes(obj))
    return addr


def _fake(n: int, link_last_to: int | None = None) -> tuple[FakeMemory, int]:
    """A runtime with one thread whose frames 0..n-1 run code objects 0..n-1."""
    mem = FakeMemory()
    rt = bytearray(64)
    _put(rt, L.runtime_interpreters_head, "<Q", INTERP)
    mem.write(RUNTIME, bytes(rt))
    ist = bytearray(32)
    _put(ist, L.interp_threads_head, "<Q", TSTATE)
    mem.write(INTERP, bytes(ist))
    ts = bytearray(200)
    _put(ts, L.tstate_native_thread_id, "<Q", 4242)
    _put(ts, L.tstate_cframe, "<Q", CFRAME)
    mem.write(TSTATE, bytes(ts))
    cf = bytearray(16)
    _put(cf, L.cframe_current_frame, "<Q", FRAMES)
    mem.write(CFRAME, bytes(cf))
    for i in range(n):
        code = _code(mem, i, f"f{i}", 10 * i)
        fr = bytearray(0x80)
        nxt = FRAMES + (i + 1) * 0x100 if i + 1 < n else (link_last_to or 0)
        _put(fr, L.frame_code, "<Q", code)
        _put(fr, L.frame_previous, "<Q", nxt)
        _put(fr, L.frame_instr, "<Q", code + L.code_bytecode + 2 * 3)
        fr[L.frame_is_entry] = int(i == n - 1)
        mem.write(FRAMES + i * 0x100, bytes(fr))
    return mem, TSTATE


def _interp() -> Interpreter:
    return Interpreter(pid=1, path="/x", version=(3, 11, 0), runtime=RUNTIME, eval_start=0, eval_end=0,
                       layout=L, members_from_binary=False)


def test_fake_process_walks_whole() -> None:
    mem, ts = _fake(3)
    assert thread_states(mem, _interp()) == ({4242: TSTATE}, "")
    refs, why = read_frames(mem, L, ts)
    assert why == "" and [r.lasti for r in refs] == [3, 3, 3] and [r.is_entry for r in refs] == [False, False, True]
    counters: dict[str, int] = {}
    frames = Namer().frames(1, refs, mem, L, counters)
    assert [(f.function, f.line, f.kind) for f in frames] == [("app.f0", 1, FrameKind.INTERPRETED),
                                                              ("app.f1", 11, FrameKind.INTERPRETED),
                                                              ("app.f2", 21, FrameKind.INTERPRETED)]
    assert counters == {}


def test_frame_freed_mid_walk_keeps_the_frames_read() -> None:
    mem, ts = _fake(3)
    del mem.regions[FRAMES + 2 * 0x100]  # the outermost frame is gone (freed and unmapped)
    refs, why = read_frames(mem, L, ts)
    assert why == READ_FAULT and len(refs) == 2


def test_cycle_and_depth_bound() -> None:
    mem, ts = _fake(3, link_last_to=FRAMES)
    refs, why = read_frames(mem, L, ts)
    assert why == CYCLE and len(refs) == 3
    mem, ts = _fake(5)
    refs, why = read_frames(mem, L, ts, max_depth=4)
    assert why == TRUNCATED and len(refs) == 4


def test_unreadable_and_replaced_code_objects_are_placeholders() -> None:
    mem, ts = _fake(2)
    refs, _ = read_frames(mem, L, ts)
    namer = Namer()
    del mem.regions[CODES + 0x1000 + 0x200]  # f1's qualname string is unreadable
    counters: dict[str, int] = {}
    frames = namer.frames(1, refs, mem, L, counters)
    assert frames[0].function == "app.f0"
    assert frames[1].function == f"[python code {CODES + 0x1000:#x}]"
    assert counters == {UNREADABLE_CODE: 1}
    # A new code object at a cached address (another stamp) is re-read, never named from the cache.
    _code(mem, 0, "g0", 500)
    fresh = FrameRef(refs[0].code, fold_stamp(500 | 3 << 32), 0, False)
    assert namer.frames(1, [fresh], mem, L, counters)[0].function == "app.g0"
    # A process gone: only what was cached with the same stamp answers.
    cache = CodeCache()
    cache.get(1, refs[0].code, fresh.stamp, mem, L)
    assert cache.get(1, refs[0].code, fresh.stamp, None, L).qualname == "g0"
    with pytest.raises(CodeReadError):
        cache.get(1, refs[0].code, refs[0].stamp, None, L)


def test_unknown_version_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    python = PYTHONS["debian-3.11.2"]
    require(python.exists() and os.geteuid() == 0, f"{python} and root")
    monkeypatch.setattr(layout_mod, "LAYOUTS", {})
    proc = subprocess.Popen([str(python), "-c", "import time; print(1, flush=True); time.sleep(30)"],
                            stdout=subprocess.PIPE)
    try:
        proc.stdout.readline()  # type: ignore[union-attr]
        with ProcessMemory(proc.pid) as mem:
            found = find_interpreter(proc.pid, capture(proc.pid).maps, mem)
        assert isinstance(found, NotWalkable)
        assert (found.reason, found.detail) == (UNKNOWN_VERSION, "3.11.2")
    finally:
        proc.kill()
        proc.wait()


def test_process_in_another_mount_namespace(tmp_path: Path) -> None:
    """Interpreter and script live on a tmpfs mounted only inside the process's own mount
    namespace: neither path exists here, and both are still read (map_files, /proc/PID/mem)."""
    python = PYTHONS["debian-3.11.2"]
    require(python.exists() and os.geteuid() == 0 and shutil.which("unshare") is not None,
            f"{python}, root and unshare")
    inner = tmp_path / "ns"
    inner.mkdir()
    script = (f"mount -t tmpfs none {inner} && mkdir {inner}/pkg && touch {inner}/pkg/__init__.py && "
              f"cp {python} {inner}/py && cp {CHAIN} {inner}/pkg/chain.py && "
              f"exec {inner}/py -c 'import sys; sys.path[:0] = [\"{inner}\"]; import pkg.chain as c; c.main()'")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()  # type: ignore[union-attr]
        assert line and line[0] == "ready"
        assert not (inner / "py").exists()  # not in our namespace
        with ProcessMemory(proc.pid) as mem:
            interp = find_interpreter(proc.pid, capture(proc.pid).maps, mem)
            assert isinstance(interp, Interpreter) and interp.path == f"{inner}/py"
            refs, _ = read_frames(mem, interp.layout, thread_states(mem, interp)[0][int(line[1])])
            counters: dict[str, int] = {}
            names = [f.function for f in Namer().frames(proc.pid, refs, mem, interp.layout, counters)]
        assert names[:4] == ["pkg.chain.leaf", "pkg.chain.Outer.callback", "pkg.chain.Outer.method",
                             "pkg.chain.main"]
        assert counters == {}
    finally:
        proc.kill()
        proc.wait()
