"""Kernel symbols from /proc/kallsyms; copes with kptr_restrict (all addresses read as zero)."""

from __future__ import annotations

import bisect
from pathlib import Path


class KernelSymbols:
    """Sorted kernel text symbols; `resolve(addr)` gives the containing function name or None."""

    def __init__(self, path: str | Path = "/proc/kallsyms") -> None:
        self.path = Path(path)
        self.addrs: list[int] = []
        self.names: list[str] = []
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
        self.addrs = [a for a, _ in pairs]
        self.names = [n for _, n in pairs]
        # kptr_restrict (or not root) zeroes every address: nothing can be resolved.
        self.restricted = not pairs and zeros > 0

    def resolve(self, addr: int) -> str | None:
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0:
            return None
        return self.names[i]
