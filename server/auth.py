"""Tokens and browser sessions: high-entropy secrets stored only as SHA-256 hashes.

A token is shown once at creation; the database keeps its hash, so a leaked database does not
leak credentials. Browser sessions are opaque random cookie values (hashed likewise) with a CSRF
token that cookie-authenticated state-changing requests must echo in `X-Hotpath-CSRF`.

Revocation bound: a revoked token's sessions stop at once (revoking deletes them, and every session
lookup joins its token); the token itself stops within `cache_s` (AUTH_CACHE_S, 5 s), the life of
the per-worker positive cache that spares ingest a query per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, insert, select, update

from server import db
from server.models import sessions, tokens
from server.scopes import SCOPES

TOKEN_PREFIX = "hp_"


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


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What `hotpath token list` shows: never the secret, nor its hash."""

    id: int
    name: str
    scopes: str
    created_at: int
    revoked: bool
    sessions: int  # live browser sessions made from it


def list_tokens(engine: Engine) -> list[TokenInfo]:
    live = (select(sessions.c.token_id, func.count().label("n")).where(sessions.c.expires_at > int(time.time()))
            .group_by(sessions.c.token_id).subquery())
    with db.read(engine) as conn:
        rows = conn.execute(select(tokens.c.id, tokens.c.name, tokens.c.scopes, tokens.c.created_at,
                                   tokens.c.revoked, func.coalesce(live.c.n, 0))
                            .outerjoin(live, live.c.token_id == tokens.c.id).order_by(tokens.c.id)).all()
    return [TokenInfo(int(r[0]), r[1], r[2], int(r[3]), bool(r[4]), int(r[5])) for r in rows]


def revoke(engine: Engine, ident: str) -> TokenInfo:
    """Revoke the token with id `ident` (all digits) or the one named `ident`; delete its sessions."""
    matches = [t for t in list_tokens(engine) if (str(t.id) == ident if ident.isdigit() else t.name == ident)]
    if not matches:
        raise AuthError(f"no token with {'id' if ident.isdigit() else 'name'} {ident!r} (see `hotpath token list`)")
    if len(matches) > 1:
        ids = ", ".join(str(t.id) for t in matches)
        raise AuthError(f"{len(matches)} tokens are named {ident!r} (ids {ids}): revoke one by id")
    token_id = matches[0].id
    with db.write(engine) as conn:
        conn.execute(update(tokens).where(tokens.c.id == token_id).values(revoked=True))
        conn.execute(delete(sessions).where(sessions.c.token_id == token_id))
    return TokenInfo(token_id, matches[0].name, matches[0].scopes, matches[0].created_at, True, 0)


def revoke_token(engine: Engine, token: str) -> bool:
    """Revoke by the secret itself (and delete its sessions); False when no such token exists."""
    with db.write(engine) as conn:
        row = conn.execute(update(tokens).where(tokens.c.token_hash == hash_secret(token)).values(revoked=True)
                           .returning(tokens.c.id)).first()
        if row is not None:
            conn.execute(delete(sessions).where(sessions.c.token_id == row[0]))
        return row is not None


class Authenticator:
    """Looks up tokens and sessions, with a short positive cache (ingest must not pay a query each)."""

    def __init__(self, engine: Engine, session_ttl_s: int = 12 * 3600, cache_s: float = 5.0,
                 max_sessions: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.session_ttl_s = session_ttl_s
        self.cache_s = cache_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        """The token's principal if this worker checked it within `cache_s` (no database query)."""
        hit = self._cache.get(hash_secret(token))
        return hit[1] if hit and hit[0] > self.clock() else None

    def from_token(self, token: str) -> Principal | None:
        digest = hash_secret(token)
        now = self.clock()
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
            self._cache[digest] = (now + self.cache_s, principal)
        return principal

    def create_session(self, principal: Principal) -> tuple[str, str]:
        """(cookie value, csrf token) for a browser session carrying the principal's read scopes.

        A token keeps at most `max_sessions` sessions: a new login ends its oldest ones.
        """
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        scopes = sorted(s for s in principal.scopes if s in ("read", "admin")) or ["read"]
        now = int(time.time())
        with db.write(self.engine) as conn:
            conn.execute(delete(sessions).where(sessions.c.expires_at < now))
            keep = (select(sessions.c.id_hash).where(sessions.c.token_id == principal.token_id)
                    .order_by(sessions.c.created_at.desc(), sessions.c.id_hash).limit(max(self.max_sessions - 1, 0)))
            conn.execute(delete(sessions).where(sessions.c.token_id == principal.token_id,
                                                sessions.c.id_hash.not_in(keep.scalar_subquery())))
            conn.execute(insert(sessions), {"id_hash": hash_secret(cookie), "token_id": principal.token_id,
                                            "scopes": ",".join(scopes), "csrf_hash": hash_secret(csrf),
                                            "created_at": now, "expires_at": now + self.session_ttl_s})
        return cookie, csrf

    def from_session(self, cookie: str) -> Principal | None:
        """The session's principal: only while it has not expired and its token is not revoked."""
        with db.read(self.engine) as conn:
            row = conn.execute(select(sessions).join(tokens, tokens.c.id == sessions.c.token_id).where(
                sessions.c.id_hash == hash_secret(cookie), sessions.c.expires_at > int(time.time()),
                tokens.c.revoked.is_(False))).first()
        if row is None:
            return None
        return Principal(frozenset(row.scopes.split(",")), "session", row.token_id, row.csrf_hash)

    def delete_session(self, cookie: str) -> None:
        with db.write(self.engine) as conn:
            conn.execute(delete(sessions).where(sessions.c.id_hash == hash_secret(cookie)))

    @staticmethod
    def csrf_ok(principal: Principal, header: str | None) -> bool:
        return bool(header) and hmac.compare_digest(principal.csrf_hash, hash_secret(header or ""))
