"""Profile types, label names and label values (for the UI's selector autocomplete)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from server.api.common import ApiError, requires, state
from server.api.query import range_args, selector_arg, timed
from server.ingest_limits import LABEL_NAME

bp = Blueprint("labels", __name__, url_prefix="/api/v1")


@bp.get("/profile-types")
@requires("read")
def profile_types() -> Response:
    return jsonify({"types": state().storage.profile_types()})


@bp.get("/labels")
@requires("read")
@timed("labels")
def labels() -> Response:
    t0, t1 = range_args()
    return jsonify({"labels": state().storage.label_names(t0, t1)})


@bp.get("/labels/<name>/values")
@requires("read")
@timed("label_values")
def label_values(name: str) -> Response:
    if not LABEL_NAME.match(name):
        raise ApiError(400, f"bad label name {name[:64]!r}")
    t0, t1 = range_args()
    selector = selector_arg("query", None) if request.args.get("query") else None
    return jsonify({"values": state().storage.label_values(name, t0, t1, selector)})
