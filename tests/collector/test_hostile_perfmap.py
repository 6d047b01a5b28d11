"""Issue 15 point 15: /tmp/perf-PID.map is read as perf reads it: a regular file owned by the
process's user or root, never through a link, never blocking, capped in size, printable names of
bounded length; what is refused is counted."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from collector.symbolize.perfmap import MAX_NAME_CHARS, PerfMap
from profiler.model import FrameKind
from tests.collector.test_symbolize import _settled, _symbolizer

NOBODY = 65534


@pytest.mark.timeout(10)
def test_fifo_is_refused_without_blocking(tmp_path) -> None:
    fifo = tmp_path / "perf-1.map"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    pm = PerfMap(fifo)
    assert pm.refresh() is False and len(pm.names) == 0
    assert time.monotonic() - t0 < 1.0
    assert pm.take_counts() == {"perf_maps_refused": 1}


def test_symlink_is_not_followed(tmp_path) -> None:
    secret = tmp_path / "root-only"
    secret.write_text("1000 100 secret_from_another_file\n")
    secret.chmod(0o600)
    link = tmp_path / "perf-1.map"
    link.symlink_to(secret)
    pm = PerfMap(link)
    assert pm.refresh() is False and pm.resolve(0x1010) is None
    assert "symbolic link" in pm.refusal
    assert pm.refresh() is False and pm.take_counts() == {"perf_maps_refused": 1}  # counted once


def test_size_cap_and_name_rules(tmp_path) -> None:
    path = tmp_path / "perf-1.map"
    lines = ["1000 10 good_one", "2000 10 \x1b[31mterminal_escape", f"3000 10 {'x' * (MAX_NAME_CHARS + 1)}",
             "4000 10 py::f:/app/\u00e9t\u00e9.py", "not a line", "0x5000 0x10 with_prefix", ""]
    path.write_bytes("\n".join(lines).encode() + b"\n6000 10 bad_utf8_\xff\n")
    pm = PerfMap(path)
    assert pm.refresh()
    assert pm.names == ["good_one", "py::f:/app/\u00e9t\u00e9.py", "with_prefix"]
    assert pm.resolve(0x1005) == "good_one" and pm.resolve(0x2005) is None and pm.resolve(0x5008) == "with_prefix"
    assert pm.take_counts() == {"perf_map_lines_refused": 4}  # escape, too long, junk, bad UTF-8
    big = PerfMap(path, max_bytes=64)
    assert big.refresh() is False and "cap" in big.refusal


def test_only_the_process_users_or_roots_map_is_read(tmp_path) -> None:
    """A perf map planted for a root process by another user is refused (and counted); a process
    running as `nobody` gets its own map and root's, never a third user's."""
    root_proc = _settled(subprocess.Popen(["sleep", "30"]))
    nobody_proc = _settled(subprocess.Popen(["sleep", "30"], user=NOBODY, group=NOBODY))
    maps = {p.pid: Path(f"/tmp/perf-{p.pid}.map") for p in (root_proc, nobody_proc)}
    try:
        maps[root_proc.pid].write_text("10000 100 planted_by_nobody\n")
        os.chown(maps[root_proc.pid], NOBODY, NOBODY)
        maps[nobody_proc.pid].write_text("10000 100 nobodys_own_jit\n")
        os.chown(maps[nobody_proc.pid], NOBODY, NOBODY)
        sym = _symbolizer(root_proc.pid)
        sym.tracker.only.add(nobody_proc.pid)
        counters: dict[str, int] = {}
        planted = sym.user_frames(root_proc.pid, [0x10050], counters)[0]
        own = sym.user_frames(nobody_proc.pid, [0x10050], counters)[0]
        events = sym.take_events()
        os.chown(maps[nobody_proc.pid], 1234, 1234)  # a third user's file for nobody's process
        sym.forget(nobody_proc.pid)
        sym.end_drain()
        third = sym.user_frames(nobody_proc.pid, [0x10050], counters)[0]
    finally:
        for p in (root_proc, nobody_proc):
            p.kill()
            p.wait()
        for path in maps.values():
            path.unlink(missing_ok=True)
    assert planted.function == "[unknown]"
    assert own.function == "nobodys_own_jit" and own.kind is FrameKind.JIT
    assert third.function == "[unknown]"
    assert events == {"perf_maps_refused": 1}
    assert sym.take_events() == {"perf_maps_refused": 1}


def test_perf_map_cap_flag() -> None:
    from hotpath.cli import build_parser

    base = ["collector", "--server", "http://x", "--token-file", "t"]
    assert build_parser().parse_args(base).perf_map_max_mb == 32
    assert build_parser().parse_args([*base, "--perf-map-max-mb", "4"]).perf_map_max_mb == 4
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--perf-map-max-mb", "0"])
