"""`POST /v1development/profiles`: OTLP/HTTP profiles export (protobuf or JSON), as the OpenTelemetry
eBPF profiler and collector send it.

Answers `ExportProfilesServiceResponse` in the request's encoding, with `partial_success` naming the
Profiles it could not read and why; errors are a `google.rpc.Status` (`{"code", "message"}` in JSON)
with a precise 4xx. Every batch is validated before any is stored; storage is the native ingest path.
"""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, request
from google.protobuf import json_format
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as svc

from server.api.common import ApiError, authorize, state
from server.api.ingest import request_body, store_table
from server.ingest_limits import check_series_labels, validate_table
from server.protocols import ProtocolError
from server.protocols.otlp import convert, decode_request

bp = Blueprint("otlp", __name__)
PROTOCOL = "otlp"
CODECS = {"application/x-protobuf": "proto", "application/protobuf": "proto", "application/json": "json"}
MIMETYPES = {"proto": "application/x-protobuf", "json": "application/json"}
# Our status -> google.rpc.Code carried in the Status body.
GRPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 415: 3, 422: 3, 503: 14}
MAX_ERRORS_SHOWN = 5


def _codec() -> str:
    return CODECS.get(request.mimetype or "", "")


def _status_body(code: int, message: str, codec: str) -> bytes:
    if codec == "proto":  # google.rpc.Status {int32 code = 1; string message = 2}: two fields, by hand
        text = message.encode()
        return bytes([0x08, code]) + b"\x12" + _varint(len(text)) + text
    return json.dumps({"code": code, "message": message}).encode()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@bp.errorhandler(ApiError)
def _otlp_error(exc: ApiError) -> tuple[Response, int]:
    st = state()
    st.metrics.ingest_rejects.labels(exc.reason or "other").inc()
    st.metrics.ingest_protocol_requests.labels(PROTOCOL, "rejected").inc()
    codec = _codec() or "json"
    resp = Response(_status_body(GRPC_CODE.get(exc.status, 13), exc.message, codec), exc.status,
                    mimetype=MIMETYPES[codec])
    if exc.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="hotpath", Basic realm="hotpath"'
    return resp, exc.status


@bp.post("/v1development/profiles")
def export() -> tuple[Response, int]:
    started = time.perf_counter()
    authorize("ingest")
    st = state()
    cfg = st.config
    codec = _codec()
    if not codec:
        raise ApiError(415, f"Content-Type {request.mimetype or '(none)'!r} is not supported: send "
                       "application/x-protobuf or application/json", "bad_content_type")
    body, compressed = request_body(cfg)
    try:
        converted = convert(decode_request(body, codec), body if codec == "proto" else None)
    except ProtocolError as exc:
        raise ApiError(400, str(exc), "bad_request") from None
    ready = []
    for batch in converted.batches:
        labels = check_series_labels(batch.labels, cfg)
        ready.append((batch.table, labels, validate_table(batch.table, cfg)))
    outcome = "duplicate" if ready else "empty"
    for table, labels, repairs in ready:
        store_table(table, labels, None, compressed // len(ready), repairs)
        outcome = "stored"
    resp = svc.ExportProfilesServiceResponse()
    if converted.rejected or converted.errors:
        outcome = "partial"
        shown = converted.errors[:MAX_ERRORS_SHOWN]
        more = len(converted.errors) - len(shown)
        resp.partial_success.rejected_profiles = converted.rejected
        resp.partial_success.error_message = "; ".join(shown) + (f"; and {more} more" if more else "")
    st.metrics.ingest_seconds.observe(time.perf_counter() - started)
    st.metrics.ingest_protocol_requests.labels(PROTOCOL, outcome).inc()
    data = resp.SerializeToString() if codec == "proto" else json_format.MessageToJson(resp, indent=None).encode()
    return Response(data, 200, mimetype=MIMETYPES[codec]), 200
