"""pprof codec: `decode` validates and converts pprof bytes to a `Profile`; `encode` writes one back.

Why our own codec: the server ingests untrusted pprof from a fleet, so every pprof invariant is
checked and every failure becomes one `PprofError` naming the problem (never a protobuf, zlib or
IndexError escaping).

Conventions (documented in docs/contracts.md and here):
- pprof stacks are leaf first, the model root first; a Location with several Lines (inlining)
  expands into several frames, `line[0]` being the innermost.
- Mapping filename -> `Frame.binary`, build id -> `Frame.build_id`, Location address -> `Frame.address`.
- Frame kind: profiles we write carry `hotpath.kind:<mapping id>=<kind>` comments (hidden from
  `Profile.comments`); kernel frames also use mapping `[kernel.kallsyms]` when they have no binary,
  so a kernel frame with an empty binary decodes with binary `[kernel.kallsyms]`. Foreign profiles
  get an inferred kind: mapping names starting with `[kernel` or `[vmlinux` -> kernel, other named
  mappings -> native, no mapping -> unknown.
- String labels -> `Sample.labels`; numeric labels become string labels of their decimal value
  (the unit is dropped).
- `Profile.counters` <-> comments `hotpath.counter:<name>=<int>`.
- Locations without lines (unsymbolized) decode to `binary+0xoffset` (or `0xaddress`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from profiler import pprof_columns
from profiler import profile_pb2 as pb
from profiler.errors import PprofError
from profiler.gunzip import GZIP_MAGIC, GzipError, gunzip
from profiler.model import KERNEL_BINARY, Frame, FrameKind, Labels, Profile, ProfileTable, ValueType

MAX_DECOMPRESSED = 1 << 30  # refuse gzip bombs: 1 GiB of protobuf is far beyond any real batch
COUNTER_PREFIX = "hotpath.counter:"
KIND_PREFIX = "hotpath.kind:"
_KINDS = {k.value: k for k in FrameKind}


def _check_new_id(kind: str, ident: int, seen: dict[int, object]) -> None:
    """pprof ids are non-zero and unique within their table (0 means "none" in references)."""
    if ident == 0:
        raise PprofError(f"{kind} with id 0")
    if ident in seen:
        raise PprofError(f"duplicate {kind} id {ident}")


def decode(data: bytes) -> Profile:
    """Decode gzipped or raw pprof bytes into a `Profile`; raises only `PprofError`."""
    return decode_table(data).to_profile()


def decode_table(data: bytes) -> ProfileTable:
    """Decode gzipped or raw pprof bytes into a columnar `ProfileTable`; raises only `PprofError`.

    Every pprof invariant `decode` promises is checked here (`decode` is this plus `to_profile`).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PprofError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise PprofError("empty input")
    if data[:2] == GZIP_MAGIC:
        try:
            data = gunzip(data, MAX_DECOMPRESSED)
        except GzipError as exc:
            raise PprofError(str(exc)) from None
    table = pprof_columns.read(data, _header)  # None: unusual or bad input, the reference decides
    return table if table is not None else _reference(data)


def _reference(data: bytes) -> ProfileTable:
    """Full-schema parse and per-message conversion: the behaviour the fast reader must match."""
    msg = pb.Profile()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise PprofError(f"not a valid pprof protobuf: {exc or 'truncated or garbage'}") from None
    except Exception as exc:  # noqa: BLE001 - any protobuf failure is bad input
        raise PprofError(f"not a valid pprof protobuf: {type(exc).__name__}: {exc}") from None
    try:
        return _convert(msg)
    except PprofError:
        raise
    except Exception as exc:  # noqa: BLE001 - a missed invariant must still be our error
        raise PprofError(f"malformed profile: {type(exc).__name__}: {exc}") from None


@dataclass(slots=True)
class Header:
    """The small top-level parts of a pprof, validated: what both decoders need besides the
    sample, location and function tables, and everything of a ProfileTable but its columns."""

    strings: list[str]
    s: Callable[[int, str], str]  # string by index, naming the field when out of range
    sample_types: tuple[ValueType, ...]
    period_type: ValueType | None
    default_type: str
    counters: dict[str, int]
    comments: list[str]
    mappings: dict[int, tuple[str, str, int, int, FrameKind]]  # id -> (path, build id, start, offset, kind)
    period: int
    time_nanos: int
    duration_nanos: int

    def table(self, frames: list[Frame], stacks: Sequence[tuple[int, ...]], values: np.ndarray,
              labels: list[Labels]) -> ProfileTable:
        return ProfileTable(
            sample_types=self.sample_types,
            frames=frames,
            stacks=stacks,
            values=values,
            labels=labels,
            period_type=self.period_type,
            period=self.period,
            time_nanos=self.time_nanos,
            duration_nanos=self.duration_nanos,
            default_sample_type=self.default_type,
            counters=self.counters,
            comments=self.comments,
        )


def _header(msg: Any) -> Header:
    """The small top-level parts (string table, types, comments, mappings), validated; shared by
    the reference decoder and the columnar one so both read them the same way."""
    strings = list(msg.string_table)
    n = len(strings)
    if n == 0 or strings[0] != "":
        raise PprofError('string_table[0] must be ""' if n else "string table is empty")

    def s(idx: int, what: str) -> str:
        if idx < 0 or idx >= n:
            raise PprofError(f"{what} string index {idx} out of range (table has {n})")
        return strings[idx]

    sample_types = tuple(
        ValueType(s(vt.type, f"sample_type {i} type"), s(vt.unit, f"sample_type {i} unit"))
        for i, vt in enumerate(msg.sample_type)
    )
    for field, idx in (("drop_frames", msg.drop_frames), ("keep_frames", msg.keep_frames)):
        s(idx, field)
    period_type = None
    if msg.HasField("period_type"):
        period_type = ValueType(s(msg.period_type.type, "period_type type"), s(msg.period_type.unit, "period_type unit"))
    default_type = s(msg.default_sample_type, "default_sample_type")

    counters: dict[str, int] = {}
    comments: list[str] = []
    kinds: dict[int, FrameKind] = {}
    for i, idx in enumerate(msg.comment):
        text = s(idx, f"comment {i}")
        if text.startswith(COUNTER_PREFIX) and "=" in text:
            name, _, num = text[len(COUNTER_PREFIX):].rpartition("=")
            try:
                counters[name] = counters.get(name, 0) + int(num)
                continue
            except ValueError:
                pass
        elif text.startswith(KIND_PREFIX) and "=" in text:
            mid, _, kind = text[len(KIND_PREFIX):].partition("=")
            if mid.isdigit() and kind in _KINDS:
                kinds[int(mid)] = _KINDS[kind]
                continue
        comments.append(text)

    mappings: dict[int, tuple[str, str, int, int, FrameKind]] = {}
    for m in msg.mapping:
        _check_new_id("mapping", m.id, mappings)
        path = s(m.filename, f"mapping {m.id} filename")
        kind = kinds.get(m.id)
        if kind is None:
            if path.startswith(("[kernel", "[vmlinux")) or path == "vmlinux":
                kind = FrameKind.KERNEL
            else:
                kind = FrameKind.NATIVE if path else FrameKind.UNKNOWN
        mappings[m.id] = (path, s(m.build_id, f"mapping {m.id} build_id"), m.memory_start, m.file_offset, kind)
    return Header(strings, s, sample_types, period_type, default_type, counters, comments, mappings,
                  msg.period, msg.time_nanos, msg.duration_nanos)


def _convert(msg: Any) -> ProfileTable:
    """The reference decoder: per message over the full schema; names every invariant broken."""
    h = _header(msg)
    frames, loc_frames = _locations(msg, h.s, h.mappings)
    values = _values(msg.sample, len(h.sample_types))
    return h.table(frames, _stacks(msg.sample, loc_frames), values, _labels(msg.sample, h.s))


def _locations(msg: Any, s: Callable[[int, str], str], mappings: dict[int, tuple[str, str, int, int, FrameKind]]
               ) -> tuple[list[Frame], dict[int, tuple[int, ...]]]:
    """Frames (interned by identity) and each location's frame indexes, root first: per location,
    never per frame occurrence, so the per-sample work is only index lookups."""
    functions: dict[int, tuple[str, str]] = {}
    for f in msg.function:
        _check_new_id("function", f.id, functions)
        name = s(f.name, f"function {f.id} name")
        s(f.system_name, f"function {f.id} system_name")
        functions[f.id] = (name, s(f.filename, f"function {f.id} filename"))

    # Identity is (function, binary, kind); the first occurrence's address/file/line ride along.
    index: dict[tuple[str, str, FrameKind], int] = {}
    frames: list[Frame] = []
    loc_frames: dict[int, tuple[int, ...]] = {}
    for loc in msg.location:
        _check_new_id("location", loc.id, loc_frames)
        if loc.mapping_id:
            mp = mappings.get(loc.mapping_id)
            if mp is None:
                raise PprofError(f"location {loc.id} references unknown mapping id {loc.mapping_id}")
            binary, build_id, start, offset, kind = mp
        else:
            binary, build_id, start, offset, kind = "", "", 0, 0, FrameKind.UNKNOWN
        if not loc.line:
            if binary:
                name = f"{binary}+0x{max(loc.address - start, 0) + offset:x}"
            else:
                name = f"0x{loc.address:x}"
            keys = [(name, "", 0)]
        else:
            keys = []
            for ln in loc.line:
                fn = functions.get(ln.function_id)
                if fn is None:
                    raise PprofError(f"location {loc.id} references unknown function id {ln.function_id}")
                keys.append((fn[0], fn[1], ln.line))
        ids = []
        for name, filename, line in reversed(keys):  # outermost (caller) first
            ident = (name, binary, kind)
            fid = index.get(ident)
            if fid is None:
                fid = index[ident] = len(frames)
                frames.append(Frame(name, binary, kind, loc.address, build_id, filename, line))
            ids.append(fid)
        loc_frames[loc.id] = tuple(ids)
    return frames, loc_frames


def _stacks(samples: Any, loc_frames: dict[int, tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Root-first frame-index tuple per sample, built at C speed; an unknown location id is named."""
    # upb slices of repeated fields are plain lists; [::-1] turns pprof's leaf-first order around.
    rev = [smp.location_id[::-1] for smp in samples]
    try:
        if all(len(t) == 1 for t in loc_frames.values()):  # no inlining: one frame per location
            single = {lid: t[0] for lid, t in loc_frames.items()}
            get1 = single.__getitem__
            return [tuple(map(get1, ids)) for ids in rev]
        get = loc_frames.__getitem__
        return [tuple(chain.from_iterable(map(get, ids))) for ids in rev]
    except KeyError:
        for i, ids in enumerate(rev):
            for lid in reversed(ids):
                if lid not in loc_frames:
                    raise PprofError(f"sample {i} references unknown location id {lid}") from None
        raise


def _values(samples: Any, nvalues: int) -> np.ndarray:
    """(n_samples, nvalues) int64; every sample must carry exactly one value per sample type."""
    rows = [smp.value[:] for smp in samples]
    for i, row in enumerate(rows):
        if len(row) != nvalues:
            raise PprofError(f"sample {i} has {len(row)} values but the profile has {nvalues} sample types")
    if not rows:
        return np.zeros((0, nvalues), dtype=np.int64)
    return np.array(rows, dtype=np.int64).reshape(len(rows), nvalues)


def _labels(samples: Any, s: Callable[[int, str], str]) -> list[Labels]:
    """Sorted label pairs per sample; numeric labels become their decimal string (unit dropped)."""
    out: list[Labels] = []
    append = out.append
    cache: dict[tuple, Labels] = {}
    for i, smp in enumerate(samples):
        if not smp.label:
            append(())
            continue
        raw = tuple((lb.key, lb.str, lb.num, lb.num_unit) for lb in smp.label)
        labels = cache.get(raw)
        if labels is None:
            pairs = []
            for key, sidx, num, unit in raw:
                k = s(key, f"sample {i} label key")
                s(unit, f"sample {i} label num_unit")
                # proto3 cannot tell str "" from num 0: a string wins, then a number, else ""
                v = s(sidx, f"sample {i} label value") if sidx else (str(num) if num or unit else "")
                pairs.append((k, v))
            labels = cache[raw] = tuple(sorted(pairs))
        append(labels)
    return out


def encode(profile: Profile, compress: bool = True) -> bytes:
    """Encode a `Profile` as pprof (gzipped unless `compress=False`), deduplicating everything."""
    msg = pb.Profile()
    strings: dict[str, int] = {"": 0}
    table: list[str] = [""]

    def sid(text: str) -> int:
        idx = strings.get(text)
        if idx is None:
            idx = strings[text] = len(table)
            table.append(text)
        return idx

    for vt in profile.sample_types:
        msg.sample_type.add(type=sid(vt.type), unit=sid(vt.unit))
    if profile.period_type is not None:
        msg.period_type.type = sid(profile.period_type.type)
        msg.period_type.unit = sid(profile.period_type.unit)
    msg.period = profile.period
    msg.time_nanos = profile.time_nanos
    msg.duration_nanos = profile.duration_nanos
    if profile.default_sample_type:
        msg.default_sample_type = sid(profile.default_sample_type)

    mapping_ids: dict[tuple[str, str, FrameKind], int] = {}
    function_ids: dict[tuple[str, str], int] = {}
    location_ids: dict[tuple, int] = {}
    frame_loc: dict[int, int] = {}  # id(frame) -> location id: decoded frames are interned
    kind_comments: list[str] = []

    def location_of(fr: Frame) -> int:
        mkey = (fr.binary, fr.build_id, fr.kind)
        mid = 0
        if fr.binary or fr.kind is not FrameKind.UNKNOWN or fr.build_id:
            mid = mapping_ids.get(mkey, 0)
            if not mid:
                mid = mapping_ids[mkey] = len(mapping_ids) + 1
                path = fr.binary or (KERNEL_BINARY if fr.kind is FrameKind.KERNEL else "")
                msg.mapping.add(id=mid, filename=sid(path), build_id=sid(fr.build_id),
                                has_functions=True)
                kind_comments.append(f"{KIND_PREFIX}{mid}={fr.kind.value}")
        fkey = (fr.function, fr.filename)
        fid = function_ids.get(fkey)
        if fid is None:
            fid = function_ids[fkey] = len(function_ids) + 1
            name = sid(fr.function)
            msg.function.add(id=fid, name=name, system_name=name, filename=sid(fr.filename))
        lkey = (fid, fr.line, mid, fr.address)
        lid = location_ids.get(lkey)
        if lid is None:
            lid = location_ids[lkey] = len(location_ids) + 1
            loc = msg.location.add(id=lid, mapping_id=mid, address=fr.address)
            loc.line.add(function_id=fid, line=fr.line)
        return lid

    label_ids: dict[tuple, list[tuple[int, int]]] = {}
    for smp in profile.samples:
        lids = []
        for fr in reversed(smp.stack):  # pprof is leaf first
            lid = frame_loc.get(id(fr))
            if lid is None:
                lid = location_of(fr)
                frame_loc[id(fr)] = lid
            lids.append(lid)
        out = msg.sample.add(location_id=lids, value=smp.values)
        if smp.labels:
            pairs = label_ids.get(smp.labels)
            if pairs is None:
                pairs = label_ids[smp.labels] = [(sid(k), sid(v)) for k, v in smp.labels]
            for k, v in pairs:
                out.label.add(key=k, str=v)
    for name, value in sorted(profile.counters.items()):
        msg.comment.append(sid(f"{COUNTER_PREFIX}{name}={int(value)}"))
    for text in kind_comments:
        msg.comment.append(sid(text))
    for text in profile.comments:
        msg.comment.append(sid(text))
    msg.string_table.extend(table)
    raw = msg.SerializeToString()
    return zlib.compress(raw, 6, wbits=16 + zlib.MAX_WBITS) if compress else raw
