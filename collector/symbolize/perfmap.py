"""JIT and interpreter perf maps (`/tmp/perf-PID.map`: `START SIZE name` in hex per line).

Written by Python 3.12 `-X perf`, Node `--perf-basic-prof`, the JVM's perf-map-agent and others.
Inside a container the file is named after the namespace pid and lives in the container's /tmp.

Any local user can create that path for anyone's pid, so it is read as perf reads it: a regular
file owned by the process's user (or root), opened without following links and without blocking
(a FIFO hung `hotpath record`, a link to /dev/zero read gigabytes), up to a size cap, keeping only
printable names of bounded length. What is refused is counted (`refused_files`, `refused_lines`).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection
from pathlib import Path

import numpy as np

# A map over this is refused whole (a 1M-line map cost 2 s and 277 MB when read unbounded).
MAX_PERF_MAP_BYTES = 32 * 1024 * 1024
# Longest name kept (in characters); longer lines are refused.
MAX_NAME_CHARS = 1024  # 4x this in UTF-8 bytes must fit a uint16


class PerfMapRefused(Exception):
    """The file is not one a perf map may be read from (reason in the message)."""


def read_capped(path: str | Path, owners: Collection[int] | None,
                max_bytes: int) -> tuple[bytes | bytearray, tuple]:
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
        # Into one buffer of the size fstat gave: what is appended meanwhile waits for the next
        # refresh (the identity below has the old size, so the file reads as changed then).
        buf = bytearray(st.st_size)
        view, got = memoryview(buf), 0
        while got < st.st_size:
            n = os.readv(fd, [view[got:]])
            if n == 0:
                break
            got += n
        return bytes(buf[:got]) if got < st.st_size else buf, (st.st_dev, st.st_ino, got, st.st_mtime_ns)
    finally:
        os.close(fd)


_HEX = np.full(256, -1, dtype=np.int16)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
    _HEX[bytes([_c]).upper()[0]] = _i


# Byte classes by table lookup: one temporary the size of the file, not one per comparison.
_CONTROL = np.zeros(256, dtype=bool)
_CONTROL[:32] = _CONTROL[127] = True
_HIGH = np.zeros(256, dtype=bool)
_HIGH[128:] = True


def _hex_fields(arr: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of the hex numbers at arr[lo:hi] per line (an optional 0x prefix), and which are valid."""
    last = len(arr) - 1
    prefixed = (hi - lo > 2) & (arr[np.minimum(lo, last)] == ord("0")) & \
        ((arr[np.minimum(lo + 1, last)] | 0x20) == ord("x"))
    lo = lo + 2 * prefixed
    ok = (hi > lo) & (hi - lo <= 16)
    value = np.zeros(len(lo), dtype=np.uint64)
    for k in range(16):  # digit k from the right, for the lines that have one
        pos = hi - 1 - k
        has = ok & (pos >= lo)
        if not has.any():
            break
        digit = _HEX[arr[np.where(has, pos, 0)]]
        ok &= ~has | (digit >= 0)
        value |= np.where(has, digit, 0).astype(np.uint64) << np.uint64(4 * k)
    return value, ok


def _any_within(positions: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per range [lo, hi): whether any of the (sorted) positions falls inside."""
    return np.searchsorted(positions, hi) > np.searchsorted(positions, lo)


def parse(data: bytes | bytearray, max_name: int = MAX_NAME_CHARS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                 bytes, int]:
    """(starts, ends, name offsets, name lengths, names blob, refused lines), sorted by start.

    Vectorized over the whole file (numpy): the line-by-line reader took 2 s and 277 MB for a
    1M-line map. A line is kept when it reads `START SIZE NAME` (hex, one space each) and NAME is
    printable (no control bytes; valid UTF-8) and at most `max_name` characters long."""
    empty = np.zeros(0, dtype=np.uint64)
    if not data:
        return empty, empty, empty.astype(np.uint32), empty.astype(np.uint16), b"", 0
    arr = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    line_lo = np.concatenate(([0], nl + 1))
    line_hi = np.concatenate((nl, [len(arr)]))
    line_hi -= (line_hi > line_lo) & (arr[np.maximum(line_hi - 1, 0)] == 13)  # CRLF
    nonblank = line_hi > line_lo
    line_lo, line_hi = line_lo[nonblank], line_hi[nonblank]
    spaces = np.concatenate((np.flatnonzero(arr == 32), [len(arr) + 1, len(arr) + 1]))
    at = np.searchsorted(spaces, line_lo)
    sp1, sp2 = spaces[at], spaces[at + 1]
    keep = sp2 < line_hi
    sp1, sp2 = np.minimum(sp1, line_hi), np.minimum(sp2, line_hi)
    start, ok1 = _hex_fields(arr, line_lo, sp1)
    size, ok2 = _hex_fields(arr, sp1 + 1, sp2)
    end = start + size
    keep &= ok1 & ok2 & (end >= start)  # no wrap past 2^64
    name_lo, name_hi = sp2 + 1, line_hi
    keep &= (name_hi > name_lo) & ~_any_within(np.flatnonzero(_CONTROL[arr]), name_lo, name_hi)
    non_ascii = _any_within(np.flatnonzero(_HIGH[arr]), name_lo, name_hi)
    keep &= name_hi - name_lo <= np.where(non_ascii, 4 * max_name, max_name)
    for i in np.flatnonzero(keep & non_ascii).tolist():  # rare: UTF-8 names checked one by one
        try:
            name = data[name_lo[i]:name_hi[i]].decode("utf-8")
        except UnicodeDecodeError:
            keep[i] = False
            continue
        keep[i] = len(name) <= max_name and name.isprintable()
    refused = int(len(keep) - np.count_nonzero(keep))
    name_lo, name_hi = name_lo[keep], name_hi[keep]
    lengths = (name_hi - name_lo).astype(np.uint64)
    del nl, nonblank, spaces, at, sp1, sp2, size, ok1, ok2, non_ascii, line_lo, line_hi  # peak memory
    # The kept names back to back in one blob: +1 where a name starts, -1 where it ends,
    # cumulated (int8 keeps numpy on its fast path), is the mask of their bytes.
    edges = np.zeros(len(arr) + 1, dtype=np.int8)
    edges[name_lo] = 1
    edges[name_hi] = -1
    mask = np.cumsum(edges[:-1], dtype=np.int8).view(bool)
    del edges  # each of these is the size of the file: hold at most two at once
    chosen = arr[mask]
    del mask
    blob = chosen.tobytes()
    del chosen
    offs = np.zeros(len(lengths), dtype=np.uint64)
    np.cumsum(lengths[:-1], out=offs[1:])
    order = np.argsort(start[keep], kind="stable")
    # 22 bytes an entry: names are at most 4 * MAX_NAME_CHARS bytes, the blob under the size cap.
    offs = offs.astype(np.uint32) if len(blob) < 1 << 32 else offs
    return start[keep][order], end[keep][order], offs[order], lengths[order].astype(np.uint16), blob, refused


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
        self._lens = np.zeros(0, dtype=np.uint64)
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
        self.starts, self.ends, self._offs, self._lens, self._names, self.bad_lines = parse(data)
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
        return self._names[off:off + int(self._lens[i])].decode()

    def resolve(self, addr: int) -> str | None:
        if not 0 <= addr < 1 << 64:
            return None
        i = int(np.searchsorted(self.starts, np.uint64(addr), side="right")) - 1
        if i < 0 or addr >= int(self.ends[i]):
            return None
        return self._name(i)
