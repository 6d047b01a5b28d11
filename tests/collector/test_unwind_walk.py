"""The tables at work on a real process: a no-frame-pointer program blocked in read(2) in a known call
chain is walked with the table manager's own entries and rows (collector/unwind/reference_walk.py)
and the frames are compared with gdb's backtrace (gdb unwinds with its own CFI reader)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

from collector.symbolize.elf import load_elf
from collector.symbolize.procmaps import capture
from collector.unwind.reference_walk import END_OK, proc_mem_reader, walk
from collector.unwind.table_cache import TableCache
from collector.unwind.table_manager import TableManager
from tests.collector.conftest import WORKLOADS
from tests.collector.test_unwind_tables import FakeMaps
from tests.conftest import require

_FRAME = re.compile(r"^#(\d+)\s+(?:0x([0-9a-f]+) in )?(\S+)")
_REG = re.compile(r"^(rip|rsp|rbp)\s+0x([0-9a-f]+)")


def gdb_snapshot(pid: int) -> tuple[dict[str, int], list[tuple[int, str]]]:
    out = subprocess.run(["gdb", "-q", "-batch", "-nx", "-p", str(pid), "-ex", "set backtrace past-main on",
                          "-ex", "set backtrace past-entry on", "-ex", "info registers rip rsp rbp",
                          "-ex", "bt 64"], capture_output=True, text=True, timeout=120, check=False).stdout
    regs = {m.group(1): int(m.group(2), 16) for line in out.splitlines() if (m := _REG.match(line))}
    frames = []
    for line in out.splitlines():
        if m := _FRAME.match(line):
            if m.group(2):
                frames.append((int(m.group(2), 16), m.group(3)))
            elif m.group(1) == "0":
                frames.append((regs.get("rip", 0), m.group(3)))
            # else: a function gdb's debug info says was inlined into the next frame: no frame of its own
    return regs, frames


@pytest.fixture
def blocked_chain(tmp_path):
    require(shutil.which("gdb") is not None and shutil.which("gcc") is not None, "gdb and gcc")
    exe = tmp_path / "unwind_chain"
    subprocess.run(["gcc", "-O2", "-fomit-frame-pointer", "-o", str(exe), str(WORKLOADS / "unwind_chain.c")], check=True)
    proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"
    yield proc, str(exe)
    proc.kill()
    proc.wait()


def test_walk_matches_gdb_and_reaches_start(tmp_path, blocked_chain) -> None:
    proc, exe = blocked_chain
    regs, gdb_frames = gdb_snapshot(proc.pid)
    assert {"rip", "rsp", "rbp"} <= regs.keys() and len(gdb_frames) >= 5, gdb_frames
    fake = FakeMaps(200_000)
    mgr = TableManager(fake, TableCache(tmp_path / "cache"), 200_000)
    mgr.update_process(proc.pid, capture(proc.pid).maps)
    mgr.load_pending()
    pcs, end = walk(regs["rip"], regs["rsp"], regs["rbp"], fake.procs[proc.pid], fake.rows, proc_mem_reader(proc.pid))
    assert end == END_OK, (end, [hex(p) for p in pcs])
    assert pcs[:len(gdb_frames)] == [pc for pc, _ in gdb_frames], (
        [hex(p) for p in pcs], [(hex(p), n) for p, n in gdb_frames])
    # The chain itself, by the executable's symbols: inner <- middle (rbp-based CFA) <- outer <- main.
    elf = load_elf(exe)
    info = capture(proc.pid)
    names = []
    for pc in pcs:
        m = info.find(pc)
        if m is not None and m.clean_path == exe:
            names.append(elf.resolve(elf.to_vaddr(pc - m.start + m.offset)))
    assert names == ["inner", "middle", "outer", "main", "_start"], names


PYTHON = "/root/.pyenv/versions/3.11.7/bin/python3.11"


@pytest.mark.parametrize("argv", [["/usr/bin/sleep", "60"],
                                  [PYTHON, "-c", "import sys, time; print('ready', flush=True); time.sleep(60)"]],
                         ids=["debian-sleep", "pyenv-python"])
def test_walk_matches_gdb_for_distro_and_interpreter(tmp_path, argv: list[str]) -> None:
    require(shutil.which("gdb") is not None, "gdb")
    require(shutil.which(argv[0]) is not None, argv[0])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        if argv[0] == PYTHON:
            assert proc.stdout.readline() == b"ready\n"
        else:
            for _ in range(100):
                info = capture(proc.pid)
                if info and any(m.path.endswith("libc.so.6") for m in info.maps):
                    break
                time.sleep(0.02)
            time.sleep(0.2)
        regs, gdb_frames = gdb_snapshot(proc.pid)
        assert len(gdb_frames) >= 4, gdb_frames
        fake = FakeMaps(400_000)
        mgr = TableManager(fake, TableCache(tmp_path / "cache"), 400_000)
        mgr.update_process(proc.pid, capture(proc.pid).maps)
        mgr.load_pending()
        pcs, end = walk(regs["rip"], regs["rsp"], regs["rbp"], fake.procs[proc.pid], fake.rows,
                        proc_mem_reader(proc.pid))
        assert end == END_OK, (end, [hex(p) for p in pcs])
        assert pcs[:len(gdb_frames)] == [pc for pc, _ in gdb_frames], (
            [hex(p) for p in pcs], [(hex(p), n) for p, n in gdb_frames])
    finally:
        proc.kill()
        proc.wait()


def test_binary_deleted_after_exec_still_walks(tmp_path, blocked_chain) -> None:
    """The executable is gone from the file system: its table comes through /proc/PID/map_files."""
    proc, exe = blocked_chain
    regs, gdb_frames = gdb_snapshot(proc.pid)
    os.unlink(exe)
    info = capture(proc.pid)
    assert any(m.deleted for m in info.maps)
    fake = FakeMaps(200_000)
    mgr = TableManager(fake, TableCache(None), 200_000)
    mgr.update_process(proc.pid, info.maps)
    mgr.load_pending()
    deleted = [i for i, m in enumerate(info.maps) if m.deleted]
    assert (fake.procs[proc.pid]["table_count"][deleted] > 0).all()
    pcs, end = walk(regs["rip"], regs["rsp"], regs["rbp"], fake.procs[proc.pid], fake.rows, proc_mem_reader(proc.pid))
    assert end == END_OK and pcs[:len(gdb_frames)] == [pc for pc, _ in gdb_frames]
