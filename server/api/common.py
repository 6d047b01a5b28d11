"""What every blueprint shares: the app state, JSON errors, and the auth check."""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app, g, request

from server.auth import Authenticator, Principal
from server.metrics import Metrics
from server.ratelimit import FailureLimiter
from server.scopes import SCOPES
from server.storage import Storage

F = TypeVar("F", bound=Callable[..., Any])
SESSION_COOKIE = "hotpath_session"
CSRF_HEADER = "X-Hotpath-CSRF"
ALL_SCOPES = frozenset(SCOPES)


class ApiError(Exception):
    """An error answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, reason: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = headers or {}


@dataclass
class State:
    storage: Storage
    auth: Authenticator
    metrics: Metrics
    config: dict[str, Any]
    login_failures: FailureLimiter


def state() -> State:
    return current_app.extensions["hotpath"]


def principal() -> Principal:
    """The caller, or raise 401: Bearer token first, then the session cookie."""
    cached = g.get("principal")
    if cached is not None:
        return cached
    st = state()
    if not st.config["AUTH"]:
        g.principal = Principal(ALL_SCOPES, "none")
        return g.principal
    header = request.headers.get("Authorization", "")
    found: Principal | None = None
    if header:
        found = check_token(token_of(header))
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            found = st.auth.from_session(cookie)
            if found is None:
                raise ApiError(401, "session expired or logged out: log in again")
            if request.method not in ("GET", "HEAD", "OPTIONS") and not st.auth.csrf_ok(
                    found, request.headers.get(CSRF_HEADER)):
                raise ApiError(403, f"missing or wrong {CSRF_HEADER} header for a cookie-authenticated request")
    if found is None:
        raise ApiError(401, "authentication required: send `Authorization: Bearer <token>`")
    g.principal = found
    return found


def token_of(header: str) -> str:
    """The token in an Authorization header: `Bearer <token>`, or HTTP Basic with the token as password.

    Basic is what Pyroscope and Grafana clients send (`basic_auth_password`); the user name is ignored.
    """
    kind, _, cred = header.strip().partition(" ")
    cred = cred.strip()
    if kind.lower() == "bearer" and cred:
        return cred
    if kind.lower() == "basic" and cred:
        try:
            pair = base64.b64decode(cred, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "Basic credentials are not base64 of `user:password`") from None
        _, colon, password = pair.partition(":")
        if not colon or not password:
            raise ApiError(401, "Basic auth needs a token as its password (any user name)")
        return password
    raise ApiError(401, "Authorization header must be `Bearer <token>` or Basic with the token as password")


def authorize(scope: str) -> Principal:
    """The caller, who must hold `scope` (admin holds every scope): else 401 or 403."""
    who = principal()
    if not who.allows(scope):
        raise ApiError(403, f"this token lacks the `{scope}` scope (it has: {', '.join(sorted(who.scopes))})")
    return who


def check_token(token: str) -> Principal:
    """The token's principal, or 401; 429 while this client address has failed too often."""
    st = state()
    found = st.auth.cached(token)
    if found is not None:
        return found
    address = request.remote_addr or "-"
    wait = st.login_failures.retry_after(address)
    if wait:
        raise ApiError(429, f"too many failed token checks from {address}: retry in {wait:.0f} s", "rate_limited",
                       {"Retry-After": str(max(int(wait + 0.999), 1))})
    found = st.auth.from_token(token)
    if found is None:
        st.login_failures.failed(address)
        raise ApiError(401, "unknown or revoked token")
    return found


def requires(scope: str) -> Callable[[F], F]:
    """Decorator: the view needs a caller holding `scope` (admin holds every scope)."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            authorize(scope)
            return view(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
