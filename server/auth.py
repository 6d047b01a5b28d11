"""Tokens and browser sessions: high-entropy secrets stored only as SHA-256 hashes.

A token is shown once at creation; the database keeps its hash, so a leaked database does not
leak credentials. Browser sessions are opaque random cookie values (hashed likewise) with a CSRF
token that cookie-authenticated state-changing requests must echo in `X-Hotpath-CSRF`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update

from server import db
from server.models import sessions, tokens

SCOPES = ("ingest", "read", "admin")
TOKEN_PREFIX = "hp_"
_CACHE_S = 30.0


class AuthError(ValueError):
    """Bad token request (unknown scope, ...)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: scopes, and how they proved it ("token", "session" or "none")."""

    scopes: frozenset[str]
    via: str
    token_id: int | None = None
    csrf_hash: str = ""

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def parse_scopes(text: str | list[str]) -> list[str]:
    items = text if isinstance(text, list) else text.replace(",", " ").split()
    scopes = sorted({s.strip() for s in items if s.strip()})
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise AuthError(f"unknown scope {', '.join(bad) or '(none)'}: expected one or more of {', '.join(SCOPES)}")
    return scopes


def create_token(engine: Engine, scopes: list[str], name: str = "") -> str:
    """Create a token, store its hash, and return the token (the only time it is visible)."""
    scopes = parse_scopes(scopes)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.write(engine) as conn:
        conn.execute(insert(tokens), {"name": name or ",".join(scopes), "token_hash": hash_secret(token),
                                      "scopes": ",".join(scopes), "created_at": int(time.time()), "revoked": False})
    return token


def revoke_token(engine: Engine, token: str) -> bool:
    with db.write(engine) as conn:
        res = conn.execute(update(tokens).where(tokens.c.token_hash == hash_secret(token)).values(revoked=True)
                           .returning(tokens.c.id))
        return res.first() is not None


class Authenticator:
    """Looks up tokens and sessions, with a short positive cache (ingest must not pay a query each)."""

    def __init__(self, engine: Engine, session_ttl_s: int = 12 * 3600) -> None:
        self.engine = engine
        self.session_ttl_s = session_ttl_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def from_token(self, token: str) -> Principal | None:
        digest = hash_secret(token)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit and hit[0] > now:
            return hit[1]
        with db.read(self.engine) as conn:
            row = conn.execute(select(tokens.c.id, tokens.c.scopes).where(
                tokens.c.token_hash == digest, tokens.c.revoked.is_(False))).first()
        if row is None:
            return None
        principal = Principal(frozenset(row.scopes.split(",")), "token", int(row.id))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + _CACHE_S, principal)
        return principal

    def create_session(self, principal: Principal) -> tuple[str, str]:
        """(cookie value, csrf token) for a browser session carrying the principal's read scopes."""
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        scopes = sorted(s for s in principal.scopes if s in ("read", "admin")) or ["read"]
        now = int(time.time())
        with db.write(self.engine) as conn:
            conn.execute(delete(sessions).where(sessions.c.expires_at < now))
            conn.execute(insert(sessions), {"id_hash": hash_secret(cookie), "token_id": principal.token_id,
                                            "scopes": ",".join(scopes), "csrf_hash": hash_secret(csrf),
                                            "created_at": now, "expires_at": now + self.session_ttl_s})
        return cookie, csrf

    def from_session(self, cookie: str) -> Principal | None:
        with db.read(self.engine) as conn:
            row = conn.execute(select(sessions).where(sessions.c.id_hash == hash_secret(cookie),
                                                      sessions.c.expires_at > int(time.time()))).first()
        if row is None:
            return None
        return Principal(frozenset(row.scopes.split(",")), "session", row.token_id, row.csrf_hash)

    def delete_session(self, cookie: str) -> None:
        with db.write(self.engine) as conn:
            conn.execute(delete(sessions).where(sessions.c.id_hash == hash_secret(cookie)))

    @staticmethod
    def csrf_ok(principal: Principal, header: str | None) -> bool:
        return bool(header) and hmac.compare_digest(principal.csrf_hash, hash_secret(header or ""))
