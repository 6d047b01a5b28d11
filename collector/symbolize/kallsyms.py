"""Kernel symbols from /proc/kallsyms; copes with kptr_restrict (all addresses read as zero)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class KernelSymbols:
    """Sorted kernel text symbols; `resolve(addr)` gives the containing function name or None."""

    def __init__(self, path: str | Path = "/proc/kallsyms") -> None:
        self.path = Path(path)
        # ~120k symbols: a numpy array and one blob of NUL-terminated names (~5 MB, where lists of
        # Python ints and strs took ~15 MB in the long-running agent).
        self.addrs = np.zeros(0, dtype=np.uint64)
        self._offs = np.zeros(0, dtype=np.uint32)
        self._names = b""
        self._cache: dict[int, str | None] = {}
        self.restricted = False
        self.load()

    def load(self) -> None:
        pairs: list[tuple[int, str]] = []
        zeros = 0
        try:
            text = self.path.read_text(errors="replace")
        except OSError:
            text = ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 3 or parts[1] not in "tTwW":
                continue
            try:
                addr = int(parts[0], 16)
            except ValueError:
                continue
            if addr == 0:
                zeros += 1
                continue
            pairs.append((addr, parts[2]))
        pairs.sort()
        self.addrs = np.array([a for a, _ in pairs], dtype=np.uint64)
        blob = "\0".join(n for _, n in pairs).encode("utf-8", "replace") + b"\0"
        ends = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == 0)
        self._offs = np.concatenate(([0], ends[:-1] + 1)).astype(np.uint32)
        self._names = blob
        # kptr_restrict (or not root) zeroes every address: nothing can be resolved.
        self.restricted = not pairs and zeros > 0

    def resolve(self, addr: int) -> str | None:
        name = self._cache.get(addr, "")
        if name != "":
            return name
        if len(self._cache) >= 65536:
            self._cache.clear()  # kernel hot paths repeat every interval: refill fast
        name = self._cache[addr] = self._lookup(addr)
        return name

    def _lookup(self, addr: int) -> str | None:
        if not 0 <= addr < 1 << 64:
            return None
        i = int(np.searchsorted(self.addrs, np.uint64(addr), side="right")) - 1
        if i < 0:
            return None
        off = int(self._offs[i])
        return self._names[off:self._names.index(b"\0", off)].decode("utf-8", "replace")
