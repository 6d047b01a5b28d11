"""`POST /ingest?name=app.cpu{k=v}&from=&until=&format=...`: Pyroscope's legacy ingest, as older agents send it.

Formats: `folded` (default) and `lines` as text, `pprof` raw or as `multipart/form-data` (parts
`profile` and optional `sample_type_config`). `jfr`, `trie` and `tree` answer 415. Errors are the
native API's `{"error": ...}` with a precise 4xx; storage is the native ingest path.
"""

from __future__ import annotations

import io
import time

from flask import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import MultiPartParser

from profiler import folded
from profiler.errors import ProfileError
from profiler.model import ProfileTable, ValueType
from profiler.pprof import decode_table
from profiler.types import (
    CPU,
    CPU_NANOS,
    PYROSCOPE_SAMPLE_TYPES,
    as_cpu_columns,
    infer_profile_name,
    pyroscope_name,
)
from server.api.common import ApiError, authorize, state
from server.api.ingest import folded_profile, inflate, request_body, store_table
from server.ingest_limits import MAX_KEY_LEN, check_series_labels
from server.protocols import ProtocolError
from server.protocols.pyroscope import (
    CPU_SUFFIXES,
    LEGACY_UNITS,
    TENANT_LABEL,
    lines_to_folded,
    parse_legacy_name,
    parse_sample_type_config,
)

bp = Blueprint("pyroscope_ingest", __name__)
PROTOCOL = "pyroscope_ingest"
UNSUPPORTED = {"jfr": "JFR is not supported yet: send pprof (format=pprof) or use the push API",
               "trie": "the trie format is not supported: send folded, lines or pprof",
               "tree": "the tree format is not supported: send folded, lines or pprof"}
AGGREGATIONS = frozenset({"", "sum", "average"})


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"{name}={raw[:40]!r} is not an integer", "bad_params") from None


def _window() -> tuple[int, int]:
    """(time_nanos, duration_nanos) from `from`/`until` in Unix seconds (absent: now, no duration)."""
    now = int(time.time())
    start, until = _int_arg("from", now), _int_arg("until", 0)
    if until and until < start:
        raise ApiError(400, f"until={until} is before from={start}", "bad_params")
    return start * 1_000_000_000, (until - start) * 1_000_000_000 if until else 0


def _text_table(text: str, fmt: str, suffix: str) -> ProfileTable:
    if fmt == "lines":
        text = lines_to_folded(text)
    t0, duration = _window()
    units = request.args.get("units", "")
    if units and units not in LEGACY_UNITS:
        raise ApiError(400, f"units={units[:40]!r}: expected one of {', '.join(sorted(LEGACY_UNITS))}", "bad_params")
    if suffix in CPU_SUFFIXES and units in ("", "samples"):
        rate = request.args.get("sampleRate", "100")
        profile = folded_profile(text, {"type": CPU, "sample_rate": rate}, t0)
    else:
        vt = ValueType(PYROSCOPE_SAMPLE_TYPES.get(suffix, suffix) or "samples", LEGACY_UNITS.get(units, "count"))
        try:
            profile = folded.parse(text, vt).profile
        except ProfileError as exc:
            raise ApiError(400, f"{fmt} text has no usable line: {exc}", "bad_profile") from None
        profile.time_nanos = t0
    profile.duration_nanos = duration
    return ProfileTable.from_profile(profile)


def _pprof_bytes(body: bytes, limit: int) -> bytes:
    """The pprof of a raw body, or of the `profile` part of a multipart form (its config checked)."""
    if request.mimetype != "multipart/form-data":
        return body
    boundary = request.mimetype_params.get("boundary", "")
    if not boundary:
        raise ApiError(400, "multipart/form-data without a boundary parameter", "bad_request")
    try:
        form, files = MultiPartParser(max_form_memory_size=limit, max_form_parts=8).parse(
            io.BytesIO(body), boundary.encode("latin-1", "replace"), len(body))
    except RequestEntityTooLarge:
        raise ApiError(413, "a multipart form field exceeds the decompressed limit", "decompressed_too_large") from None
    except ValueError as exc:
        raise ApiError(400, f"malformed multipart body: {exc}", "bad_request") from None
    part = files.get("profile")
    data = part.read() if part is not None else form.get("profile", "").encode()
    if not data:
        raise ApiError(400, "multipart body has no `profile` part", "bad_request")
    if "prev_profile" in files or "prev_profile" in form:
        raise ApiError(415, "a `prev_profile` part (cumulative delta) is not supported: send delta profiles, or "
                       "use the push API", "bad_content_type")
    config = files.get("sample_type_config")
    text = config.read().decode("utf-8", "replace") if config is not None else form.get("sample_type_config")
    if text:
        try:
            parse_sample_type_config(text)
        except ProtocolError as exc:
            raise ApiError(400, str(exc), "bad_request") from None
    return data


@bp.post("/ingest")
def ingest() -> tuple[Response, int]:
    st = state()
    cfg = st.config
    try:
        authorize("ingest")
        try:
            name = parse_legacy_name(request.args.get("name", ""))
        except ProtocolError as exc:
            raise ApiError(400, str(exc), "bad_params") from None
        fmt = request.args.get("format", "") or ("pprof" if request.mimetype == "multipart/form-data" else "folded")
        if fmt in UNSUPPORTED:
            raise ApiError(415, f"format={fmt}: {UNSUPPORTED[fmt]}", "bad_content_type")
        if fmt not in ("folded", "lines", "pprof"):
            raise ApiError(400, f"format={fmt[:40]!r}: expected folded, lines or pprof", "bad_params")
        if request.args.get("aggregationType", "") not in AGGREGATIONS:
            raise ApiError(400, "aggregationType must be sum or average", "bad_params")
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= MAX_KEY_LEN:
            raise ApiError(400, f"Idempotency-Key must be 1..{MAX_KEY_LEN} characters", "bad_params")
        labels = {**name.labels, "service": name.service}
        tenant = request.headers.get("X-Scope-OrgID", "").strip()
        if tenant and labels.setdefault(TENANT_LABEL, tenant) != tenant:
            raise ApiError(400, "label `tenant` in name differs from the X-Scope-OrgID header", "bad_params")
        labels = check_series_labels(labels, cfg)
        body, compressed = request_body(cfg)
        if fmt == "pprof":
            data = inflate(_pprof_bytes(body, cfg["MAX_DECOMPRESSED_BYTES"]), cfg, cfg["MAX_DECOMPRESSED_BYTES"])
            try:
                table = as_cpu_columns(decode_table(data))
            except ProfileError as exc:
                raise ApiError(400, f"body is not a valid pprof profile: {exc}", "bad_profile") from None
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ApiError(400, f"{fmt} body is not valid UTF-8 (byte {exc.start})", "bad_profile") from None
            table = _text_table(text, fmt, name.suffix)
        ptype = infer_profile_name(table) if table.period_type == CPU_NANOS else pyroscope_name(name.suffix)
        result, _ = store_table(table, labels, key, compressed, name=ptype)
    except ApiError as exc:
        st.metrics.ingest_rejects.labels(exc.reason or "other").inc()
        st.metrics.ingest_protocol_requests.labels(PROTOCOL, "rejected").inc()
        raise
    st.metrics.ingest_protocol_requests.labels(PROTOCOL, result.status).inc()
    return Response(b"", 200), 200
