"""OpenTelemetry profiles (`v1development`, opentelemetry-proto 1.45.x): an ExportProfilesServiceRequest
as Hotpath tables, one per group of `Profile`s that are the columns of one profile.

Pure; the HTTP edge is server/api/otlp.py. Mapping:
- Resource attributes `service.name` -> `service`, `host.name` -> `host`, the others and the
  Profile's own attributes -> series labels (low cardinality); a Sample's attributes -> per-sample
  labels, `process.pid`/`process.executable.name`/`thread.name` named `pid`/`process`/`thread`;
  other dotted keys with underscores (`k8s.pod.name` -> `k8s_pod_name`).
- A pprof with several sample types arrives as several `Profile`s (one sample type each) in one
  scope with the same time, duration and period: they are merged back into one table whose
  columns are those types, sample by sample identity (stack, attributes). A lone CPU column gets
  its twin (profiler.types.as_cpu_columns), so OTel CPU data lands in the `cpu` type.
- A Sample's value is the sum of its `values`, or its count of timestamps when it has none.
A Profile that cannot be read whole (an index out of its table, a sample without values, fields
this build does not know: the pre-renumbering layout) is rejected whole and reported, never half-read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as svc
from opentelemetry.proto.profiles.v1development import profiles_pb2 as pb

from profiler.model import (
    Frame,
    FrameKind,
    Labels,
    ProfileTable,
    Stacks,
    ValueType,
    make_labels,
)
from profiler.types import as_cpu_columns
from server.protocols import ProtocolError, label_name

# The v1development numbering this decoder is written for (opentelemetry-proto 1.45.x). Builds from
# before the 2026-05 renumbering put Sample.values at 2: a mismatch here is a silent misread.
FIELD_NUMBERS = {
    "ExportProfilesServiceRequest": {"resource_profiles": 1, "dictionary": 2},
    "ProfilesDictionary": {"mapping_table": 1, "location_table": 2, "function_table": 3, "link_table": 4,
                           "string_table": 5, "attribute_table": 6, "stack_table": 7},
    "Profile": {"sample_type": 1, "samples": 2, "time_unix_nano": 3, "duration_nano": 4, "period_type": 5,
                "period": 6, "attribute_indices": 11},
    "Sample": {"stack_index": 1, "attribute_indices": 2, "link_index": 3, "values": 4, "timestamps_unix_nano": 5},
    "Stack": {"location_indices": 1},
    "Location": {"mapping_index": 1, "address": 2, "lines": 3, "attribute_indices": 4},
    "Line": {"function_index": 1, "line": 2},
    "Function": {"name_strindex": 1, "system_name_strindex": 2, "filename_strindex": 3},
    "Mapping": {"filename_strindex": 4},
    "KeyValueAndUnit": {"key_strindex": 1, "value": 2},
}
OLD_LAYOUT_HINT = ("; the sender may use the profiles layout from before the v1development renumbering "
                   "(Sample.values = 2): upgrade it to opentelemetry-proto 1.45+")
RESOURCE_LABELS = {"service.name": "service", "host.name": "host"}
SAMPLE_LABELS = {"process.pid": "pid", "process.executable.name": "process", "thread.name": "thread",
                 "thread.id": "tid"}
FRAME_KINDS = {"kernel": FrameKind.KERNEL, "native": FrameKind.NATIVE}
FRAME_TYPE_ATTR = "profile.frame.type"


def field_number_mismatches() -> list[str]:
    """Where the installed generated classes number a field differently from FIELD_NUMBERS."""
    out = []
    for message, fields in FIELD_NUMBERS.items():
        desc = (svc if message == "ExportProfilesServiceRequest" else pb).DESCRIPTOR.message_types_by_name[message]
        for name, number in fields.items():
            got = desc.fields_by_name.get(name)
            if got is None or got.number != number:
                out.append(f"{message}.{name}: expected {number}, found {got.number if got else 'none'}")
    return out


def decode_request(body: bytes, codec: str) -> svc.ExportProfilesServiceRequest:
    req = svc.ExportProfilesServiceRequest()
    if codec == "proto":
        try:
            req.ParseFromString(body)
        except DecodeError as exc:
            raise ProtocolError(f"body is not a valid ExportProfilesServiceRequest (truncated or malformed "
                                f"protobuf: {exc})") from None
        return req
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"JSON body is not valid UTF-8 (byte {exc.start})") from None
    except ValueError as exc:
        raise ProtocolError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("JSON body must be an ExportProfilesServiceRequest object")
    # OTLP/JSON writes trace and span ids as hex, not base64; links are not stored, so drop them.
    dictionary = doc.get("dictionary")
    if isinstance(dictionary, dict):
        dictionary.pop("linkTable", None)
        dictionary.pop("link_table", None)
    try:
        json_format.ParseDict(doc, req, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ProtocolError(f"body is not a valid ExportProfilesServiceRequest in JSON: {exc}") from None
    return req


@dataclass
class Batch:
    labels: dict[str, str]
    table: ProfileTable


@dataclass
class Converted:
    batches: list[Batch] = field(default_factory=list)
    rejected: int = 0  # Profiles rejected
    errors: list[str] = field(default_factory=list)


class _Reject(Exception):
    pass


_FRAMES: dict[tuple, Frame] = {}  # type: ignore[type-arg]  # frames recur across a fleet's requests
_FRAMES_MAX = 1 << 16  # cleared whole when full (as profiler.pprof_columns does)


def _frame(name: str, binary: str, kind: FrameKind, address: int, filename: str, line: int) -> Frame:
    key = (name, binary, kind, address, filename, line)
    hit = _FRAMES.get(key)
    if hit is None:
        if len(_FRAMES) >= _FRAMES_MAX:
            _FRAMES.clear()
        hit = _FRAMES[key] = Frame(name, binary, kind, address, filename=filename, line=line)
    return hit


class _Dictionary:
    """The request's shared tables, resolved lazily (each entry once) and checked index by index."""

    def __init__(self, d: pb.ProfilesDictionary) -> None:
        self.d = d
        self.strings = list(d.string_table)
        # Python lists once: indexing a upb repeated field builds a wrapper on every access.
        self.location_table = list(d.location_table)
        self.stack_table = list(d.stack_table)
        self.frames: list[Frame] = []
        self._frame_ids: dict[tuple[str, str, str], int] = {}
        self._locations: dict[int, tuple[int, ...]] = {}
        self._attrs: dict[int, tuple[str, str]] = {}
        self._stack_frames: tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]] | None = None
        self._functions: dict[int, tuple[str, str]] = {}
        self._mappings: dict[int, tuple[str, FrameKind]] = {0: ("", FrameKind.UNKNOWN)}

    def string(self, i: int, what: str) -> str:
        if not 0 <= i < len(self.strings):
            raise _Reject(f"{what} string index {i} is outside string_table ({len(self.strings)} entries)")
        return self.strings[i]

    def attribute(self, i: int) -> tuple[str, str]:
        hit = self._attrs.get(i)
        if hit is None:
            table = self.d.attribute_table
            if not 0 <= i < len(table):
                raise _Reject(f"attribute index {i} is outside attribute_table ({len(table)} entries)")
            kv = table[i]
            hit = self._attrs[i] = (self.string(kv.key_strindex, "attribute key"), self.value(kv.value))
        return hit

    def value(self, v) -> str:  # type: ignore[no-untyped-def]
        kind = v.WhichOneof("value")
        if kind == "string_value_strindex":
            return self.string(v.string_value_strindex, "attribute value")
        if kind in ("string_value", "int_value", "double_value"):
            return str(getattr(v, kind))
        if kind == "bool_value":
            return "true" if v.bool_value else "false"
        if kind is None:
            return ""
        return json_format.MessageToJson(v, indent=None)

    def function(self, i: int) -> tuple[str, str]:
        hit = self._functions.get(i)
        if hit is None:
            if not 0 <= i < len(self.d.function_table):
                raise _Reject(f"function index {i} is outside function_table")
            fn = self.d.function_table[i]
            hit = self._functions[i] = (self.string(fn.name_strindex, "function name") or "?",
                                        self.string(fn.filename_strindex, "file name"))
        return hit

    def mapping(self, i: int) -> tuple[str, FrameKind]:
        hit = self._mappings.get(i)
        if hit is None:
            if not 0 <= i < len(self.d.mapping_table):
                raise _Reject(f"mapping index {i} is outside mapping_table")
            binary = self.string(self.d.mapping_table[i].filename_strindex, "mapping filename")
            kind = FrameKind.KERNEL if binary.startswith(("[kernel", "[vmlinux")) else FrameKind.NATIVE
            hit = self._mappings[i] = (binary, kind)
        return hit

    def location(self, i: int) -> tuple[int, ...]:
        """Frame ids of location `i`, root first (its inlined lines reversed: lines[0] is innermost)."""
        hit = self._locations.get(i)
        if hit is not None:
            return hit
        if not 0 <= i < len(self.location_table):
            raise _Reject(f"location index {i} is outside location_table ({len(self.location_table)} entries)")
        loc = self.location_table[i]
        binary, kind = self.mapping(loc.mapping_index)
        for a in loc.attribute_indices:
            key, value = self.attribute(a)
            if key == FRAME_TYPE_ATTR:
                kind = FRAME_KINDS.get(value, FrameKind.INTERPRETED)
        address = loc.address
        lines = list(loc.lines)
        if not lines:  # unsymbolized: the address, as the pprof codec shows it
            hit = self._locations[i] = (self._frame_id(f"{binary}+0x{address:x}" if binary else f"0x{address:x}",
                                                       binary, kind, address, "", 0),)
            return hit
        ids = []
        for line in reversed(lines):
            name, filename = self.function(line.function_index)
            ids.append(self._frame_id(name, binary, kind, address, filename, line.line))
        hit = self._locations[i] = tuple(ids)
        return hit

    def _frame_id(self, name: str, binary: str, kind: FrameKind, address: int, filename: str, line: int) -> int:
        """The request-wide id of a frame, by Frame identity (function, binary, kind); first seen wins."""
        key = (name, binary, kind.value)  # the enum's own hash is Python-level: key by its value
        fid = self._frame_ids.get(key)
        if fid is None:
            fid = self._frame_ids[key] = len(self.frames)
            self.frames.append(_frame(name, binary, kind, address, filename, line))
        return fid

    def stack_frames(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
        """Every stack as frame ids, root first, built once per request with numpy:
        (flat frame ids, each stack's start in them, each stack's depth, {stack index: why unreadable})."""
        if self._stack_frames is not None:
            return self._stack_frames
        bad_locations: dict[int, str] = {}
        per_location = []
        for i in range(len(self.location_table)):
            try:
                per_location.append(self.location(i))
            except _Reject as exc:
                bad_locations[i] = str(exc)
                per_location.append(())
        n_locations = len(per_location)
        per_location.append(())  # where invalid references point, so indexing never fails
        loc_len = np.fromiter(map(len, per_location), np.int64, len(per_location))
        loc_start = np.cumsum(loc_len) - loc_len
        loc_flat = np.fromiter(chain.from_iterable(per_location), np.int64, int(loc_len.sum()))
        stacks = self.stack_table
        st_len = np.fromiter((len(st.location_indices) for st in stacks), np.int64, len(stacks))
        st_flat = np.fromiter(chain.from_iterable(st.location_indices for st in stacks), np.int64, int(st_len.sum()))
        seg = np.repeat(np.arange(len(stacks)), st_len)
        invalid = (st_flat < 0) | (st_flat >= n_locations)
        if bad_locations:
            invalid |= np.isin(st_flat, list(bad_locations))
        bad: dict[int, str] = {}
        for k in np.unique(seg[invalid]).tolist():
            loc = int(st_flat[(seg == k) & invalid][0])
            bad[k] = bad_locations.get(loc) or (f"location index {loc} is outside location_table "
                                                f"({n_locations} entries)")
        # pprof order is leaf first: reverse each stack's locations, then expand each to its frames
        st_start = np.cumsum(st_len) - st_len
        pos = np.arange(st_flat.size) - np.repeat(st_start, st_len)
        locs = np.where(invalid, n_locations, st_flat)[np.repeat(st_start + st_len - 1, st_len) - pos]
        counts = loc_len[locs]
        frame_pos = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        flat = loc_flat[np.repeat(loc_start[locs], counts) + frame_pos]
        depth = np.bincount(seg, weights=counts, minlength=len(stacks)).astype(np.int64)
        self._stack_frames = (flat, np.cumsum(depth) - depth, depth, bad)
        return self._stack_frames


def _value_type(d: _Dictionary, vt: pb.ValueType) -> ValueType:
    return ValueType(d.string(vt.type_strindex, "sample type"), d.string(vt.unit_strindex, "sample unit"))


def _group_key(d: _Dictionary, p: pb.Profile) -> tuple:  # type: ignore[type-arg]
    period_type = _value_type(d, p.period_type) if p.HasField("period_type") else None
    return (p.time_unix_nano, p.duration_nano, period_type, p.period, tuple(sorted(p.attribute_indices)))


def _groups(d: _Dictionary, profiles: list[pb.Profile], out: Converted) -> list[list[pb.Profile]]:
    """Profiles that are columns of one profile (same time, duration, period, attributes; distinct types)."""
    groups: list[tuple[tuple, list[pb.Profile], set[ValueType]]] = []  # type: ignore[type-arg]
    for p in profiles:
        try:
            key, vt = _group_key(d, p), _value_type(d, p.sample_type)
        except _Reject as exc:
            out.rejected += 1
            out.errors.append(str(exc))
            continue
        for gkey, members, types in groups:
            if gkey == key and vt not in types:
                members.append(p)
                types.add(vt)
                break
        else:
            groups.append((key, [p], {vt}))
    return [members for _, members, _ in groups]


def _table(d: _Dictionary, group: list[pb.Profile]) -> tuple[ProfileTable, dict[str, str]]:
    rows: dict[tuple, int] = {}  # type: ignore[type-arg]
    row_stacks: list[int] = []
    labels = []
    cell_rows: list[int] = []
    cell_cols: list[int] = []
    cell_values: list[int] = []
    label_sets: dict[tuple[int, ...], Labels] = {(): ()}
    for col, p in enumerate(group):
        samples = list(p.samples)
        # A sender writes one layout: fields unknown to this build show on its first sample.
        if samples and UnknownFieldSet(samples[0]):
            raise _Reject("a sample has fields this server does not know" + OLD_LAYOUT_HINT)
        for s in samples:
            vals, stamps = s.values, s.timestamps_unix_nano
            if vals:
                if stamps and len(vals) != len(stamps):
                    raise _Reject(f"a sample has {len(vals)} values but {len(stamps)} timestamps")
                value = sum(vals)
            elif stamps:
                value = len(stamps)
            else:
                raise _Reject("a sample has neither values nor timestamps" + OLD_LAYOUT_HINT)
            attr_ids = tuple(sorted(s.attribute_indices))
            sample_labels = label_sets.get(attr_ids)
            if sample_labels is None:
                try:
                    attrs = [d.attribute(a) for a in attr_ids]
                except _Reject as exc:
                    raise _Reject(str(exc) + OLD_LAYOUT_HINT) from None
                sample_labels = label_sets[attr_ids] = make_labels(
                    (SAMPLE_LABELS.get(k) or label_name(k), v) for k, v in attrs)
            ident = (s.stack_index, attr_ids)
            row = rows.get(ident)
            if row is None:
                row = rows[ident] = len(row_stacks)
                row_stacks.append(ident[0])
                labels.append(sample_labels)
            cell_rows.append(row)
            cell_cols.append(col)
            cell_values.append(value)
    values = np.zeros((len(row_stacks), len(group)), dtype=np.int64)
    np.add.at(values, (np.array(cell_rows, np.int64), np.array(cell_cols, np.int64)),
              np.array(cell_values, np.int64))
    all_flat, all_start, all_depth, bad = d.stack_frames()
    picked = np.array(row_stacks, np.int64)
    if picked.size and (picked.min() < 0 or picked.max() >= all_depth.size):
        wrong = int(picked[(picked < 0) | (picked >= all_depth.size)][0])
        raise _Reject(f"stack index {wrong} is outside stack_table ({all_depth.size} entries)")
    broken = sorted(set(row_stacks) & bad.keys())
    if broken:
        raise _Reject(f"stack {broken[0]}: {bad[broken[0]]}")
    depths = all_depth[picked]
    frame_pos = np.arange(int(depths.sum())) - np.repeat(np.cumsum(depths) - depths, depths)
    flat = all_flat[np.repeat(all_start[picked], depths) + frame_pos]
    # Frame ids are the request's; this table keeps only the frames its stacks use, renumbered.
    used = np.unique(flat)
    renumber = np.zeros(len(d.frames), dtype=np.int64)
    renumber[used] = np.arange(used.size)
    first = group[0]
    table = ProfileTable(
        sample_types=tuple(_value_type(d, p.sample_type) for p in group),
        frames=list(map(d.frames.__getitem__, used.tolist())), stacks=Stacks(renumber[flat], depths),
        values=values, labels=labels,
        period_type=_value_type(d, first.period_type) if first.HasField("period_type") else None,
        period=first.period, time_nanos=first.time_unix_nano, duration_nanos=first.duration_nano)
    series = {label_name(k): v for k, v in map(d.attribute, first.attribute_indices)}
    return as_cpu_columns(table), series


def _resource_labels(d: _Dictionary, attributes) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out = {}
    for kv in attributes:
        key = kv.key or (d.string(kv.key_strindex, "resource attribute key") if kv.key_strindex else "")
        if key:
            out[RESOURCE_LABELS.get(key) or label_name(key)] = d.value(kv.value)
    return out


def convert(req: svc.ExportProfilesServiceRequest) -> Converted:
    """Every readable Profile group as a Batch; unreadable Profiles counted and explained."""
    out = Converted()
    d = _Dictionary(req.dictionary)
    if UnknownFieldSet(req) or UnknownFieldSet(req.dictionary):
        out.errors.append("the request has fields this server does not know" + OLD_LAYOUT_HINT)
    for rp in req.resource_profiles:
        try:
            resource = _resource_labels(d, rp.resource.attributes)
        except _Reject as exc:
            out.rejected += sum(len(sp.profiles) for sp in rp.scope_profiles)
            out.errors.append(f"resource: {exc}")
            continue
        for sp in rp.scope_profiles:
            for group in _groups(d, list(sp.profiles), out):
                try:
                    table, own = _table(d, group)
                except _Reject as exc:
                    out.rejected += len(group)
                    out.errors.append(str(exc))
                    continue
                out.batches.append(Batch({**resource, **own}, table))
    return out
