"""Ingest guards: capped body reads, capped decompression (profiler.gunzip), and profile validation.

Every refusal is an `ApiError` with a precise message and a `reason` used as a metrics label.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Mapping
from dataclasses import replace
from itertools import chain
from typing import IO, Any

from profiler.gunzip import GzipError, GzipTooLarge, gunzip
from profiler.model import Frame, Labels, ProfileTable
from profiler.selector import LABEL_NAME_CHARS
from server.api.common import ApiError
from server.models import sample_labels, series

LABEL_NAME = re.compile(f"^{LABEL_NAME_CHARS}$")  # the selector's rule (profiler/selector.py)
MAX_KEY_LEN = 256
RESERVED_PARAMS = frozenset({"type", "sample_rate", "name", "format"})
_CHUNK = 64 * 1024
_FUNCTION = operator.attrgetter("function")
_BINARY = operator.attrgetter("binary")
_FILENAME = operator.attrgetter("filename")
TRUNCATED = "…[truncated]"  # ends every name or label value cut at ingest
MAX_TYPE_LEN = series.c.profile_type.type.length  # a sample type can become the series' profile type
STORED_LABEL_VALUE_CHARS = sample_labels.c.value.type.length
# A per-sample label pair is a btree key of `sample_labels`: PostgreSQL refuses index rows over
# 2,704 bytes (1,024 four-byte characters is 4 KiB), so values are also cut to a byte length.
STORED_LABEL_VALUE_BYTES = 2048


def read_body(stream: IO[bytes], content_length: int | None, limit: int) -> bytes:
    """Read the request body, refusing (413) anything over `limit` bytes, declared or not."""
    if content_length is not None and content_length > limit:
        raise ApiError(413, f"request body of {content_length} bytes exceeds the limit of {limit} bytes",
                       "body_too_large")
    parts, total = [], 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
        if total > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes", "body_too_large")
    body = b"".join(parts)
    if not body:
        raise ApiError(400, "empty request body: send a pprof (gzipped or raw) or folded text", "empty")
    return body


def gunzip_body(body: bytes, config: Mapping[str, Any]) -> bytes:
    """Inflate a gzip request body within the configured caps (413), corrupt data being a 400."""
    try:
        return gunzip(body, config["MAX_DECOMPRESSED_BYTES"], config["MAX_GZIP_MEMBERS"])
    except GzipTooLarge as exc:
        raise ApiError(413, f"decompressed body refused: {exc}", "decompressed_too_large") from None
    except GzipError as exc:
        raise ApiError(400, f"body is not valid gzip: {exc}", "bad_gzip") from None


def idempotency_key(header: str | None) -> str | None:
    """An `Idempotency-Key` header's value, checked (400 when empty or too long)."""
    if header is not None and not 1 <= len(header) <= MAX_KEY_LEN:
        raise ApiError(400, f"Idempotency-Key must be 1..{MAX_KEY_LEN} characters", "bad_params")
    return header


def scoped_key(key: str | None, token_id: int | None) -> str | None:
    """The idempotency key as stored: scoped to the sending token, so one tenant's key can never
    mark another tenant's batch as a duplicate (hashed: it fits the key column)."""
    if key is None:
        return None
    scope = "-" if token_id is None else str(token_id)
    return hashlib.sha256(f"{scope}\0{key}".encode("utf-8", "surrogatepass")).hexdigest()


def check_label(name: str, value: str, config: Mapping[str, Any], where: str) -> None:
    if len(name) > config["MAX_LABEL_NAME_LEN"]:
        raise ApiError(400, f"{where} label name of {len(name)} characters exceeds {config['MAX_LABEL_NAME_LEN']}",
                       "label_too_long")
    if not LABEL_NAME.match(name):
        raise ApiError(400, f"{where} label name {name[:64]!r} is invalid: use {LABEL_NAME_CHARS}", "bad_label")
    if len(value) > config["MAX_LABEL_VALUE_LEN"]:
        raise ApiError(400, f"{where} label {name!r} value of {len(value)} characters exceeds "
                       f"{config['MAX_LABEL_VALUE_LEN']}", "label_too_long")
    if "\x00" in value or not _utf8_ok(value):
        raise ApiError(400, f"{where} label {name!r} value is not valid UTF-8 text", "bad_label")


def series_labels(args: Mapping[str, str], config: Mapping[str, Any]) -> dict[str, str]:
    return check_series_labels({k: v for k, v in args.items() if k not in RESERVED_PARAMS}, config)


def check_series_labels(labels: dict[str, str], config: Mapping[str, Any]) -> dict[str, str]:
    """`labels` if they fit the series limits (count, names, lengths, UTF-8); else a 4xx ApiError."""
    if len(labels) > config["MAX_SERIES_LABELS"]:
        raise ApiError(413, f"{len(labels)} series labels exceed the limit of {config['MAX_SERIES_LABELS']}",
                       "too_many_labels")
    for name, value in labels.items():
        check_label(name, value, config, "series")
    return labels


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean(text: str) -> str:
    """Text storable everywhere: lone surrogates and NULs replaced (counted by the caller)."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def truncate(text: str, max_chars: int, max_bytes: int | None = None) -> str:
    """`text` cut to `max_chars` characters (and `max_bytes` UTF-8 bytes), ending in `TRUNCATED`."""
    if len(text) <= max_chars and (max_bytes is None or len(text) * 4 <= max_bytes
                                   or len(text.encode("utf-8", "surrogatepass")) <= max_bytes):
        return text
    keep = text[:max(max_chars - len(TRUNCATED), 0)]
    if max_bytes is not None:
        room = max_bytes - len(TRUNCATED.encode())
        keep = keep.encode("utf-8", "surrogatepass")[:max(room, 0)].decode("utf-8", "ignore")
    return keep + TRUNCATED


def check_profile_type(table: ProfileTable) -> None:
    """Type names become a `varchar(64)` series column and selector words: refuse longer ones (400)."""
    names = [table.default_sample_type] + [t for vt in table.sample_types for t in (vt.type, vt.unit)]
    longest = max(names, key=len)
    if len(longest) > MAX_TYPE_LEN:
        raise ApiError(400, f"sample type, unit or default type {longest[:64]!r}... of {len(longest)} characters "
                       f"exceeds {MAX_TYPE_LEN}", "bad_profile")


def validate_table(table: ProfileTable, config: Mapping[str, Any]) -> dict[str, int]:
    """Enforce per-profile limits; repair what can be stored with a visible mark, and count it.

    Refused (4xx): too many samples, labels or frames per stack, bad label names, overlong type names.
    Repaired and counted in `table.counters`: unstorable characters in frames (`invalid_utf8_frames`),
    frame names over MAX_FRAME_NAME_LEN (`truncated_names`) and per-sample label values over
    MAX_LABEL_VALUE_LEN or the index's byte limit (`truncated_labels`), cut to end in `TRUNCATED`.
    Returns those repair counts (also added to `table.counters`, so queries report them).
    Work is per distinct frame and per distinct label set, never per frame occurrence.
    """
    n = len(table.stacks)
    if n > config["MAX_SAMPLES"]:
        raise ApiError(413, f"profile has {n} samples, over the limit of {config['MAX_SAMPLES']}", "too_many_samples")
    check_profile_type(table)
    if not n:
        return {}
    width = len(table.sample_types)
    if table.values.shape != (n, width):
        raise ApiError(400, f"a sample's value count differs from the {width} sample types", "bad_profile")
    deepest = int(table.flat_stacks()[1].max())
    if deepest > config["MAX_STACK_DEPTH"]:
        raise ApiError(413, f"a stack of {deepest} frames exceeds the limit of {config['MAX_STACK_DEPTH']}",
                       "stack_too_deep")
    repairs = {"truncated_labels": _check_sample_labels(table, config), **_repair_frames(table, config)}
    repairs = {k: v for k, v in repairs.items() if v}
    for key, count in repairs.items():
        table.counters[key] = table.counters.get(key, 0) + count
    return repairs


def _check_sample_labels(table: ProfileTable, config: Mapping[str, Any]) -> int:
    """Refuse too many labels or bad names; cut long values. Returns how many values were cut."""
    label_sets = set(table.labels)
    if len(label_sets) > config["MAX_DISTINCT_LABEL_SETS"]:
        raise ApiError(413, f"profile has {len(label_sets)} distinct per-sample label sets, over the limit of "
                       f"{config['MAX_DISTINCT_LABEL_SETS']}", "too_many_labels")
    max_labels = config["MAX_LABELS_PER_SAMPLE"]
    max_chars = min(config["MAX_LABEL_VALUE_LEN"], STORED_LABEL_VALUE_CHARS)
    renamed: dict[Labels, Labels] = {}
    cut = 0
    for labels in label_sets:
        if len(labels) > max_labels:
            raise ApiError(413, f"a sample has {len(labels)} labels, over the limit of {max_labels}",
                           "too_many_labels")
        fixed = tuple((name, truncate(value, max_chars, STORED_LABEL_VALUE_BYTES)) for name, value in labels)
        for name, value in fixed:
            check_label(name, value, config, "per-sample")
        if fixed != labels:
            renamed[labels] = tuple(sorted(fixed))
            cut += sum(a[1] != b[1] for a, b in zip(fixed, labels))
    if renamed:
        table.labels = [renamed.get(ls, ls) for ls in table.labels]
    return cut


def _repair_frames(table: ProfileTable, config: Mapping[str, Any]) -> dict[str, int]:
    """Cut overlong names, replace unstorable characters; returns the counts of frames changed."""
    frames = table.frames
    cut = bad = 0
    limit = config["MAX_FRAME_NAME_LEN"]
    if max(map(len, chain(map(_FUNCTION, frames), map(_BINARY, frames), map(_FILENAME, frames))),
           default=0) > limit:
        for i, f in enumerate(frames):
            if len(f.function) > limit or len(f.binary) > limit or len(f.filename) > limit:
                frames[i] = replace(f, function=truncate(f.function, limit), binary=truncate(f.binary, limit),
                                    filename=truncate(f.filename, limit))
                cut += 1
    text = "".join(map(_FUNCTION, frames)) + "".join(map(_BINARY, frames))
    if "\x00" not in text and _utf8_ok(text):
        return {"truncated_names": cut}
    for i, f in enumerate(frames):
        if "\x00" in f.function or "\x00" in f.binary or not (_utf8_ok(f.function) and _utf8_ok(f.binary)):
            frames[i] = Frame(_clean(f.function), _clean(f.binary), f.kind, f.address, f.build_id, f.filename, f.line)
            bad += 1
    return {"truncated_names": cut, "invalid_utf8_frames": bad}
