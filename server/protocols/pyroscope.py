"""Grafana Pyroscope's ingest protocols, decoded: the push API's `PushRequest` and legacy `/ingest` names.

Pure functions; the HTTP edge is server/api/pyroscope.py. Label mapping (what a Pyroscope user
switching to Hotpath gets): `service_name` -> `service`, `__name__` (`process_cpu`, `memory`, ...)
names the profile kind and is not kept as a label (the type comes from the pprof's sample types, as
on `/api/v1/ingest`), every other label is a series label (dots in names become underscores:
`otel.scope.name` -> `otel_scope_name`); a tenant (`X-Scope-OrgID`) is the `tenant` label.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from server.protocols import ProtocolError, label_name
from server.protocols import pyroscope_push_pb2 as pb

SERVICE_LABEL = "service_name"
NAME_LABEL = "__name__"
TENANT_LABEL = "tenant"
# Legacy `name=app.<suffix>{...}`: the suffixes Pyroscope agents append; the rest is the service.
LEGACY_SUFFIXES = frozenset({"cpu", "itimer", "wall", "alloc_objects", "alloc_space", "inuse_objects",
                             "inuse_space", "goroutines", "mutex_count", "mutex_duration", "block_count",
                             "block_duration", "lock_count", "lock_duration", "alloc_in_new_tlab_objects",
                             "alloc_in_new_tlab_bytes"})
CPU_SUFFIXES = frozenset({"cpu", "itimer", ""})
# Legacy `units=` -> pprof unit of the single value column.
LEGACY_UNITS = {"samples": "count", "objects": "count", "goroutines": "count", "lock_samples": "count",
                "bytes": "bytes", "lock_nanoseconds": "nanoseconds", "nanoseconds": "nanoseconds"}


@dataclass(frozen=True, slots=True)
class PushSample:
    raw_profile: bytes  # pprof, gzipped or raw
    id: str


@dataclass(frozen=True, slots=True)
class PushSeries:
    labels: dict[str, str]  # Hotpath series labels, mapped
    name: str  # the `__name__` label ("process_cpu", "memory", ...), "" when absent
    samples: list[PushSample]


def decode_push(body: bytes, codec: str, tenant: str = "") -> list[PushSeries]:
    """A `PushRequest` in the `proto` or `json` (Connect: bytes as base64) codec, its labels mapped."""
    req = pb.PushRequest()
    if codec == "proto":
        try:
            req.ParseFromString(body)
        except DecodeError as exc:
            raise ProtocolError(f"body is not a valid push.v1.PushRequest (truncated or malformed protobuf: "
                                f"{exc})") from None
    else:
        try:
            json_format.Parse(body.decode("utf-8"), req, ignore_unknown_fields=True)
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"JSON body is not valid UTF-8 (byte {exc.start})") from None
        except json_format.ParseError as exc:
            raise ProtocolError(f"body is not a valid push.v1.PushRequest in JSON: {exc}") from None
    out = []
    for i, series in enumerate(req.series):
        labels, name = map_labels([(lp.name, lp.value) for lp in series.labels], tenant, f"series {i}")
        out.append(PushSeries(labels, name, [PushSample(s.raw_profile, s.ID) for s in series.samples]))
    return out


def map_labels(pairs: list[tuple[str, str]], tenant: str = "", where: str = "series") -> tuple[dict[str, str], str]:
    """Pyroscope label pairs -> (Hotpath series labels, `__name__`). Duplicate names are an error."""
    labels: dict[str, str] = {}
    name = ""
    seen: set[str] = set()
    for key, value in pairs:
        if key in seen:
            raise ProtocolError(f"{where}: label {key[:64]!r} appears twice")
        seen.add(key)
        if key == NAME_LABEL:
            name = value
        else:
            labels["service" if key == SERVICE_LABEL else label_name(key)] = value
    if SERVICE_LABEL in seen and "service" in seen:
        raise ProtocolError(f"{where}: both `service` and `service_name` labels are set")
    if tenant:
        if TENANT_LABEL in labels and labels[TENANT_LABEL] != tenant:
            raise ProtocolError(f"{where}: label `tenant` differs from the X-Scope-OrgID header")
        labels[TENANT_LABEL] = tenant
    return labels, name


@dataclass(frozen=True, slots=True)
class LegacyName:
    service: str
    suffix: str  # "cpu", "alloc_objects", ... or "" when the name has no known suffix
    labels: dict[str, str]


def parse_legacy_name(text: str) -> LegacyName:
    """`app.cpu{k=v,k2=v2}` (Pyroscope's segment key) -> service "app", suffix "cpu", labels."""
    if not text:
        raise ProtocolError("query parameter `name` is required, e.g. name=myapp.cpu{env=prod}")
    app, brace, rest = text.partition("{")
    labels: dict[str, str] = {}
    if brace:
        if not rest.endswith("}"):
            raise ProtocolError(f"name {text[:80]!r}: labels must be enclosed in {{...}}")
        for item in filter(None, (p.strip() for p in rest[:-1].split(","))):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not key:
                raise ProtocolError(f"name {text[:80]!r}: {item[:64]!r} is not a key=value label")
            if key in labels:
                raise ProtocolError(f"name {text[:80]!r}: label {key!r} appears twice")
            labels[label_name(key)] = value.strip()
    app = app.strip()
    base, dot, last = app.rpartition(".")
    suffix = last if dot and last in LEGACY_SUFFIXES else ""
    service = base if suffix else app
    if not service:
        raise ProtocolError(f"name {text[:80]!r} has no application name")
    labels.pop(NAME_LABEL, None)
    if SERVICE_LABEL in labels:
        labels.pop(SERVICE_LABEL)
    return LegacyName(service, suffix, labels)


def lines_to_folded(text: str) -> str:
    """Pyroscope's `lines` format (one stack a line, `a;b;c`, each line one sample) as folded text."""
    counts = Counter(line.strip() for line in text.splitlines() if line.strip())
    return "".join(f"{stack} {n}\n" for stack, n in counts.items())


def parse_sample_type_config(text: str) -> dict[str, dict[str, object]]:
    """The multipart `sample_type_config` part: `{type: {units, aggregation, display-name, sampled, ...}}`."""
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"sample_type_config is not JSON: {exc}") from None
    if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
        raise ProtocolError("sample_type_config must be a JSON object of {sample type: {units, aggregation, ...}}")
    return config
