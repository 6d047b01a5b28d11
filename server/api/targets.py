"""`GET /api/v1/targets`: pull scraping's per-target health (server/scrape/)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from server.api.common import requires, state

bp = Blueprint("targets", __name__, url_prefix="/api/v1")


@bp.get("/targets")
@requires("read")
def targets() -> Response:
    from server.scrape.runner import targets_health

    return jsonify({"targets": targets_health(state().storage.engine)})
