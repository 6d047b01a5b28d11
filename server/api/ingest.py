"""`POST /api/v1/ingest`: pprof (gzipped or raw) or folded text, stored in one transaction.

`request_body` and `store_table` are the one ingest path the other protocols (server/api/pyroscope_push.py,
pyroscope_ingest.py, otlp.py) end in too: same caps, same validation, same storage and metrics.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from profiler.errors import ProfileError
from profiler.model import Profile, ProfileTable, Sample
from profiler.pprof import decode_table
from profiler.types import (
    CPU,
    NAME,
    OFFCPU,
    infer_profile_name,
    new_cpu_profile,
    new_offcpu_profile,
)
from server.api.common import ApiError, principal, requires, state
from server.ingest_limits import (
    gunzip_body,
    idempotency_key,
    read_body,
    scoped_key,
    series_labels,
    validate_table,
)
from server.storage import IngestRejected, IngestResult

bp = Blueprint("ingest", __name__, url_prefix="/api/v1")


INT64_MAX = (1 << 63) - 1


def folded_profile(text: str, args: dict[str, str], time_nanos: int = 0) -> Profile:
    """Folded text as a `type` (cpu at `sample_rate` Hz, or offcpu) profile taken at `time_nanos` (0: now)."""
    from profiler import folded

    ptype = args.get("type", CPU)
    if ptype not in (CPU, OFFCPU):
        raise ApiError(400, f"type={ptype!r}: folded ingest supports type=cpu or type=offcpu", "bad_params")
    try:
        parsed = folded.parse(text)
    except ProfileError as exc:
        raise ApiError(400, f"folded text has no usable line: {exc}", "bad_profile") from None
    now_ns = time_nanos or time.time_ns()
    if ptype == OFFCPU:
        out = new_offcpu_profile(time_nanos=now_ns)
        out.samples = [Sample(s.stack, (s.values[0],), s.labels) for s in parsed.profile.samples]
    else:
        try:
            rate = int(args.get("sample_rate", "19"))
        except ValueError:
            rate = 0
        if not 1 <= rate <= 100_000:
            raise ApiError(400, "sample_rate must be an integer in 1..100000 (Hz)", "bad_params")
        out = new_cpu_profile(rate, time_nanos=now_ns)
        out.samples = [Sample(s.stack, (s.values[0], s.values[0] * out.period), s.labels)
                       for s in parsed.profile.samples]
    if any(v > INT64_MAX for s in out.samples for v in s.values):  # found by bench/fuzz_inputs.py (was a 500)
        raise ApiError(400, "folded count too large: a stack's total (and, for cpu, total x period in ns) "
                       "must fit in 64 bits", "bad_profile")
    if parsed.bad_lines:
        out.counters["folded_bad_lines"] = len(parsed.bad_lines)
    return out


def request_body(cfg: dict) -> tuple[bytes, int]:  # type: ignore[type-arg]
    """(the request body inflated when gzipped (magic or Content-Encoding), its size as received), capped."""
    body = read_body(request.stream, request.content_length, cfg["MAX_BODY_BYTES"])
    gzipped = request.headers.get("Content-Encoding", "").lower() == "gzip"
    return inflate(body, cfg, cfg["MAX_DECOMPRESSED_BYTES"], gzipped), len(body)


def inflate(data: bytes, cfg: dict, limit: int, gzipped: bool = False) -> bytes:  # type: ignore[type-arg]
    """`data` inflated if it is gzip (or said to be), within `limit` decompressed bytes (413)."""
    if data[:2] == b"\x1f\x8b" or gzipped:
        return gunzip_body(data, {**cfg, "MAX_DECOMPRESSED_BYTES": limit})
    if len(data) > limit:
        raise ApiError(413, f"body exceeds the decompressed limit of {limit} bytes", "decompressed_too_large")
    return data


def profile_name(name: str, table: ProfileTable, where: str = "type") -> str:
    """The profile name a request gives (checked against the pprof for cpu/offcpu), "" to infer it."""
    if not name:
        return ""
    if not NAME.fullmatch(name):
        raise ApiError(400, f"{where}={name[:40]!r}: a profile name is 1-32 of a-z, 0-9 and _, starting with a "
                       "letter or _", "bad_params")
    if name in (CPU, OFFCPU) and infer_profile_name(table) != name:
        raise ApiError(400, f"{where}={name!r} but the pprof has no {name} sample type "
                       f"({', '.join(map(str, table.sample_types)) or 'none'})", "bad_profile")
    return name


def store_table(table: ProfileTable, labels: dict[str, str], key: str | None, compressed: int,
                repairs: dict[str, int] | None = None, name: str = "") -> tuple[IngestResult, dict[str, int]]:
    """Validate (unless `repairs` says it was) and store one profile as profile `name` ("" infers it from
    the sample types), committed on return; count it.

    Returns the result and the repairs validation made (names cut, characters replaced)."""
    st = state()
    if repairs is None:
        repairs = validate_table(table, st.config)
    try:
        result = st.storage.ingest(table, labels, scoped_key(key, principal().token_id), name=name)
    except IngestRejected as exc:
        raise ApiError(422, str(exc), "rejected") from None
    st.metrics.ingest_batches.labels(result.status).inc()
    if result.status == "stored":
        st.metrics.ingest_bytes.inc(compressed)
        st.metrics.ingest_samples.inc(result.samples)
        for what, count in repairs.items():
            st.metrics.ingest_repairs.labels(what).inc(count)
    return result, repairs


@bp.post("/ingest")
@requires("ingest")
def ingest() -> tuple[Response, int]:
    st = state()
    cfg = st.config
    started = time.perf_counter()
    try:
        key = idempotency_key(request.headers.get("Idempotency-Key"))
        labels = series_labels(request.args, cfg)
        body, compressed = request_body(cfg)
        mimetype = request.mimetype or ""
        name = ""
        if mimetype.startswith("text/"):
            table = ProfileTable.from_profile(folded_profile(body.decode("utf-8", "replace"), dict(request.args)))
        else:
            try:
                table = decode_table(body)
            except ProfileError as exc:
                raise ApiError(400, f"body is not a valid pprof profile: {exc}", "bad_profile") from None
            name = profile_name(request.args.get("type", ""), table)
        result, repairs = store_table(table, labels, key, compressed, name=name)
    except ApiError as exc:
        st.metrics.ingest_rejects.labels(exc.reason or "other").inc()
        st.metrics.ingest_protocol_requests.labels("native", "rejected").inc()
        raise
    st.metrics.ingest_seconds.observe(time.perf_counter() - started)
    st.metrics.ingest_protocol_requests.labels("native", result.status).inc()
    if result.status == "duplicate":
        return jsonify({"status": "duplicate"}), 200
    return jsonify({"status": "stored", "id": result.id, "samples": result.samples, "repaired": repairs}), 200
