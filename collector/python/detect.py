"""Find a CPython interpreter in a process, and read its version and layout from the binary.

A process runs CPython when one of its executable mappings is a `libpython3.X.so` (pyenv, most
builds, embedders such as uWSGI) or an executable that exports `_PyRuntime` (Debian's
`/usr/bin/python3.11`, a static build). The version comes from the interpreter's own `Py_Version`
(PY_VERSION_HEX, exported since 3.11), never from the file name. Files are opened through
`/proc/PID/map_files/`, which reaches a process in another mount namespace (a container) and a
binary deleted since it was mapped; what was read from an ELF file is cached by its identity, so
twenty processes of one Python parse it once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache

from collector.python.layout import Layout, layout_for, with_code_members
from collector.python.procmem import Memory, MemoryReadError, i32_at, read_u64, u64_at
from collector.symbolize.elf import ElfReadError, named_symbols
from collector.symbolize.procmaps import Mapping

_LIBPYTHON = re.compile(r"/libpython3\.\d+[a-z]*\.so")
_WANTED = frozenset({"_PyRuntime", "Py_Version", "PyCode_Type", "_PyEval_EvalFrameDefault"})
MAX_MEMBERS = 64

# Counted reasons a process is not walked (stable names: they become counters).
NO_RUNTIME = "python_no_runtime_symbol"
NO_VERSION = "python_no_version_symbol"  # < 3.11, or a stripped .dynsym
UNKNOWN_VERSION = "python_unknown_version"
UNREADABLE = "python_unreadable"


@dataclass(frozen=True, slots=True)
class Interpreter:
    """A CPython runtime found in one process, with everything a frame walk needs."""

    pid: int
    path: str
    version: tuple[int, int, int]
    runtime: int             # address of _PyRuntime in the process
    eval_start: int          # [start, end) of _PyEval_EvalFrameDefault in the process
    eval_end: int
    layout: Layout
    members_from_binary: bool  # code-object offsets were read from PyCode_Type.tp_members


@dataclass(frozen=True, slots=True)
class NotWalkable:
    """Why a process that maps a CPython runtime cannot be walked; `reason` is a counter name."""

    pid: int
    path: str
    reason: str
    detail: str = ""


def candidate_mappings(maps: list[Mapping], exe: str) -> list[Mapping]:
    """The executable mappings that may hold an interpreter: libpython first, then the program."""
    libs = [m for m in maps if _LIBPYTHON.search(m.clean_path)]
    main = [m for m in maps if m.clean_path == exe and m not in libs]
    return libs + main


@lru_cache(maxsize=256)
def _file_symbols(ident: tuple[int, int, int, int], path: str):
    """(symbols, segments) of one file version; `ident` (dev, inode, size, mtime) keys the cache."""
    return named_symbols(path, set(_WANTED))


def _bias(segments: list[tuple[int, int, int]], mapping: Mapping) -> int | None:
    """Runtime address minus ELF vaddr for the file mapped at `mapping`."""
    for off, vaddr, size in segments:
        if off <= mapping.offset < off + max(size, 1):
            return mapping.start - (mapping.offset - off + vaddr)
    return None


def _cstring(mem: Memory, addr: int, limit: int = 64) -> bytes:
    for size in (limit, 16):  # a name near the end of a mapping: try a shorter read
        try:
            raw = mem.read(addr, size)
        except MemoryReadError:
            continue
        return raw.split(b"\0", 1)[0]
    raise MemoryReadError(f"string at {addr:#x}")


def code_members(mem: Memory, pycode_type: int, layout: Layout) -> dict[str, int]:
    """{member name: offset} from `PyCode_Type.tp_members` in the process's memory."""
    members = read_u64(mem, pycode_type + layout.type_members)
    out: dict[str, int] = {}
    if not members:
        return out
    raw = mem.read(members, layout.member_size * MAX_MEMBERS)
    for i in range(MAX_MEMBERS):
        entry = raw[i * layout.member_size:(i + 1) * layout.member_size]
        name_ptr = u64_at(entry, 0)
        if not name_ptr:
            break
        out[_cstring(mem, name_ptr).decode("ascii", "replace")] = u64_at(entry, layout.member_offset)
    return out


def parse_version(hexversion: int) -> tuple[int, int, int]:
    return hexversion >> 24 & 0xFF, hexversion >> 16 & 0xFF, hexversion >> 8 & 0xFF


def find_interpreter(pid: int, maps: list[Mapping], mem: Memory, exe: str | None = None,
                     proc: str = "/proc") -> Interpreter | NotWalkable | None:
    """The CPython interpreter of process `pid`, why it cannot be walked, or None (not Python).

    `exe`: the program's path as its mappings name it (default: /proc/PID/exe)."""
    if exe is None:
        try:
            exe = os.readlink(f"{proc}/{pid}/exe").removesuffix(" (deleted)")
        except OSError:
            exe = ""
    for m in candidate_mappings(maps, exe):
        opened = f"{proc}/{pid}/map_files/{m.start:x}-{m.end:x}"
        try:
            st = os.stat(opened)
            symbols, segments = _file_symbols((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), opened)
        except (OSError, ElfReadError) as exc:
            if _LIBPYTHON.search(m.clean_path):
                return NotWalkable(pid, m.clean_path, UNREADABLE, str(exc))
            continue
        if "_PyRuntime" not in symbols:
            if _LIBPYTHON.search(m.clean_path):
                return NotWalkable(pid, m.clean_path, NO_RUNTIME)
            continue
        bias = _bias(segments, m)
        if bias is None:
            return NotWalkable(pid, m.clean_path, UNREADABLE, "mapping outside the file's segments")
        if "Py_Version" not in symbols:
            return NotWalkable(pid, m.clean_path, NO_VERSION)
        try:
            version = parse_version(i32_at(mem.read(symbols["Py_Version"][0] + bias, 4), 0) & 0xFFFFFFFF)
        except MemoryReadError as exc:
            return NotWalkable(pid, m.clean_path, UNREADABLE, str(exc))
        layout = layout_for(version[:2])
        if layout is None:
            return NotWalkable(pid, m.clean_path, UNKNOWN_VERSION, ".".join(map(str, version)))
        from_binary = False
        if "PyCode_Type" in symbols:
            try:
                members = code_members(mem, symbols["PyCode_Type"][0] + bias, layout)
            except MemoryReadError:
                members = {}
            layout = with_code_members(layout, members)
            from_binary = bool(members)
        eval_start, eval_size = symbols.get("_PyEval_EvalFrameDefault", (0, 0))
        return Interpreter(pid=pid, path=m.clean_path, version=version, runtime=symbols["_PyRuntime"][0] + bias,
                           eval_start=eval_start + bias if eval_start else 0,
                           eval_end=eval_start + eval_size + bias if eval_start else 0,
                           layout=layout, members_from_binary=from_binary)
    return None
