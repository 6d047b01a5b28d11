"""Ingest guards: capped body reads, capped streaming decompression, and profile validation.

Every refusal is an `ApiError` with a precise message and a `reason` used as a metrics label.
A gzip bomb is stopped after at most `max_out` + one chunk of output: nothing is inflated whole.
"""

from __future__ import annotations

import operator
import re
import zlib
from collections.abc import Mapping
from typing import IO, Any

from profiler.model import Frame, ProfileTable
from server.api.common import ApiError

LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
RESERVED_PARAMS = frozenset({"type", "sample_rate", "name", "format"})
_CHUNK = 64 * 1024
_FUNCTION = operator.attrgetter("function")
_BINARY = operator.attrgetter("binary")


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


def gunzip_capped(data: bytes, limit: int) -> bytes:
    """Inflate gzip (all members) into at most `limit` bytes, else 413; corrupt data is a 400."""
    out: list[bytes] = []
    total = 0
    rest = data
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = rest
        try:
            while pending:
                piece = inflater.decompress(pending, _CHUNK)
                total += len(piece)
                if total > limit:
                    raise ApiError(413, f"decompressed body exceeds the limit of {limit} bytes", "decompressed_too_large")
                out.append(piece)
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
            while not inflater.eof:
                piece = inflater.decompress(b"", _CHUNK)
                if not piece:
                    break
                total += len(piece)
                if total > limit:
                    raise ApiError(413, f"decompressed body exceeds the limit of {limit} bytes", "decompressed_too_large")
                out.append(piece)
        except zlib.error as exc:
            raise ApiError(400, f"body is not valid gzip: {exc}", "bad_gzip") from None
        if not inflater.eof:
            raise ApiError(400, "body is truncated gzip (stream ends before its end marker)", "bad_gzip")
        rest = inflater.unused_data
        if rest and rest[:2] != b"\x1f\x8b":
            break  # trailing garbage after the last member is ignored, as gzip(1) does
    return b"".join(out)


def check_label(name: str, value: str, config: Mapping[str, Any], where: str) -> None:
    if len(name) > config["MAX_LABEL_NAME_LEN"]:
        raise ApiError(400, f"{where} label name of {len(name)} characters exceeds {config['MAX_LABEL_NAME_LEN']}",
                       "label_too_long")
    if not LABEL_NAME.match(name):
        raise ApiError(400, f"{where} label name {name[:64]!r} is invalid: use [A-Za-z_][A-Za-z0-9_.]*", "bad_label")
    if len(value) > config["MAX_LABEL_VALUE_LEN"]:
        raise ApiError(400, f"{where} label {name!r} value of {len(value)} characters exceeds "
                       f"{config['MAX_LABEL_VALUE_LEN']}", "label_too_long")
    if "\x00" in value or not _utf8_ok(value):
        raise ApiError(400, f"{where} label {name!r} value is not valid UTF-8 text", "bad_label")


def series_labels(args: Mapping[str, str], config: Mapping[str, Any]) -> dict[str, str]:
    labels = {k: v for k, v in args.items() if k not in RESERVED_PARAMS}
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


def validate_table(table: ProfileTable, config: Mapping[str, Any]) -> None:
    """Enforce per-profile limits; replace unstorable characters in frames (counted).

    Work is per distinct frame and per distinct label set, never per frame occurrence; the frame
    text check is one pass over all names joined, repairing frame by frame only when it fails.
    """
    n = len(table.stacks)
    if n > config["MAX_SAMPLES"]:
        raise ApiError(413, f"profile has {n} samples, over the limit of {config['MAX_SAMPLES']}", "too_many_samples")
    if not n:
        return
    width = len(table.sample_types)
    if table.values.shape != (n, width):
        raise ApiError(400, f"a sample's value count differs from the {width} sample types", "bad_profile")
    deepest = int(table.flat_stacks()[1].max())
    if deepest > config["MAX_STACK_DEPTH"]:
        raise ApiError(413, f"a stack of {deepest} frames exceeds the limit of {config['MAX_STACK_DEPTH']}",
                       "stack_too_deep")
    label_sets = set(table.labels)
    if len(label_sets) > config["MAX_DISTINCT_LABEL_SETS"]:
        raise ApiError(413, f"profile has {len(label_sets)} distinct per-sample label sets, over the limit of "
                       f"{config['MAX_DISTINCT_LABEL_SETS']}", "too_many_labels")
    max_labels = config["MAX_LABELS_PER_SAMPLE"]
    for labels in label_sets:
        if len(labels) > max_labels:
            raise ApiError(413, f"a sample has {len(labels)} labels, over the limit of {max_labels}",
                           "too_many_labels")
        for name, value in labels:
            check_label(name, value, config, "per-sample")
    frames = table.frames
    text = "".join(map(_FUNCTION, frames)) + "".join(map(_BINARY, frames))
    if "\x00" not in text and _utf8_ok(text):
        return
    bad = 0
    for i, f in enumerate(frames):
        if "\x00" in f.function or "\x00" in f.binary or not (_utf8_ok(f.function) and _utf8_ok(f.binary)):
            frames[i] = Frame(_clean(f.function), _clean(f.binary), f.kind, f.address, f.build_id, f.filename, f.line)
            bad += 1
    table.counters["invalid_utf8_frames"] = table.counters.get("invalid_utf8_frames", 0) + bad

