"""Symbolization pieces against real files: ELF (PIE) via a live process, demangling, perf maps,
kallsyms with kptr_restrict, cgroup parsing, unreadable and deleted binaries."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from collector.processes import ProcessTracker
from collector.symbolize.demangle import demangle
from collector.symbolize.elf import load_elf
from collector.symbolize.kallsyms import KernelSymbols
from collector.symbolize.perfmap import PerfMap
from collector.symbolize.procmaps import parse_cgroup, parse_maps
from collector.symbolize.symbolizer import Symbolizer
from profiler.model import FrameKind
from tests.conftest import require


def test_demangle_cpp_and_rust() -> None:
    assert demangle("_ZN3foo3barEv") == "foo::bar()"
    assert demangle("_ZN4core3fmt5write17h0123456789abcdefE") == "core::fmt::write"
    assert demangle("_RNvCs1234_7mycrate4main").endswith("mycrate::main")
    assert demangle("plain_c") == "plain_c"
    assert demangle("_Zbroken!!") == "_Zbroken!!"  # undecodable passes through


def test_kallsyms_and_kptr_restrict(tmp_path) -> None:
    good = tmp_path / "k"
    good.write_text("ffffffff81000000 T _stext\nffffffff81000100 t helper\nffffffff81001000 D data\n")
    ks = KernelSymbols(good)
    assert ks.resolve(0xffffffff81000150) == "helper" and not ks.restricted
    zero = tmp_path / "z"
    zero.write_text("0000000000000000 T _stext\n0000000000000000 T schedule\n")
    kz = KernelSymbols(zero)
    assert kz.restricted and kz.resolve(0xffffffff81000150) is None


def test_perfmap_parses_and_reloads(tmp_path) -> None:
    path = tmp_path / "perf-1.map"
    path.write_text("1000 100 py::work:/app/x.py\nnot a line\n")
    pm = PerfMap(path)
    assert pm.refresh() and pm.resolve(0x1050) == "py::work:/app/x.py" and pm.resolve(0x1100) is None
    assert pm.bad_lines == 1
    path.write_text("1000 100 py::work:/app/x.py\n2000 10 LazyCompile:*fn /app/y.js:1\n")
    pm.refresh()
    assert pm.resolve(0x2005) == "LazyCompile:*fn /app/y.js:1"


def test_cgroup_container_and_pod() -> None:
    cid = "0123456789abcdef" * 4
    path, c, pod = parse_cgroup(
        f"0::/kubepods.slice/kubepods-pod1a2b3c4d_0000_1111_2222_333344445555.slice/cri-containerd-{cid}.scope\n")
    assert c == cid and pod == "1a2b3c4d-0000-1111-2222-333344445555" and path.startswith("/kubepods")
    assert parse_cgroup("0::/user.slice/session-1.scope\n")[1:] == ("", "")
    maps = parse_maps("7f00-7f10 r-xp 00000000 08:01 12 /usr/lib/libc.so.6 (deleted)\nbad\n"
                      "7f20-7f30 rw-p 00000000 00:00 0\n")
    assert len(maps) == 1 and maps[0].deleted and maps[0].clean_path == "/usr/lib/libc.so.6"


def _settled(proc: subprocess.Popen) -> subprocess.Popen:
    """Wait until the dynamic loader has finished mapping: a snapshot taken mid-way is stale at once."""
    maps = Path(f"/proc/{proc.pid}/maps")
    last, deadline = "", time.monotonic() + 10
    while time.monotonic() < deadline:
        now = maps.read_text()
        if now == last:
            return proc
        last = now
        time.sleep(0.1)
    raise AssertionError(f"maps of pid {proc.pid} kept changing for 10 s")


def _symbolizer(pid: int) -> Symbolizer:
    sym = Symbolizer(None, kernel=KernelSymbols("/dev/null"))  # type: ignore[arg-type]
    sym.tracker = ProcessTracker(pids=[pid], on_capture=sym.warm)
    return sym


def _addr_of(pid: int, exe: str, name: str, sym: Symbolizer) -> int:
    """Runtime address of `name` in a live PIE process, from the ELF and its maps (the inverse)."""
    elf = load_elf(exe)
    vaddr = elf.address_of(name) + 4
    info = sym.tracker.get(pid)
    for m in info.maps:
        for off, seg_vaddr, size in elf.segments:
            file_off = vaddr - seg_vaddr + off
            if off <= file_off < off + size and m.offset <= file_off < m.offset + (m.end - m.start):
                return m.start + file_off - m.offset
    raise AssertionError("not mapped")


def test_pie_binary_resolves_then_survives_deletion_and_exit(build, tmp_path) -> None:
    exe = tmp_path / "pie_copy"
    shutil.copy(build("cpu_split"), exe)
    proc = _settled(subprocess.Popen([str(exe), "3"]))
    try:
        sym = _symbolizer(proc.pid)
        addr = _addr_of(proc.pid, str(exe), "path_b", sym)
        counters: dict[str, int] = {}
        frame = sym.user_frames(proc.pid, [addr], counters)[0]
        assert frame.function == "path_b" and frame.kind is FrameKind.NATIVE and frame.build_id
        # Deleted while running: a fresh symbolizer pins the image through /proc/PID/map_files.
        exe.unlink()
        sym2 = _symbolizer(proc.pid)
        sym2.tracker.poll()
    finally:
        proc.kill()
        proc.wait()
    assert sym2.user_frames(proc.pid, [addr], counters)[0].function == "path_b"
    assert counters == {}


def test_unreadable_binary_becomes_basename_offset(build, tmp_path) -> None:
    exe = tmp_path / "gone"
    shutil.copy(build("cpu_split"), exe)
    proc = _settled(subprocess.Popen([str(exe), "3"]))
    try:
        sym = _symbolizer(proc.pid)
        addr = _addr_of(proc.pid, str(exe), "spin", sym)
    finally:
        proc.kill()
        proc.wait()
    exe.unlink()
    exe.write_bytes(b"not an elf")  # replaced after exit: another inode, the image is gone
    counters: dict[str, int] = {}
    frame = sym.user_frames(proc.pid, [addr, 0x10], counters)
    assert frame[0].function.startswith("gone+0x") and frame[0].binary == str(exe)
    assert frame[1].function == "[unknown]"
    assert counters["unsymbolized_frames"] == 2
    # The second time both frames come from the frame cache (the process has no perf map that
    # could name 0x10 later) and still count as unsymbolized.
    hits = sym.frame_cache_hits
    again = sym.user_frames(proc.pid, [addr, 0x10], counters)
    assert again == frame and sym.frame_cache_hits == hits + 2
    assert counters["unsymbolized_frames"] == 4 and counters["unsymbolized_unreadable_binary"] == 2


def test_separate_debug_file_via_gnu_debuglink(build, tmp_path) -> None:
    """A stripped binary whose symbols live in a `.gnu_debuglink`ed file beside it (as gdb finds it)."""
    require(shutil.which("objcopy") is not None, "objcopy (binutils) to split debug info")
    full = load_elf(str(build("cpu_split")))
    exe = tmp_path / "stripped"
    shutil.copy(build("cpu_split"), exe)
    debug = tmp_path / "stripped.debug"
    for args in (["--only-keep-debug", str(exe), str(debug)], ["--strip-all", str(exe)],
                 [f"--add-gnu-debuglink={debug}", str(exe)]):
        subprocess.run(["objcopy", *args], check=True, cwd=tmp_path)
    names = ("main", "path_a", "path_b", "path_c", "spin")
    addrs = {n: full.address_of(n) + 1 for n in names}
    linked = load_elf(str(exe))
    assert linked.debuglink == "stripped.debug" and linked.has_symtab
    assert {n: linked.resolve(a) for n, a in addrs.items()} == {n: n for n in names}
    debug.rename(tmp_path / "elsewhere.debug")  # without the debug file the names are gone
    bare = load_elf(str(exe))
    assert not bare.has_symtab and all(bare.resolve(a) != n for n, a in addrs.items())


def test_perf_map_of_a_process_in_its_own_pid_and_mount_namespace() -> None:
    """In a container the JIT writes /tmp/perf-<namespace pid>.map into the container's /tmp:
    found through /proc/<host pid>/root, named by the NSpid, not the host pid."""
    require(os.geteuid() == 0 and shutil.which("unshare") is not None, "root and unshare for namespaces")
    script = ("mount -t tmpfs tmpfs /tmp && printf '10000 100 jit_fn_in_container\\n' > /tmp/perf-$$.map "
              "&& echo $$ && exec sleep 60")
    outer = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--mount",
                              "sh", "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert outer.stdout is not None
        assert outer.stdout.readline().strip() == "1"  # the namespace pid the map file is named after
        host_pid = int(Path(f"/proc/{outer.pid}/task/{outer.pid}/children").read_text().split()[0])
        assert not Path("/tmp/perf-1.map").exists() and not Path(f"/tmp/perf-{host_pid}.map").exists()
        sym = _symbolizer(host_pid)
        assert sym.tracker.get(host_pid).nspid == 1
        counters: dict[str, int] = {}
        frame = sym.user_frames(host_pid, [0x10050], counters)[0]
    finally:
        outer.kill()  # --kill-child: the namespace's init (our sleep) dies with it
        outer.wait()
    assert frame.function == "jit_fn_in_container" and frame.kind is FrameKind.JIT
    assert counters == {}


def test_fast_elf_headers_agree_with_pyelftools_and_bad_files_are_errors(build, tmp_path) -> None:
    from elftools.elf.elffile import ELFFile

    from collector.symbolize.elf import ElfReadError

    exe = str(build("cpu_split"))
    ours = load_elf(exe)
    with open(exe, "rb") as fh:
        elf = ELFFile(fh)
        segments = [(s["p_offset"], s["p_vaddr"], s["p_filesz"]) for s in elf.iter_segments()
                    if s["p_type"] == "PT_LOAD"]
        build_id = next(n["n_desc"] for s in elf.iter_sections() if s["sh_type"] == "SHT_NOTE"
                        for n in s.iter_notes() if n["n_type"] == "NT_GNU_BUILD_ID")
    assert ours.segments == segments and ours.build_id == build_id and ours.has_symtab
    for name, body in (("text", b"hello"), ("truncated", Path(exe).read_bytes()[:200]), ("empty", b"")):
        bad = tmp_path / name
        bad.write_bytes(body)
        with pytest.raises(ElfReadError):
            load_elf(str(bad))


def test_unknown_frames_are_cached_until_a_perf_map_appears(tmp_path) -> None:
    proc = _settled(subprocess.Popen(["sleep", "30"]))
    perf_map = Path(f"/tmp/perf-{proc.pid}.map")
    try:
        sym = _symbolizer(proc.pid)
        counters: dict[str, int] = {}
        assert sym.user_frames(proc.pid, [0x10050], counters)[0].function == "[unknown]"
        hits = sym.frame_cache_hits
        sym.end_drain()
        assert sym.user_frames(proc.pid, [0x10050], counters)[0].function == "[unknown]"
        assert sym.frame_cache_hits == hits + 1 and counters["unsymbolized_no_mapping"] == 2
        perf_map.write_text("10000 100 jitted_later\n")  # a JIT starts writing its map
        sym.end_drain()
        frame = sym.user_frames(proc.pid, [0x10050], counters)[0]
    finally:
        proc.kill()
        proc.wait()
        perf_map.unlink(missing_ok=True)
    assert frame.function == "jitted_later" and frame.kind is FrameKind.JIT
    assert counters["unsymbolized_frames"] == 2


def test_poll_lists_proc_only_when_a_task_was_created(tmp_path) -> None:
    from collector.processes import FULL_SCAN_S

    proc = tmp_path / "proc"

    def spawn(pid: int) -> None:
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "maps").write_text("555555554000-555555556000 r-xp 00001000 08:01 99 /opt/app\n")
        (proc / str(pid) / "comm").write_text(f"p{pid}\n")

    now = [0.0]
    tracker = ProcessTracker(proc=proc, clock=lambda: now[0])
    spawn(100)
    (proc / "loadavg").write_text("0.00 0.01 0.05 1/90 100\n")
    tracker.poll()
    assert tracker.get(100) is not None and len(tracker) == 1
    spawn(101)  # the kernel's last pid did not move (not a real kernel: proves the poll skipped)
    now[0] = 0.5
    tracker.poll()
    assert len(tracker) == 1
    (proc / "loadavg").write_text("0.00 0.01 0.05 1/91 101\n")
    now[0] = 1.0
    tracker.poll()
    assert len(tracker) == 2
    for f in (proc / "100").iterdir():  # an exit creates no task: seen at the next full listing
        f.unlink()
    (proc / "100").rmdir()
    now[0] = 1.5
    tracker.poll()
    assert tracker.get(100).alive
    now[0] = 1.0 + FULL_SCAN_S
    tracker.poll()
    assert not tracker.get(100).alive and tracker.get(101).alive
