"""JIT and interpreter perf maps (`/tmp/perf-PID.map`: `START SIZE name` in hex per line).

Written by Python 3.12 `-X perf`, Node `--perf-basic-prof`, the JVM's perf-map-agent and others.
Inside a container the file is named after the namespace pid and lives in the container's /tmp.
"""

from __future__ import annotations

import bisect
from pathlib import Path


class PerfMap:
    """Parsed perf map; reloaded when the file grows (JITs append as they compile)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.names: list[str] = []
        self._size = -1
        self.bad_lines = 0

    def refresh(self) -> bool:
        """Reload if the file changed; False when it does not exist (any more)."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return bool(self.starts)
        if size == self._size:
            return True
        entries: list[tuple[int, int, str]] = []
        bad = 0
        try:
            text = self.path.read_text(errors="replace")
        except OSError:
            return bool(self.starts)
        for line in text.splitlines():
            parts = line.split(" ", 2)
            if len(parts) != 3:
                bad += 1
                continue
            try:
                start, size_ = int(parts[0], 16), int(parts[1], 16)
            except ValueError:
                bad += 1
                continue
            entries.append((start, start + size_, parts[2].strip()))
        entries.sort()
        self.starts = [e[0] for e in entries]
        self.ends = [e[1] for e in entries]
        self.names = [e[2] for e in entries]
        self.bad_lines = bad
        self._size = size
        return True

    def resolve(self, addr: int) -> str | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0 or addr >= self.ends[i]:
            return None
        return self.names[i]
