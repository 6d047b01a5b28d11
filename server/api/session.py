"""Browser login: exchange a read token for an HttpOnly, SameSite=Strict session cookie."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from server.api.common import SESSION_COOKIE, ApiError, check_token, principal, state
from server.scopes import SCOPES

bp = Blueprint("session", __name__, url_prefix="/api/v1")


@bp.get("/session")
def session_info() -> Response:
    st = state()
    try:
        who = principal()
    except ApiError:
        return jsonify({"authenticated": False, "auth_required": bool(st.config["AUTH"]), "scopes": []})
    return jsonify({"authenticated": True, "auth_required": bool(st.config["AUTH"]),
                    "scopes": sorted(who.scopes), "via": who.via})


@bp.post("/session")
def login() -> Response:
    st = state()
    body = request.get_json(silent=True)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ApiError(400, 'send JSON {"token": "<read token>"}')
    if not st.config["AUTH"]:
        return jsonify({"authenticated": True, "auth_required": False, "scopes": sorted(SCOPES),
                        "csrf_token": ""})
    who = check_token(token)
    if not who.allows("read"):
        raise ApiError(403, "this token lacks the `read` scope needed for the UI")
    cookie, csrf = st.auth.create_session(who)
    resp = jsonify({"authenticated": True, "auth_required": True, "scopes": sorted({"read"} | (who.scopes & {"admin"})),
                    "csrf_token": csrf})
    resp.set_cookie(SESSION_COOKIE, cookie, max_age=st.config["SESSION_TTL_S"], httponly=True, samesite="Strict",
                    secure=request.is_secure, path="/")
    return resp


@bp.delete("/session")
def logout() -> Response:
    st = state()
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        who = principal()  # checks the CSRF header for cookie-authenticated requests
        if who.via == "session":
            st.auth.delete_session(cookie)
    resp = jsonify({"authenticated": False, "auth_required": bool(st.config["AUTH"]), "scopes": []})
    resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
    return resp
