"""Issue 15 point 12: a crafted ELF is confined to its own frames (`binary+0xoffset`, counted); it
never raises out of symbolizing, the process poll, or an interval."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from collector.symbolize.elf import ElfReadError, load_elf
from tests.collector.test_symbolize import _addr_of, _settled, _symbolizer


def craft(src: Path, dst: Path, section: str, size: int) -> None:
    """Copy `src` to `dst` with `section`'s header claiming `size` bytes (the kernel ignores
    section headers, so the copy still runs)."""
    shutil.copy(src, dst)
    with open(src, "rb") as fh:
        elf = ELFFile(fh)
        index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == section)
        at = elf["e_shoff"] + index * elf["e_shentsize"] + 32  # sh_size in an Elf64_Shdr
    with open(dst, "r+b") as fh:
        fh.seek(at)
        fh.write(struct.pack("<Q", size))


@pytest.mark.parametrize("section,size", [(".symtab", 1 << 44), (".strtab", 1 << 44),
                                          (".shstrtab", (1 << 64) - 1)])
def test_lying_section_size_is_an_elf_error_not_memory_error(build, tmp_path, section, size) -> None:
    bad = tmp_path / "crafted"
    craft(build("cpu_split"), bad, section, size)
    t0 = time.monotonic()
    with pytest.raises(ElfReadError, match="past the end"):
        load_elf(str(bad))
    assert time.monotonic() - t0 < 1.0


def test_huge_section_count_and_header_offsets_are_errors(build, tmp_path) -> None:
    src = build("cpu_split")
    for name, at, value in (("shoff", 40, (1 << 63)), ("phoff", 32, (1 << 62)), ("shnum0", 60, 0)):
        bad = tmp_path / name
        shutil.copy(src, bad)
        with open(bad, "r+b") as fh:
            fh.seek(at)
            fh.write(struct.pack("<Q" if at < 48 else "<H", value))
            if name == "shnum0":  # extended numbering: section 0's sh_size holds the count
                shoff = struct.unpack_from("<Q", Path(src).read_bytes(), 40)[0]
                fh.seek(shoff + 32)
                fh.write(struct.pack("<Q", 1 << 60))
        with pytest.raises(ElfReadError):
            load_elf(str(bad))


@pytest.mark.timeout(10)
def test_fifo_in_place_of_a_binary_does_not_hang(tmp_path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ElfReadError, match="not a regular file"):
        load_elf(str(fifo))


@pytest.mark.parametrize("deleted", [False, True])
def test_crafted_running_binary_is_confined_and_counted(build, tmp_path, deleted) -> None:
    """The mapping of a running executable with a 2^44-byte .symtab: the poll (what `hotpath
    collector` and `record` run at startup) survives, its frames read `crafted+0x...`, the failure
    is counted, and a healthy binary in the same symbolizer still resolves."""
    src = build("cpu_split")
    exe = tmp_path / "crafted"
    craft(src, exe, ".symtab", 1 << 44)
    good = tmp_path / "healthy"
    shutil.copy(src, good)
    bad_proc = _settled(subprocess.Popen([str(exe), "5"]))
    good_proc = _settled(subprocess.Popen([str(good), "5"]))
    try:
        if deleted:
            exe.unlink()  # then only /proc/PID/map_files reaches it: read at capture time
        sym = _symbolizer(bad_proc.pid)
        sym.tracker.only.add(good_proc.pid)
        sym.tracker.poll()  # captures both and warms their images
        addr = _addr_of(bad_proc.pid, str(src), "spin", sym)
        good_addr = _addr_of(good_proc.pid, str(src), "spin", sym)
        counters: dict[str, int] = {}
        frame = sym.user_frames(bad_proc.pid, [addr], counters)[0]
        healthy = sym.user_frames(good_proc.pid, [good_addr], counters)[0]
    finally:
        for p in (bad_proc, good_proc):
            p.kill()
            p.wait()
    spin = load_elf(str(src)).address_of("spin")
    assert frame.function == f"crafted+0x{spin + 4:x}" and frame.binary == str(exe)
    assert healthy.function == "spin"
    assert counters["unsymbolized_unreadable_binary"] == 1
    assert sym.take_events() == {"unreadable_binaries": 1}
    assert sym.take_events() == {}  # each failure reported once
