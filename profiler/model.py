"""The canonical profile model every part of Hotpath speaks.

The collector produces a `Profile`, the server stores and merges them, and every output format
(pprof, folded stacks, flame-graph JSON) renders from one. Stacks are stored **root first**
(`stack[0]` is the outermost frame, `stack[-1]` the leaf), the order flame graphs and folded
stacks use; pprof's leaf-first order is converted at its codec's edge.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class FrameKind(str, enum.Enum):
    """Where a frame executes; drives colouring and how it was symbolized."""

    KERNEL = "kernel"
    NATIVE = "native"
    INTERPRETED = "interpreted"
    JIT = "jit"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Frame:
    """One stack frame.

    Identity (equality and hash) is the symbolized `(function, binary, kind)` only, so the same
    frame compares equal across hosts and ASLR layouts. `address`, `build_id`, `filename` and
    `line` ride along for output formats but never split a frame in two.
    """

    function: str
    binary: str = ""
    kind: FrameKind = FrameKind.UNKNOWN
    address: int = field(default=0, compare=False)
    build_id: str = field(default="", compare=False)
    filename: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ValueType:
    """A pprof value type such as `samples/count` or `cpu/nanoseconds`."""

    type: str
    unit: str

    def __str__(self) -> str:
        return f"{self.type}/{self.unit}"


Labels = tuple[tuple[str, str], ...]


def make_labels(labels: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> Labels:
    """Normalize labels to a sorted tuple of pairs, hashable and order-independent."""
    if labels is None:
        return ()
    items = labels.items() if isinstance(labels, Mapping) else labels
    return tuple(sorted((str(k), str(v)) for k, v in items))


@dataclass(frozen=True, slots=True)
class Sample:
    """A stack (root first) with one value per sample type and per-sample labels."""

    stack: tuple[Frame, ...]
    values: tuple[int, ...]
    labels: Labels = ()

    def label(self, name: str, default: str = "") -> str:
        for key, value in self.labels:
            if key == name:
                return value
        return default


@dataclass(slots=True)
class Profile:
    """A set of samples sharing sample types, period and time window.

    `counters` carries data-quality counts (missed stacks, unsymbolized frames, dropped batches…)
    so they travel with the data instead of vanishing; pprof carries them as comments.
    """

    sample_types: tuple[ValueType, ...]
    samples: list[Sample] = field(default_factory=list)
    period_type: ValueType | None = None
    period: int = 0
    time_nanos: int = 0
    duration_nanos: int = 0
    default_sample_type: str = ""
    counters: dict[str, int] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    def value_index(self, type_name: str) -> int:
        """Index of the sample type named `type_name` (e.g. "cpu"); KeyError if absent."""
        for i, vt in enumerate(self.sample_types):
            if vt.type == type_name:
                return i
        raise KeyError(type_name)

    def total(self, index: int = 0) -> int:
        return sum(s.values[index] for s in self.samples)
