"""The browser UI: the `web/` folder served at `/ui/`, and `/` redirecting there."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, redirect, send_from_directory

from server.api.common import state

bp = Blueprint("ui", __name__)
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"


def web_dir() -> Path:
    configured = state().config.get("WEB_DIR")
    return Path(configured) if configured else DEFAULT_WEB_DIR


@bp.get("/")
def root() -> Response:
    return redirect("/ui/", code=302)  # type: ignore[return-value]


@bp.get("/ui")
def ui_slash() -> Response:
    return redirect("/ui/", code=301)  # type: ignore[return-value]


@bp.get("/ui/")
@bp.get("/ui/<path:path>")
def ui(path: str = "index.html") -> Response:
    folder = web_dir()
    if not (folder / "index.html").is_file():
        abort(404, description=f"the web UI is not installed ({folder}/index.html missing)")
    return send_from_directory(folder, path, max_age=0)
