"""Flask app factory: configuration, database check, storage, auth, blueprints, security headers."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, jsonify, request
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from server import db, heap, logs
from server.api.common import ApiError, State
from server.auth import Authenticator
from server.config import database_url, load_config
from server.metrics import Metrics
from server.ratelimit import FailureLimiter
from server.storage import Storage

log = logging.getLogger("hotpath.server")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults ← config file ← `HOTPATH_*` env ← `config` (nothing read at import)."""
    cfg = load_config(config)
    logs.setup(cfg["LOG_LEVEL"])
    app = Flask(__name__, static_folder=None)
    app.config.update({k: v for k, v in cfg.items()})
    app.config["MAX_CONTENT_LENGTH"] = None  # our own limits answer with precise messages
    url = database_url(cfg)
    if cfg["AUTO_UPGRADE"]:
        db.upgrade(url)
    engine = db.make_engine(url, pool_size=cfg["POOL_SIZE"])
    db.check_schema(engine)
    storage = Storage(engine, retention_days=cfg["RETENTION_DAYS"], rollup_grace_s=cfg["ROLLUP_GRACE_S"],
                      cache_entries=cfg["DICT_CACHE_ENTRIES"])
    auth = Authenticator(engine, cfg["SESSION_TTL_S"], cache_s=cfg["AUTH_CACHE_S"],
                         max_sessions=cfg["MAX_SESSIONS_PER_TOKEN"])
    app.extensions["hotpath"] = State(storage, auth, Metrics(engine), cfg, FailureLimiter(cfg["LOGIN_FAILURES_PER_MIN"]))
    _register(app)
    if cfg["MAINTENANCE_INTERVAL_S"] > 0 and not cfg.get("TESTING"):
        start_maintenance(storage, cfg["MAINTENANCE_INTERVAL_S"], cfg["PARTITION_AHEAD_DAYS"])
    return app


def _register(app: Flask) -> None:
    from server.api import (
        health,
        ingest,
        labels,
        otlp,
        pyroscope_ingest,
        pyroscope_push,
        query,
        session,
        targets,
        ui,
    )

    for module in (health, ingest, labels, query, session, ui, pyroscope_push, pyroscope_ingest, otlp, targets):
        app.register_blueprint(module.bp)
    gc_policy = heap.GcPolicy()

    @app.before_request
    def _request_id() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else f"{random.getrandbits(64):016x}"
        g.started = time.perf_counter()

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["X-Request-Id"] = g.get("request_id", "")
        if request.path.startswith("/api/"):
            resp.headers["Cache-Control"] = "no-store"
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        st: State = app.extensions["hotpath"]
        st.metrics.requests.labels(endpoint, str(resp.status_code)).inc()
        log.info("request", extra={"method": request.method, "path": request.path, "status": resp.status_code,
                                   "ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2)})
        if gc_policy.is_due():
            resp.call_on_close(gc_policy.run)  # after the response is sent: no request waits for it
        return resp

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int]:
        body: dict[str, Any] = {"error": exc.message}
        if exc.reason:
            body["reason"] = exc.reason
        resp = jsonify(body)
        resp.headers.update(exc.headers)
        if exc.status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="hotpath"'
        return resp, exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": exc.description or exc.name}), exc.code or 500

    @app.errorhandler(DBAPIError)
    def _database_error(exc: DBAPIError) -> tuple[Response, int]:
        # A value the database cannot hold is the request's fault: a 4xx, which clients do not
        # retry (a 500 is retried for ever); anything else stays a server fault.
        message = db.bad_value_message(exc)
        if message is None:
            return _unexpected(exc)
        log.warning("database refused a value", extra={"path": request.path, "error": message})
        return jsonify({"error": f"a value in the request cannot be stored or compared: {message}"}), 400

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error", extra={"path": request.path})
        return jsonify({"error": f"internal error ({type(exc).__name__}); request id {g.get('request_id', '')}"}), 500


def start_maintenance(storage: Storage, interval_s: int, ahead_days: int) -> threading.Thread:
    """Background thread: partitions ahead, rollups, retention. Safe with several workers (idempotent)."""

    def loop() -> None:
        while True:
            try:
                result = storage.maintain(ahead_days=ahead_days)
                if result["rolled_buckets"] or result["dropped"]:
                    log.info("maintenance", extra=result)
            except Exception:  # keep the thread alive; the next round retries
                log.exception("maintenance failed")
            time.sleep(interval_s)

    thread = threading.Thread(target=loop, name="hotpath-maintenance", daemon=True)
    thread.start()
    return thread
