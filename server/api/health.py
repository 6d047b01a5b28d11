"""Liveness, readiness (database reachable) and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError

from server.api.common import ApiError, principal, state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    try:
        state().storage.ping()
    except (SQLAlchemyError, OSError) as exc:  # any driver error means "not ready"
        return jsonify({"status": "unavailable", "error": f"database unreachable: {type(exc).__name__}"}), 503
    return jsonify({"status": "ready"}), 200


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text; needs a read (or admin) token unless METRICS_PUBLIC is set."""
    st = state()
    if not st.config["METRICS_PUBLIC"] and not principal().allows("read"):
        raise ApiError(403, "/metrics needs a token with the `read` scope (or set METRICS_PUBLIC)")
    from server.scrape import metrics as scrape_metrics
    from server.scrape.runner import targets_health

    body = st.metrics.render() + scrape_metrics.render(targets_health(st.storage.engine))
    return Response(body, mimetype="text/plain; version=0.0.4")
