"""Auth: 401 without a token, scopes give 403, tokens stored hashed, browser session + CSRF, bind rules."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import select, text

from server.config import check_bind
from server.models import sessions
from tests.server.conftest import bearer


def test_no_token_is_401(client: Any) -> None:
    for method, path in (("get", "/api/v1/flamegraph"), ("post", "/api/v1/ingest"), ("get", "/api/v1/labels")):
        resp = getattr(client, method)(path)
        assert resp.status_code == 401, path
        assert "error" in resp.get_json()
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/labels", headers=bearer("hp_wrong")).status_code == 401
    assert client.get("/api/v1/labels", headers={"Authorization": "Basic abc"}).status_code == 401


def test_scopes(client: Any, tokens: dict[str, str]) -> None:
    resp = client.post("/api/v1/ingest?service=x", data=b"x", headers=bearer(tokens["read"]))
    assert resp.status_code == 403
    assert "ingest" in resp.get_json()["error"]
    assert client.get("/api/v1/labels", headers=bearer(tokens["ingest"])).status_code == 403
    assert client.get("/api/v1/labels", headers=bearer(tokens["read"])).status_code == 200
    assert client.get("/api/v1/labels", headers=bearer(tokens["admin"])).status_code == 200


def test_tokens_never_stored_in_clear(app: Any, tokens: dict[str, str]) -> None:
    from server.models import tokens as tokens_table

    engine = app.extensions["hotpath"].storage.engine
    with engine.connect() as conn:
        rows = conn.execute(select(tokens_table)).all()
        dump = " ".join(str(tuple(r)) for r in rows)
    assert rows
    for token in tokens.values():
        assert token not in dump
        assert token[3:] not in dump


def test_browser_session_flow(app: Any, tokens: dict[str, str]) -> None:
    client = app.test_client()
    assert client.get("/api/v1/session").get_json() == {"authenticated": False, "auth_required": True,
                                                        "scopes": []}
    assert client.post("/api/v1/session", json={"token": tokens["ingest"]}).status_code == 403
    assert client.post("/api/v1/session", json={"token": "hp_nope"}).status_code == 401
    assert client.post("/api/v1/session", json={}).status_code == 400
    resp = client.post("/api/v1/session", json={"token": tokens["read"]})
    assert resp.status_code == 200
    csrf = resp.get_json()["csrf_token"]
    cookie_header = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie_header and "SameSite=Strict" in cookie_header and "Path=/" in cookie_header
    cookie_value = cookie_header.split(";", 1)[0].split("=", 1)[1]
    assert tokens["read"] not in cookie_header
    info = client.get("/api/v1/session").get_json()
    assert info["authenticated"] and info["scopes"] == ["read"]
    assert client.get("/api/v1/labels").status_code == 200  # cookie works for reads
    # The session id is stored hashed too.
    with app.extensions["hotpath"].storage.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(select(sessions.c.id_hash))]
    assert cookie_value not in ids and len(ids) >= 1
    # State-changing cookie requests need the CSRF header.
    assert client.delete("/api/v1/session").status_code == 403
    assert client.delete("/api/v1/session", headers={"X-Hotpath-CSRF": "wrong"}).status_code == 403
    assert client.post("/api/v1/ingest", data=b"x").status_code == 403  # CSRF first, scope second
    assert client.delete("/api/v1/session", headers={"X-Hotpath-CSRF": csrf}).status_code == 200
    stale = app.test_client()
    stale.set_cookie("hotpath_session", cookie_value)
    assert stale.get("/api/v1/labels").status_code == 401


def test_security_headers_everywhere(client: Any) -> None:
    for path in ("/healthz", "/api/v1/labels", "/", "/nonexistent"):
        resp = client.get(path)
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert client.get("/").headers["Location"].endswith("/ui/")


def test_no_auth_only_on_loopback(tmp_path: Any) -> None:
    assert check_bind("127.0.0.1:4040", auth=False) == ("127.0.0.1", 4040)
    assert check_bind("[::1]:4040", auth=False) == ("::1", 4040)
    assert check_bind("0.0.0.0:4040", auth=True) == ("0.0.0.0", 4040)
    for bind in ("0.0.0.0:4040", "10.1.2.3:80", ":4040"):
        with pytest.raises(ValueError, match="refusing"):
            check_bind(bind, auth=False)
    out = subprocess.run([sys.executable, "-m", "hotpath", "server", "--no-auth", "--bind", "0.0.0.0:4999",
                          "--data-dir", str(tmp_path)], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "refusing to serve without authentication" in out.stderr


def test_token_create_cli(migrated_url: str, app: Any) -> None:
    out = subprocess.run([sys.executable, "-m", "hotpath", "token", "create", "--db", migrated_url, "--scope", "read",
                          "--name", "cli-test"], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("hp_") and len(token) > 40
    client = app.test_client()
    assert client.get("/api/v1/labels", headers=bearer(token)).status_code == 200
    with app.extensions["hotpath"].storage.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tokens WHERE name = 'cli-test'")).scalar() == 1
