"""A sample's recorded Python stack -> named frames merged into its native user stack.

What the drain hands over per count: the Python walk's words and its end reason (hp_key.py_end).
Names come from the code-object cache, filled while the process lived: right after each drain,
and as soon as BPF announces a new Python stack (`warm`), so a process that exits before the
interval ends is still named. Every way a walk or a name can fail is counted under the sample's
weight, and leaves a placeholder frame rather than a silently shorter stack.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

from collector.python.bpf_record import END_NAMES, decode_words
from collector.python.merge import merge
from collector.python.names import Namer
from collector.python.tracker import PythonProcesses
from profiler.model import Frame, FrameKind

END_NONE, END_OK = 0, 1
PARTIAL_MERGE = "python_partial_merge"
NOT_TRACKED = "python_process_not_tracked"
PLACEHOLDERS = {
    "python_no_thread": "[python: thread not registered yet]",
    "python_read_fault": "[python: frame unreadable]",
    "python_truncated": "[python: deeper frames truncated]",
    "python_map_full": "[python: stack map full]",
}


def _add(counters: MutableMapping[str, int], name: str, n: int) -> None:
    counters[name] = counters.get(name, 0) + n


def placeholder(reason: str) -> Frame:
    return Frame(PLACEHOLDERS.get(reason, f"[{reason}]"), "", FrameKind.INTERPRETED)


class PythonStacks:
    """Names and merges Python stacks of the processes `procs` tracks."""

    def __init__(self, procs: PythonProcesses, namer: Namer | None = None) -> None:
        self.procs = procs
        self.namer = namer if namer is not None else Namer()
        self.warmed = 0

    def warm(self, pid: int, words: Sequence[int]) -> None:
        """Read the code objects of a newly seen stack now, while the process lives."""
        entry = self.procs.get(pid)
        if entry is None or not entry.alive:
            return
        self.namer.prefetch(pid, decode_words(words), entry.mem, entry.interp.layout)
        self.warmed += 1

    def merged(self, pid: int, native: list[Frame], words: Sequence[int], end: int,
               counters: MutableMapping[str, int], weight: int) -> list[Frame]:
        """The user stack, leaf first, with Python frames in place of the eval loop's frames."""
        if end == END_NONE:
            return native
        reason = END_NAMES.get(end, f"python_end_{end}")
        _add(counters, "python_samples", weight)
        entry = self.procs.get(pid)
        if entry is None:
            _add(counters, NOT_TRACKED, weight)
            return [*native, placeholder(NOT_TRACKED)]
        refs = decode_words(words)
        mem = entry.mem if entry.alive else None
        frames = self.namer.frames(pid, refs, mem, entry.interp.layout, counters, weight)
        out, complete = merge(native, frames, [r.is_entry for r in refs])
        if not complete:
            _add(counters, PARTIAL_MERGE, weight)
        if end != END_OK:
            _add(counters, reason, weight)
            out.append(placeholder(reason))
        return out

    def forget(self, pid: int) -> None:
        self.namer.forget(pid)
        self.procs.forget(pid)
