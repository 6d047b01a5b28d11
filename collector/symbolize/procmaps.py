"""Process memory maps and identity (`/proc/PID/{maps,status,comm,cgroup}`), captured while alive.

A capture is a plain snapshot, so a process that exits before the interval's drain can still be
symbolized from it.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
_CONTAINER_ID = re.compile(r"([0-9a-f]{64})")
_POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")


@dataclass(frozen=True, slots=True)
class Mapping:
    """One line of /proc/PID/maps that maps a file or a special region."""

    start: int
    end: int
    offset: int
    perms: str
    inode: int
    path: str

    @property
    def deleted(self) -> bool:
        return self.path.endswith(" (deleted)")

    @property
    def clean_path(self) -> str:
        return self.path[: -len(" (deleted)")] if self.deleted else self.path


# Executable lines only: a C-level scan of the whole text, where splitting every line in Python
# was most of the cost of capturing a process (a Python process has ~400 lines, ~60 executable).
_EXEC_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (..x.) ([0-9a-f]+) \S+ (\d+)[ \t]*([^\n]*)$", re.MULTILINE)

_NSPID = re.compile(r"^NSpid:[ \t]*([^\n]*)$", re.MULTILINE)
_UID = re.compile(r"^Uid:[ \t]*(\d+)[ \t]+(\d+)", re.MULTILINE)


def parse_maps(text: str) -> list[Mapping]:
    """Executable mappings from /proc/PID/maps text, sorted by start; bad lines skipped."""
    out = [Mapping(int(lo, 16), int(hi, 16), int(off, 16), perms, int(inode), path)
           for lo, hi, perms, off, inode, path in _EXEC_LINE.findall(text)]
    out.sort(key=lambda m: m.start)
    return out


def parse_cgroup(text: str) -> tuple[str, str, str]:
    """(cgroup path, container id, Kubernetes pod UID) from /proc/PID/cgroup text."""
    path = ""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and (parts[0] == "0" or not path):
            path = parts[2]
    cid = _CONTAINER_ID.findall(path)
    pod = _POD_UID.search(path)
    return path, (cid[-1] if cid else ""), (pod.group(1).replace("_", "-") if pod else "")


@dataclass(slots=True)
class ProcessInfo:
    """What we know about one process (tgid): executable mappings, names, namespaces."""

    pid: int
    comm: str = ""
    maps: list[Mapping] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    nspid: int = 0
    cgroup: str = ""
    container_id: str = ""
    pod_uid: str = ""
    kernel_thread: bool = False
    alive: bool = True
    uids: tuple[int, ...] = ()  # real and effective uid: whose files (perf maps) it may write

    def find(self, addr: int) -> Mapping | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0:
            return None
        m = self.maps[i]
        return m if addr < m.end else None


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return None


def capture(pid: int, proc: Path = PROC) -> ProcessInfo | None:
    """Snapshot a live process; None when it is gone (exited mid-read counts as gone)."""
    base = f"{proc}/{pid}"
    maps_text = _read(f"{base}/maps")
    if maps_text is None:
        return None
    info = ProcessInfo(pid=pid)
    info.maps = parse_maps(maps_text)
    info.starts = [m.start for m in info.maps]
    info.kernel_thread = maps_text == ""
    info.comm = (_read(f"{base}/comm") or "").strip()
    status = _read(f"{base}/status") or ""
    nspid = _NSPID.search(status)
    if nspid is not None:
        ids = nspid.group(1).split()
        info.nspid = int(ids[-1]) if ids else pid
    uid = _UID.search(status)
    if uid is not None:
        info.uids = tuple(sorted({int(uid.group(1)), int(uid.group(2))}))
    info.cgroup, info.container_id, info.pod_uid = parse_cgroup(_read(f"{base}/cgroup") or "")
    return info


def recapture_maps(info: ProcessInfo, proc: Path = PROC) -> ProcessInfo | None:
    """A new snapshot of a known process's mappings and comm (what exec and dlopen change); the
    namespace pid and cgroup are kept from `info`. None when the process is gone."""
    base = f"{proc}/{info.pid}"
    maps_text = _read(f"{base}/maps")
    if maps_text is None:
        return None
    fresh = ProcessInfo(pid=info.pid, nspid=info.nspid, cgroup=info.cgroup, container_id=info.container_id,
                        pod_uid=info.pod_uid, uids=info.uids)
    fresh.maps = parse_maps(maps_text)
    fresh.starts = [m.start for m in fresh.maps]
    fresh.kernel_thread = maps_text == ""
    fresh.comm = (_read(f"{base}/comm") or "").strip()
    return fresh
