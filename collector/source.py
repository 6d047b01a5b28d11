"""Stack sources: what the agent drains each interval (real BPF, or a fake for unit tests).

The agent only sees `RawDrain`s, so its loop, batching and shipping are tested without BPF.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# Stack id errors from bpf_get_stackid, plus our own "stack map recycled while blocked".
STACK_OK = 0
STACK_STALE = -1000
MISSED_REASONS = {
    -errno.EFAULT: "unreadable",
    -errno.EEXIST: "hash collision",
    -errno.ENOMEM: "stack map full",
    STACK_STALE: "stack map recycled",
}


@dataclass(frozen=True, slots=True)
class RawCount:
    """One aggregated key of a BPF counts map, with its stacks already read (leaf first)."""

    tgid: int
    tid: int
    comm: str
    cgroup_id: int
    user: tuple[int, ...]
    kernel: tuple[int, ...]
    value: int
    user_error: int = STACK_OK  # negative stack id when the user stack was missed
    kernel_error: int = STACK_OK  # negative stack id (-EFAULT alone = sample in user mode)
    user_end: int = 0  # why the user-stack walk ended (HP_END_*; 0 = not a table-unwinder walk)
    python: tuple[int, ...] = ()  # the CPython walk's words (collector/python/bpf_record.py)
    python_end: int = 0  # why that walk ended (HP_PY_END_*; 0: not a registered Python process)


@dataclass(slots=True)
class RawDrain:
    """Everything one interval produced: on-CPU counts, off-CPU nanoseconds and BPF-side stats."""

    start_ns: int
    end_ns: int
    cpu: list[RawCount] = field(default_factory=list)
    offcpu: list[RawCount] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)


class StackSource(Protocol):
    """The agent's view of the kernel side."""

    frequency: int
    offcpu: bool

    def drain(self) -> RawDrain: ...

    def close(self) -> None: ...


class FakeSource:
    """A scripted source for unit tests: each drain returns the next prepared `RawDrain`."""

    def __init__(
        self,
        drains: Sequence[RawDrain] | Callable[[int], RawDrain],
        frequency: int = 19,
        offcpu: bool = True,
    ) -> None:
        self._drains = drains
        self.frequency = frequency
        self.offcpu = offcpu
        self.calls = 0
        self.closed = False

    def drain(self) -> RawDrain:
        index = self.calls
        self.calls += 1
        if callable(self._drains):
            return self._drains(index)
        if index < len(self._drains):
            return self._drains[index]
        return RawDrain(start_ns=0, end_ns=0)

    def close(self) -> None:
        self.closed = True
