"""The kernel's vDSO image (`[vdso]`), read from this process's memory: the same image for every
64-bit process on the host, with its own .eh_frame, so samples in clock_gettime unwind by table."""

from __future__ import annotations

import re
from pathlib import Path

_VDSO = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) r-xp \S+ \S+ \S+\s+\[vdso\]$", re.MULTILINE)
MAX_VDSO_BYTES = 1 << 20


def read_vdso(proc: Path = Path("/proc")) -> bytes | None:
    """This process's vDSO bytes, or None when there is none (or it cannot be read)."""
    try:
        m = _VDSO.search((proc / "self" / "maps").read_text())
        if m is None:
            return None
        lo, hi = int(m.group(1), 16), int(m.group(2), 16)
        if not 0 < hi - lo <= MAX_VDSO_BYTES:
            return None
        with open(proc / "self" / "mem", "rb", buffering=0) as fh:
            fh.seek(lo)
            data = fh.read(hi - lo)
    except (OSError, ValueError, OverflowError):
        return None
    return data if len(data) == hi - lo else None
