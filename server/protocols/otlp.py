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

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as svc
from opentelemetry.proto.profiles.v1development import profiles_pb2 as pb

from profiler.model import Labels, ProfileTable, Stacks, ValueType, make_labels
from profiler.types import as_cpu_columns
from server.protocols import ProtocolError, label_name, otlp_columns
from server.protocols.otlp_columns import Columns
from server.protocols.otlp_dictionary import Dictionary, Unreadable

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


def _value_type(d: Dictionary, vt: pb.ValueType) -> ValueType:
    return ValueType(d.string(vt.type_strindex, "sample type"), d.string(vt.unit_strindex, "sample unit"))


def _group_key(d: Dictionary, p: pb.Profile) -> tuple:  # type: ignore[type-arg]
    period_type = _value_type(d, p.period_type) if p.HasField("period_type") else None
    return (p.time_unix_nano, p.duration_nano, period_type, p.period, tuple(sorted(p.attribute_indices)))


def _groups(d: Dictionary, profiles: list[tuple[int, pb.Profile]], out: Converted) -> list[list[tuple[int, pb.Profile]]]:
    """Profiles (with their request ordinal) that are columns of one profile (same time, duration,
    period, attributes; distinct types)."""
    groups: list[tuple[tuple, list[tuple[int, pb.Profile]], set[ValueType]]] = []  # type: ignore[type-arg]
    for k, p in profiles:
        try:
            key, vt = _group_key(d, p), _value_type(d, p.sample_type)
        except Unreadable as exc:
            out.rejected += 1
            out.errors.append(str(exc))
            continue
        for gkey, members, types in groups:
            if gkey == key and vt not in types:
                members.append((k, p))
                types.add(vt)
                break
        else:
            groups.append((key, [(k, p)], {vt}))
    return [members for _, members, _ in groups]


class _Samples:
    """The request's sample columns, sliced per Profile (its samples are contiguous, in order)."""

    def __init__(self, cols: Columns) -> None:
        self.cols = cols
        self.value_end = np.cumsum(cols.smp_nvalues)
        self.attr_start = np.cumsum(cols.smp_nattrs) - cols.smp_nattrs
        # Prefix sums: they may wrap, but a difference is exact whenever the sample's own sum fits int64.
        self.value_sums = np.concatenate(([0], np.cumsum(cols.smp_values)))

    def of(self, ordinal: int) -> tuple[slice, np.ndarray, int | None]:
        """Profile `ordinal`'s rows, each one's value (the sum of its values, else its count of
        timestamps), and the first row whose value cannot be read (None when all can)."""
        c = self.cols
        rows = slice(int(np.searchsorted(c.smp_profile, ordinal, "left")),
                     int(np.searchsorted(c.smp_profile, ordinal, "right")))
        nv, ns = c.smp_nvalues[rows], c.smp_nstamps[rows]
        end = self.value_end[rows]
        values = np.where(nv > 0, self.value_sums[end] - self.value_sums[end - nv], ns)
        bad = np.flatnonzero(((nv == 0) & (ns == 0)) | ((nv > 0) & (ns > 0) & (nv != ns)))
        return rows, values, rows.start + int(bad[0]) if bad.size else None

    def value_error(self, j: int) -> Unreadable:
        nv, ns = int(self.cols.smp_nvalues[j]), int(self.cols.smp_nstamps[j])
        if nv and ns:
            return Unreadable(f"a sample has {nv} values but {ns} timestamps")
        return Unreadable("a sample has neither values nor timestamps" + OLD_LAYOUT_HINT)

    def idents(self, spans: list[slice]) -> tuple[np.ndarray, list[tuple[int, tuple[int, ...]]]]:
        """Each row's identity (stack, sorted attribute ids), rows of `spans` in order, as an index
        into the distinct ones listed in first-seen order: with numpy when every row has as many
        attributes (the usual case), else row by row."""
        c = self.cols
        nattrs = np.concatenate([c.smp_nattrs[r] for r in spans])
        if not nattrs.size:
            return np.zeros(0, np.int64), []
        k = int(nattrs[0])
        if (nattrs == k).all():
            def block(r: slice) -> np.ndarray:
                n = r.stop - r.start
                a0 = int(self.attr_start[r.start]) if n else 0
                return np.column_stack([c.smp_stack[r], np.sort(c.smp_attrs[a0:a0 + n * k].reshape(n, k), axis=1)])
            keys = np.concatenate([block(r) for r in spans])
            _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
            order = np.argsort(first, kind="stable")
            rank = np.empty(order.size, np.int64)
            rank[order] = np.arange(order.size)
            return rank[inverse.reshape(-1)], [(r[0], tuple(r[1:])) for r in keys[first[order]].tolist()]
        seen: dict[tuple[int, tuple[int, ...]], int] = {}
        attrs = c.smp_attrs.tolist()
        which = [seen.setdefault((stack, tuple(sorted(attrs[a0:a0 + na]))), len(seen))
                 for r in spans for stack, a0, na in
                 zip(c.smp_stack[r].tolist(), self.attr_start[r].tolist(), c.smp_nattrs[r].tolist())]
        return np.array(which, np.int64), list(seen)


def _table(d: Dictionary, samples: _Samples, group: list[tuple[int, pb.Profile]]) -> tuple[ProfileTable, dict[str, str]]:
    """One table whose columns are the group's Profiles, a row per distinct (stack, attributes)."""
    spans: list[slice] = []
    col_values: list[np.ndarray] = []
    bad = None
    for ordinal, p in group:
        # A sender writes one layout: fields unknown to this build show on its first sample.
        if len(p.samples) and UnknownFieldSet(p.samples[0]):
            raise Unreadable("a sample has fields this server does not know" + OLD_LAYOUT_HINT)
        span, vals, bad = samples.of(ordinal)
        if bad is not None:  # the samples before it are still read: their errors come first, as in order
            spans.append(slice(span.start, bad))
            break
        spans.append(span)
        col_values.append(vals)
    which, distinct = samples.idents(spans)
    label_sets: dict[tuple[int, ...], Labels] = {(): ()}
    labels = []
    for _, attr_ids in distinct:
        sample_labels = label_sets.get(attr_ids)
        if sample_labels is None:
            try:
                attrs = [d.attribute(a) for a in attr_ids]
            except Unreadable as exc:
                raise Unreadable(str(exc) + OLD_LAYOUT_HINT) from None
            sample_labels = label_sets[attr_ids] = make_labels(
                (SAMPLE_LABELS.get(k) or label_name(k), v) for k, v in attrs)
        labels.append(sample_labels)
    if bad is not None:
        raise samples.value_error(bad)
    row_stacks = [stack for stack, _ in distinct]
    values = np.zeros((len(row_stacks), len(group)), dtype=np.int64)
    cols = np.repeat(np.arange(len(spans)), [r.stop - r.start for r in spans])
    np.add.at(values, (which, cols), np.concatenate(col_values))
    all_flat, all_start, all_depth, bad = d.stack_frames()
    picked = np.array(row_stacks, np.int64)
    if picked.size and (picked.min() < 0 or picked.max() >= all_depth.size):
        wrong = int(picked[(picked < 0) | (picked >= all_depth.size)][0])
        raise Unreadable(f"stack index {wrong} is outside stack_table ({all_depth.size} entries)")
    broken = sorted(set(row_stacks) & bad.keys())
    if broken:
        raise Unreadable(f"stack {broken[0]}: {bad[broken[0]]}")
    depths = all_depth[picked]
    frame_pos = np.arange(int(depths.sum())) - np.repeat(np.cumsum(depths) - depths, depths)
    flat = all_flat[np.repeat(all_start[picked], depths) + frame_pos]
    # Frame ids are the request's; this table keeps only the frames its stacks use, renumbered.
    used = np.flatnonzero(np.bincount(flat, minlength=len(d.frames)))
    renumber = np.zeros(len(d.frames), dtype=np.int64)
    renumber[used] = np.arange(used.size)
    first = group[0][1]
    table = ProfileTable(
        sample_types=tuple(_value_type(d, p.sample_type) for _, p in group),
        frames=list(map(d.frames.__getitem__, used.tolist())), stacks=Stacks(renumber[flat], depths),
        values=values, labels=labels,
        period_type=_value_type(d, first.period_type) if first.HasField("period_type") else None,
        period=first.period, time_nanos=first.time_unix_nano, duration_nanos=first.duration_nano)
    series = {label_name(k): v for k, v in map(d.attribute, first.attribute_indices)}
    return as_cpu_columns(table), series


def _resource_labels(d: Dictionary, attributes) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out = {}
    for kv in attributes:
        key = kv.key or (d.string(kv.key_strindex, "resource attribute key") if kv.key_strindex else "")
        if key:
            out[RESOURCE_LABELS.get(key) or label_name(key)] = d.value(kv.value)
    return out


def convert(req: svc.ExportProfilesServiceRequest, raw: bytes | None = None) -> Converted:
    """Every readable Profile group as a Batch; unreadable Profiles counted and explained.
    `raw`: the protobuf bytes `req` was parsed from, when it was, for the fast column reader."""
    out = Converted()
    cols = otlp_columns.read(req, raw)
    d = Dictionary(req.dictionary, cols)
    samples = _Samples(cols)
    ordinal = 0
    if UnknownFieldSet(req) or UnknownFieldSet(req.dictionary):
        out.errors.append("the request has fields this server does not know" + OLD_LAYOUT_HINT)
    for rp in req.resource_profiles:
        try:
            resource = _resource_labels(d, rp.resource.attributes)
        except Unreadable as exc:
            n = sum(len(sp.profiles) for sp in rp.scope_profiles)
            out.rejected += n
            ordinal += n
            out.errors.append(f"resource: {exc}")
            continue
        for sp in rp.scope_profiles:
            profiles = list(enumerate(sp.profiles, ordinal))
            ordinal += len(profiles)
            for group in _groups(d, profiles, out):
                try:
                    table, own = _table(d, samples, group)
                except Unreadable as exc:
                    out.rejected += len(group)
                    out.errors.append(str(exc))
                    continue
                out.batches.append(Batch({**resource, **own}, table))
    return out
