"""Code objects -> names, files and lines, read from the process and cached.

A code object lives as long as its function (module-level functions: the process's lifetime), so
each is read once per process: `(pid, address)` keys the cache, and the 8-byte stamp the walk
recorded (folded from co_firstlineno, co_nlocalsplus) tells a new code object at a reused address apart; a
mismatch re-reads. Names must be resolved while the process lives: callers do it right after each
drain, and a process's entries survive its exit until the caller forgets it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from collector.python.frames import fold_stamp
from collector.python.layout import Layout
from collector.python.linetable import decode, line_at
from collector.python.procmem import Memory, MemoryReadError, i32_at, u64_at

MAX_STRING = 1024
MAX_LINETABLE = 1 << 20


class CodeReadError(Exception):
    """The code object (or a string it names) could not be read or is not plausible."""


@dataclass(slots=True)
class CodeInfo:
    qualname: str
    filename: str
    firstlineno: int
    linetable: bytes
    units: int   # code units of bytecode (to reject impossible instruction indexes)
    stamp: int
    _decoded: tuple[list[int], list[int]] | None = None  # linetable.decode, on first use

    def line(self, lasti: int) -> int:
        if lasti >= self.units:
            return 0
        if self._decoded is None:
            self._decoded = decode(self.linetable, self.firstlineno)
        return line_at(*self._decoded, self.firstlineno, lasti)


def read_unicode(mem: Memory, addr: int, layout: Layout) -> str:
    """A compact str object's text (code objects' names and file names are always compact)."""
    try:
        head = mem.read(addr, layout.unicode_compact_data)
    except MemoryReadError:  # a short ASCII string at the very end of a mapping
        head = mem.read(addr, layout.unicode_ascii_data)
    length = u64_at(head, layout.unicode_length)
    state = i32_at(head, layout.unicode_state)
    kind, compact, ascii_ = state >> 2 & 7, state >> 5 & 1, state >> 6 & 1
    if not compact or kind not in (1, 2, 4) or length > MAX_STRING:
        raise CodeReadError(f"str at {addr:#x}: not a compact string (state {state:#x}, length {length})")
    if ascii_:
        return mem.read(addr + layout.unicode_ascii_data, length).decode("ascii", "replace")
    raw = mem.read(addr + layout.unicode_compact_data, length * kind)
    return raw.decode({1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind], "replace")


def read_bytes(mem: Memory, addr: int, layout: Layout, limit: int) -> bytes:
    size = u64_at(mem.read(addr + layout.bytes_size, 8), 0)
    if size > limit:
        raise CodeReadError(f"bytes at {addr:#x}: size {size} over {limit}")
    return mem.read(addr + layout.bytes_data, size) if size else b""


def read_code(mem: Memory, addr: int, layout: Layout) -> CodeInfo:
    """Everything needed to name frames of the code object at `addr`."""
    try:
        head = mem.read(addr, layout.code_bytecode)
        ptrs = [u64_at(head, off) for off in (layout.code_qualname, layout.code_filename, layout.code_linetable)]
        if not all(ptrs):
            raise CodeReadError(f"code at {addr:#x}: null name, file or line table")
        return CodeInfo(qualname=read_unicode(mem, ptrs[0], layout), filename=read_unicode(mem, ptrs[1], layout),
                        firstlineno=i32_at(head, layout.code_firstlineno),
                        linetable=read_bytes(mem, ptrs[2], layout, MAX_LINETABLE), units=u64_at(head, layout.code_size),
                        stamp=fold_stamp(u64_at(head, layout.code_firstlineno)))
    except MemoryReadError as exc:
        raise CodeReadError(str(exc)) from exc


class CodeCache:
    """(pid, code address) -> CodeInfo, validated by stamp; bounded, least recently used out."""

    def __init__(self, capacity: int = 65536) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, int], CodeInfo] = OrderedDict()
        self.hits = self.misses = self.stale = 0

    def get(self, pid: int, addr: int, stamp: int, mem: Memory | None, layout: Layout) -> CodeInfo:
        """The code object's info; reads it when unknown or when the stamp says it changed.

        mem None (the process is gone): only a cached entry with the same stamp answers."""
        key = (pid, addr)
        info = self._entries.get(key)
        if info is not None and info.stamp == stamp:
            self.hits += 1
            self._entries.move_to_end(key)
            return info
        if info is not None:
            self.stale += 1
        if mem is None:
            raise CodeReadError(f"pid {pid}: gone, code at {addr:#x} never read")
        self.misses += 1
        info = read_code(mem, addr, layout)
        if info.stamp != stamp:
            raise CodeReadError(f"code at {addr:#x}: stamp {info.stamp:#x} is not the sampled {stamp:#x}")
        self._entries[key] = info
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return info

    def forget(self, pid: int) -> None:
        for key in [k for k in self._entries if k[0] == pid]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
