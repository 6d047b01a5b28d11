"""`POST /push.v1.PusherService/Push`: Grafana Pyroscope's push API (Connect unary), as its SDKs send it.

Codecs `application/proto` and `application/json` (bytes as base64), gzipped or not. Every sample of
the request is decoded and validated before any is stored, so a bad sample stores nothing; each is
then stored through the native ingest path. Errors are Connect's: `{"code", "message"}` with the
HTTP status Connect maps that code to.
"""

from __future__ import annotations

import hashlib
import json
import time

from flask import Blueprint, Response, request

from profiler.errors import ProfileError
from profiler.model import ProfileTable
from profiler.pprof import decode_table
from profiler.types import CPU, as_cpu_columns, profile_type_of, pyroscope_name
from server.api.common import ApiError, authorize, state
from server.api.ingest import inflate, request_body, store_table
from server.ingest_limits import MAX_KEY_LEN, check_series_labels, validate_table
from server.protocols import ProtocolError
from server.protocols.pyroscope import decode_push

bp = Blueprint("pyroscope_push", __name__)
PROTOCOL = "pyroscope_push"
CODECS = {"application/proto": "proto", "application/json": "json"}
CPU_NAMES = frozenset({"process_cpu", "cpu"})
# Our status -> Connect code; Connect's own table then gives the HTTP status it is answered with.
CONNECT_CODE = {400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied", 404: "not_found",
                413: "resource_exhausted", 415: "unimplemented", 422: "invalid_argument", 503: "unavailable"}
CONNECT_STATUS = {"invalid_argument": 400, "unauthenticated": 401, "permission_denied": 403, "not_found": 404,
                  "resource_exhausted": 429, "unavailable": 503, "internal": 500}


def connect_error(exc: ApiError) -> tuple[Response, int]:
    code = CONNECT_CODE.get(exc.status, "internal")
    # An unsupported codec is the one error Connect answers with 415 itself.
    status = 415 if exc.status == 415 else CONNECT_STATUS.get(code, 500)
    resp = Response(json.dumps({"code": code, "message": exc.message}), status, mimetype="application/json")
    if exc.status == 401:
        resp.headers["WWW-Authenticate"] = 'Basic realm="hotpath", Bearer realm="hotpath"'
    return resp, status


@bp.errorhandler(ApiError)
def _connect_error(exc: ApiError) -> tuple[Response, int]:
    st = state()
    st.metrics.ingest_rejects.labels(exc.reason or "other").inc()
    st.metrics.ingest_protocol_requests.labels(PROTOCOL, "rejected").inc()
    return connect_error(exc)


def _codec() -> str:
    codec = CODECS.get(request.mimetype or "")
    if codec is None:
        raise ApiError(415, f"Content-Type {request.mimetype or '(none)'!r} is not supported: send "
                       "application/proto or application/json", "bad_content_type")
    return codec


def idempotency_key(sample_id: str, labels: dict[str, str]) -> str | None:
    """The sample's ID, scoped to its series (an SDK reusing an ID across series loses nothing)."""
    if not sample_id:
        return None
    scope = hashlib.blake2b(json.dumps(sorted(labels.items())).encode(), digest_size=8).hexdigest()
    key = f"pyroscope:{scope}:{sample_id}"
    if len(key) > MAX_KEY_LEN:
        raise ApiError(400, f"sample ID of {len(sample_id)} characters is too long (at most "
                       f"{MAX_KEY_LEN - len(key) + len(sample_id)})", "bad_params")
    return key


def decode_sample(data: bytes, name: str, where: str) -> ProfileTable:
    """One RawSample's (inflated) pprof as a table, `__name__` checked against its sample types."""
    if not data:
        raise ApiError(400, f"{where}: raw_profile is empty", "bad_profile")
    try:
        table = as_cpu_columns(decode_table(data))
    except ProfileError as exc:
        raise ApiError(400, f"{where}: raw_profile is not a valid pprof profile: {exc}", "bad_profile") from None
    if name in CPU_NAMES and profile_type_of(table) != CPU:
        raise ApiError(400, f"{where}: __name__={name!r} but the pprof has no cpu/nanoseconds sample type "
                       f"({', '.join(map(str, table.sample_types)) or 'none'})", "bad_profile")
    return table


@bp.post("/push.v1.PusherService/Push")
def push() -> tuple[Response, int]:
    started = time.perf_counter()
    authorize("ingest")
    st = state()
    cfg = st.config
    codec = _codec()
    body, compressed = request_body(cfg)
    try:
        series = decode_push(body, codec, request.headers.get("X-Scope-OrgID", "").strip())
    except ProtocolError as exc:
        raise ApiError(400, str(exc), "bad_request") from None
    budget = cfg["MAX_DECOMPRESSED_BYTES"] - len(body)
    ready: list[tuple[ProfileTable, dict[str, str], str | None, dict[str, int], str]] = []
    for i, one in enumerate(series):
        labels = check_series_labels(one.labels, cfg)
        for j, smp in enumerate(one.samples):
            # One decompressed budget for the whole request: many small gzip bombs are one big one.
            data = inflate(smp.raw_profile, cfg, budget)
            budget -= len(data)
            table = decode_sample(data, one.name, f"series {i} sample {j}")
            repairs = validate_table(table, cfg)
            ready.append((table, labels, idempotency_key(smp.id, labels), repairs, pyroscope_name(one.name)))
    outcome = "duplicate"
    for table, labels, key, repairs, name in ready:
        if store_table(table, labels, key, compressed // len(ready), repairs, name)[0].status == "stored":
            outcome = "stored"
    st.metrics.ingest_seconds.observe(time.perf_counter() - started)
    st.metrics.ingest_protocol_requests.labels(PROTOCOL, outcome if ready else "empty").inc()
    if codec == "json":
        return Response("{}", 200, mimetype="application/json"), 200
    return Response(b"", 200, mimetype="application/proto"), 200
