"""JIT and interpreter perf maps (`/tmp/perf-PID.map`: `START SIZE name` in hex per line).

Written by Python 3.12 `-X perf`, Node `--perf-basic-prof`, the JVM's perf-map-agent and others.
Inside a container the file is named after the namespace pid and lives in the container's /tmp.

Any local user can create that path for anyone's pid, so it is read as perf reads it: a regular
file owned by the process's user (or root), opened without following links and without blocking
(a FIFO hung `hotpath record`, a link to /dev/zero read gigabytes), up to a size cap, keeping only
printable names of bounded length. What is refused is counted (`refused_files`, `refused_lines`).
"""

from __future__ import annotations

import array
import errno
import os
import re
import stat
from collections.abc import Collection
from pathlib import Path

import numpy as np

# A map over this is refused whole (a 1M-line map cost 2 s and 277 MB when read unbounded).
MAX_PERF_MAP_BYTES = 32 * 1024 * 1024
# Longest name kept (in characters); longer lines are refused.
MAX_NAME_CHARS = 1024
_LINE = re.compile(rb"^(?:0x)?([0-9a-fA-F]{1,16}) (?:0x)?([0-9a-fA-F]{1,16}) ([^\n]*)$", re.MULTILINE)


class PerfMapRefused(Exception):
    """The file is not one a perf map may be read from (reason in the message)."""


def read_capped(path: str | Path, owners: Collection[int] | None, max_bytes: int) -> tuple[bytes, tuple]:
    """The bytes of a perf map and its identity (dev, ino, size, mtime), or PerfMapRefused.

    The checks are made on the open descriptor, so the file cannot be swapped between them."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise PerfMapRefused(f"{path}: a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PerfMapRefused(f"{path}: not a regular file")
        if owners is not None and st.st_uid not in owners:
            raise PerfMapRefused(f"{path}: owned by uid {st.st_uid}, not the process's user or root")
        if st.st_size > max_bytes:
            raise PerfMapRefused(f"{path}: {st.st_size} bytes, over the {max_bytes}-byte cap")
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:  # grew past the cap while being read
            raise PerfMapRefused(f"{path}: over the {max_bytes}-byte cap")
        return b"".join(chunks), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    finally:
        os.close(fd)


def parse(data: bytes, max_name: int = MAX_NAME_CHARS) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes, int]:
    """(starts, ends, name offsets, NUL-separated names, refused lines), sorted by start.

    Compact on purpose (numpy arrays and one blob): Python lists of ints and strs took ~280 bytes
    per line."""
    starts, ends, offs = array.array("Q"), array.array("Q"), array.array("Q")
    blob = bytearray()
    kept = 0
    for m in _LINE.finditer(data):
        try:
            name = m.group(3).decode("utf-8").strip()
        except UnicodeDecodeError:
            continue
        if not name or len(name) > max_name or not name.isprintable():
            continue
        start, size = int(m.group(1), 16), int(m.group(2), 16)
        if start + size >= 1 << 64:
            continue
        starts.append(start)
        ends.append(start + size)
        offs.append(len(blob))
        blob += name.encode() + b"\0"
        kept += 1
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    blank = len(re.findall(rb"^[ \t\r]*$\n", data, re.MULTILINE))
    order = np.argsort(np.frombuffer(starts, dtype=np.uint64), kind="stable")
    return (np.frombuffer(starts, dtype=np.uint64)[order], np.frombuffer(ends, dtype=np.uint64)[order],
            np.frombuffer(offs, dtype=np.uint64)[order], bytes(blob), max(0, lines - blank - kept))


class PerfMap:
    """Parsed perf map; reloaded when the file changes (JITs append as they compile).

    `owners` are the uids a map may belong to (None: any, for tests and tools)."""

    def __init__(self, path: str | Path, owners: Collection[int] | None = None,
                 max_bytes: int = MAX_PERF_MAP_BYTES) -> None:
        self.path = Path(path)
        self.owners = owners
        self.max_bytes = max_bytes
        self.starts = np.zeros(0, dtype=np.uint64)
        self.ends = np.zeros(0, dtype=np.uint64)
        self._offs = np.zeros(0, dtype=np.uint64)
        self._names = b""
        self._ident: tuple = ()
        self._refused_ident: tuple = ()
        self.bad_lines = 0
        self.refused_files = 0  # distinct files refused (each counted once)
        self.refusal = ""  # why the last refused file was refused
        self._counts: dict[str, int] = {}

    def refresh(self) -> bool:
        """Reload if the file changed; False when there is no usable map."""
        try:
            lst = os.lstat(self.path)
        except OSError:
            return len(self.starts) > 0
        quick = (lst.st_dev, lst.st_ino, lst.st_size, lst.st_mtime_ns)
        if quick == self._ident:
            return True
        if quick == self._refused_ident:
            return len(self.starts) > 0
        try:
            data, ident = read_capped(self.path, self.owners, self.max_bytes)
        except PerfMapRefused as exc:
            self._refused_ident = quick
            self.refused_files += 1
            self.refusal = str(exc)
            self._counts["perf_maps_refused"] = self._counts.get("perf_maps_refused", 0) + 1
            return len(self.starts) > 0
        except OSError:
            return len(self.starts) > 0
        self.starts, self.ends, self._offs, self._names, self.bad_lines = parse(data)
        self._ident = ident
        if self.bad_lines:
            self._counts["perf_map_lines_refused"] = self._counts.get("perf_map_lines_refused", 0) + self.bad_lines
        return True

    def take_counts(self) -> dict[str, int]:
        """Refused files and lines since the last call (each file or load counted once)."""
        counts, self._counts = self._counts, {}
        return counts

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def names(self) -> list[str]:
        return [self._name(i) for i in range(len(self.starts))]

    def _name(self, i: int) -> str:
        off = int(self._offs[i])
        return self._names[off:self._names.index(b"\0", off)].decode()

    def resolve(self, addr: int) -> str | None:
        if not 0 <= addr < 1 << 64:
            return None
        i = int(np.searchsorted(self.starts, np.uint64(addr), side="right")) - 1
        if i < 0 or addr >= int(self.ends[i]):
            return None
        return self._name(i)
