"""The canonical profile model every part of Hotpath speaks.

The collector produces a `Profile`, the server stores and merges them, and every output format
(pprof, folded stacks, flame-graph JSON) renders from one. Stacks are stored **root first**
(`stack[0]` is the outermost frame, `stack[-1]` the leaf), the order flame graphs and folded
stacks use; pprof's leaf-first order is converted at its codec's edge.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np


class FrameKind(str, enum.Enum):
    """Where a frame executes; drives colouring and how it was symbolized."""

    KERNEL = "kernel"
    NATIVE = "native"
    INTERPRETED = "interpreted"
    JIT = "jit"
    UNKNOWN = "unknown"


# The binary of every kernel frame (perf's name for the kernel image): set by the symbolizer, written
# as the pprof mapping of kernel frames that have no binary of their own.
KERNEL_BINARY = "[kernel.kallsyms]"


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


class FrameInterner:
    """Dense ids for frames, unique by Frame identity, in first-seen order.

    Frame's hash goes through FrameKind (a Python-level Enum hash), so the same object is looked
    up by identity first; holding the frame in that entry keeps its id from being reused."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self._index: dict[Frame, int] = {}
        self._by_obj: dict[int, tuple[int, Frame]] = {}

    def ids(self, stack: Iterable[Frame]) -> list[int]:
        out = []
        by_obj, index, frames = self._by_obj, self._index, self.frames
        for f in stack:
            hit = by_obj.get(id(f))
            if hit is None:
                fid = index.get(f)
                if fid is None:
                    fid = index[f] = len(frames)
                    frames.append(f)
                by_obj[id(f)] = (fid, f)
            else:
                fid = hit[0]
            out.append(fid)
        return out


class Stacks(Sequence[tuple[int, ...]]):
    """Stacks kept as a decoder made them: one flat int64 array of frame indexes (root first) and
    each stack's depth. Tuples are built only if the stacks are read one by one; the server's
    ingest hashes the arrays and never does (building 300 tuples costs more than decoding them)."""

    __slots__ = ("_tuples", "depths", "flat")

    def __init__(self, flat: np.ndarray, depths: np.ndarray) -> None:
        self.flat, self.depths = flat, depths
        self._tuples: list[tuple[int, ...]] | None = None

    def tuples(self) -> list[tuple[int, ...]]:
        if self._tuples is None:
            ends = np.cumsum(self.depths).tolist()
            flat = self.flat.tolist()
            self._tuples = list(map(tuple, map(flat.__getitem__, map(slice, [0, *ends[:-1]], ends))))
        return self._tuples

    def __len__(self) -> int:
        return int(self.depths.size)

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        return self.tuples()[i]

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        return iter(self.tuples())

    def __eq__(self, other: object) -> bool:
        return self.tuples() == list(other) if isinstance(other, Sequence) else NotImplemented

    def __repr__(self) -> str:
        return f"Stacks({self.tuples()!r})"


@dataclass(slots=True)
class ProfileTable:
    """The same profile as columns: interned frames, stacks as frame-index tuples, values as one array.

    Why: the server ingests hundreds of batches per second; building a `Sample` object (and hashing
    `Frame` dataclasses) per sample costs far more than the protobuf parse. A table is built per
    *location* and per *function*, then per sample only an int tuple. `stacks` are root first.
    """

    sample_types: tuple[ValueType, ...]
    frames: list[Frame]  # unique by Frame identity (function, binary, kind)
    stacks: Sequence[tuple[int, ...]]  # one per sample, root first, indexes into `frames` (list or Stacks)
    values: np.ndarray  # int64, shape (n_samples, len(sample_types))
    labels: list[Labels]  # one per sample, () when none (sorted pairs, as make_labels)
    period_type: ValueType | None = None
    period: int = 0
    time_nanos: int = 0
    duration_nanos: int = 0
    default_sample_type: str = ""
    counters: dict[str, int] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.stacks)

    def flat_stacks(self) -> tuple[np.ndarray, np.ndarray]:
        """(all stacks' frame indexes root first, int64; each stack's depth)."""
        if isinstance(self.stacks, Stacks):
            return self.stacks.flat, self.stacks.depths
        depths = np.fromiter(map(len, self.stacks), np.int64, len(self.stacks))
        return np.fromiter(chain.from_iterable(self.stacks), np.int64, int(depths.sum())), depths

    def to_profile(self) -> Profile:
        """The object model; frames are shared objects, so equal frames are `is`-identical."""
        get = self.frames.__getitem__
        stacks = [tuple(map(get, st)) for st in self.stacks]
        values = list(map(tuple, self.values.tolist()))
        return Profile(
            sample_types=self.sample_types,
            samples=list(map(Sample, stacks, values, self.labels)),
            period_type=self.period_type,
            period=self.period,
            time_nanos=self.time_nanos,
            duration_nanos=self.duration_nanos,
            default_sample_type=self.default_sample_type,
            counters=dict(self.counters),
            comments=list(self.comments),
        )

    @classmethod
    def from_profile(cls, profile: Profile) -> ProfileTable:
        """Intern a profile's frames (by identity) into a table; sample order is kept."""
        interner = FrameInterner()
        stacks: list[tuple[int, ...]] = []
        n = len(profile.sample_types)
        for smp in profile.samples:
            if len(smp.values) != n:
                raise ValueError(f"sample has {len(smp.values)} values but the profile has {n} sample types")
            stacks.append(tuple(interner.ids(smp.stack)))
        frames = interner.frames
        values = np.array([s.values for s in profile.samples], dtype=np.int64).reshape(len(stacks), n)
        return cls(
            sample_types=profile.sample_types,
            frames=frames,
            stacks=stacks,
            values=values,
            labels=[s.labels for s in profile.samples],
            period_type=profile.period_type,
            period=profile.period,
            time_nanos=profile.time_nanos,
            duration_nanos=profile.duration_nanos,
            default_sample_type=profile.default_sample_type,
            counters=dict(profile.counters),
            comments=list(profile.comments),
        )
