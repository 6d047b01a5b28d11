"""Reading another process's memory through /proc/PID/mem (root, or ptrace access).

Reads of a live, running process race with it: a pointer read a moment ago may be freed now. So
every read either returns exactly the bytes asked for or raises `MemoryReadError`, and callers
validate what they read (bounds, loops) instead of trusting it.
"""

from __future__ import annotations

import os
import struct
from typing import Protocol, Self


class MemoryReadError(Exception):
    """The address range is unmapped, the process is gone, or access was denied."""


class Memory(Protocol):
    """Something that reads bytes at addresses of one process (real or fake)."""

    def read(self, addr: int, size: int) -> bytes: ...


_U64 = struct.Struct("<Q")
_I32 = struct.Struct("<i")


def read_u64(mem: Memory, addr: int) -> int:
    return _U64.unpack(mem.read(addr, 8))[0]


def read_i32(mem: Memory, addr: int) -> int:
    return _I32.unpack(mem.read(addr, 4))[0]


def u64_at(blob: bytes, off: int) -> int:
    return _U64.unpack_from(blob, off)[0]


def i32_at(blob: bytes, off: int) -> int:
    return _I32.unpack_from(blob, off)[0]


class ProcessMemory:
    """/proc/PID/mem of one process, kept open (one pread per read)."""

    def __init__(self, pid: int, proc: str = "/proc") -> None:
        self.pid = pid
        try:
            self._fd: int | None = os.open(f"{proc}/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise MemoryReadError(f"pid {pid}: {exc.strerror}") from exc
        self.reads = 0

    def read(self, addr: int, size: int) -> bytes:
        if self._fd is None:
            raise MemoryReadError(f"pid {self.pid}: closed")
        if addr <= 0 or size < 0 or addr + size >= 1 << 63:
            raise MemoryReadError(f"pid {self.pid}: bad address {addr:#x}+{size}")
        self.reads += 1
        try:
            data = os.pread(self._fd, size, addr)
        except OSError as exc:
            raise MemoryReadError(f"pid {self.pid}: {addr:#x}+{size}: {exc.strerror}") from exc
        if len(data) != size:
            raise MemoryReadError(f"pid {self.pid}: {addr:#x}+{size}: short read ({len(data)})")
        return data

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeMemory:
    """Sparse memory for unit tests: {address: bytes} regions; reads outside them fail."""

    def __init__(self, regions: dict[int, bytes] | None = None) -> None:
        self.regions: dict[int, bytes] = dict(regions or {})

    def write(self, addr: int, data: bytes) -> None:
        self.regions[addr] = data

    def read(self, addr: int, size: int) -> bytes:
        for start, data in self.regions.items():
            if start <= addr and addr + size <= start + len(data):
                return data[addr - start:addr - start + size]
        raise MemoryReadError(f"fake: {addr:#x}+{size} unmapped")
