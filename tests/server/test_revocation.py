"""Revocation and the rest of auth hardening (issue 15, point 8): `hotpath token list|revoke`, the
revocation bound across workers, failed-login limits, sessions per token, Idempotency-Key scoped
per token, and a protected /metrics."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from hotpath.cli import main as hotpath
from profiler import pprof
from server.auth import create_token
from server.ratelimit import FailureLimiter
from tests.server.conftest import bearer, make_app
from tests.server.helpers import cpu_profile


def login(client: Any, token: str, address: str = "10.0.0.1") -> Any:
    return client.post("/api/v1/session", json={"token": token}, environ_base={"REMOTE_ADDR": address})


def cookie_of(resp: Any) -> str:
    header = resp.headers["Set-Cookie"]
    return header.split("hotpath_session=", 1)[1].split(";", 1)[0]


def with_cookie(app: Any, cookie: str) -> Any:
    client = app.test_client()
    client.set_cookie("hotpath_session", cookie)
    return client


def test_token_list_and_revoke_cli(migrated_url: str, app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    engine = app.extensions["hotpath"].storage.engine
    secret = create_token(engine, ["read"], "cli-list-a")
    create_token(engine, ["ingest"], "cli-twin")
    create_token(engine, ["ingest"], "cli-twin")
    out = subprocess.run([sys.executable, "-m", "hotpath", "token", "list", "--db", migrated_url],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.endswith(" cli-list-a")]
    assert len(lines) == 1 and " active " in lines[0] and " read " in lines[0]
    assert "hp_" not in out.stdout and secret[3:12] not in out.stdout  # no secrets, no hashes
    assert hotpath(["token", "revoke", "cli-twin", "--db", migrated_url]) == 2
    assert "2 tokens are named 'cli-twin'" in capsys.readouterr().err
    assert hotpath(["token", "revoke", "no-such-token", "--db", migrated_url]) == 2
    assert "no token with name 'no-such-token'" in capsys.readouterr().err
    token_id = lines[0].split()[0]
    assert hotpath(["token", "revoke", token_id, "--db", migrated_url]) == 0
    assert f"revoked token {token_id} (cli-list-a)" in capsys.readouterr().out
    assert hotpath(["token", "list", "--db", migrated_url]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.endswith(" cli-list-a"))
    assert " revoked " in row


def test_revoked_token_and_its_sessions_stop_within_the_bound(migrated_url: str, tmp_path: Any) -> None:
    """Two app instances (two workers or servers) on one database, both holding the token in their
    cache and a session made from it: sessions end at once, the token within AUTH_CACHE_S."""
    bound = 2.0
    apps = [make_app(migrated_url, str(tmp_path / n), AUTH_CACHE_S=int(bound)) for n in "ab"]
    try:
        engine = apps[0].extensions["hotpath"].storage.engine
        token = create_token(engine, ["read"], "revoke-bound")
        clients = [a.test_client() for a in apps]
        for c in clients:
            assert c.get("/api/v1/labels", headers=bearer(token)).status_code == 200  # now cached
        cookies = [cookie_of(login(c, token)) for c in clients]
        for a, ck in zip(apps, cookies):
            assert with_cookie(a, ck).get("/api/v1/labels").status_code == 200
        assert hotpath(["token", "revoke", "revoke-bound", "--db", migrated_url]) == 0
        revoked_at = time.monotonic()
        for a in apps:
            for ck in cookies:  # every session, on every instance, at once
                assert with_cookie(a, ck).get("/api/v1/labels").status_code == 401
        stopped: dict[int, float] = {}
        while len(stopped) < len(clients) and time.monotonic() - revoked_at < bound + 3:
            for i, c in enumerate(clients):
                if i not in stopped and c.get("/api/v1/labels", headers=bearer(token)).status_code == 401:
                    stopped[i] = time.monotonic() - revoked_at
            time.sleep(0.05)
        assert len(stopped) == len(clients) and max(stopped.values()) <= bound + 0.5, stopped
        for c in clients:  # and it stays refused; no new session either
            assert c.get("/api/v1/labels", headers=bearer(token)).status_code == 401
            assert login(c, token).status_code == 401
    finally:
        for a in apps:
            a.extensions["hotpath"].storage.engine.dispose()


def test_failed_logins_are_rate_limited_per_address(migrated_url: str, tmp_path: Any) -> None:
    app = make_app(migrated_url, str(tmp_path), LOGIN_FAILURES_PER_MIN=3)
    try:
        good = create_token(app.extensions["hotpath"].storage.engine, ["read"], "ratelimit")
        client = app.test_client()
        for i in range(3):
            assert login(client, f"hp_wrong{i}", "10.1.1.1").status_code == 401
        blocked = login(client, "hp_wrong", "10.1.1.1")
        assert blocked.status_code == 429 and "too many failed" in blocked.get_json()["error"]
        assert 1 <= int(blocked.headers["Retry-After"]) <= 60
        assert login(client, good, "10.1.1.1").status_code == 429  # even a right token, from there
        assert client.get("/api/v1/labels", headers=bearer(good),
                          environ_base={"REMOTE_ADDR": "10.1.1.1"}).status_code == 429
        assert login(client, good, "10.2.2.2").status_code == 200  # other addresses are not affected
        # a wrong Bearer token counts as a failed login too
        for i in range(3):
            assert client.get("/api/v1/labels", headers=bearer(f"hp_bad{i}"),
                              environ_base={"REMOTE_ADDR": "10.3.3.3"}).status_code == 401
        assert client.get("/api/v1/labels", headers=bearer("hp_bad"),
                          environ_base={"REMOTE_ADDR": "10.3.3.3"}).status_code == 429
    finally:
        app.extensions["hotpath"].storage.engine.dispose()


def test_failure_window_slides() -> None:
    now = [100.0]
    limiter = FailureLimiter(2, 60.0, clock=lambda: now[0])
    limiter.failed("a")
    now[0] += 30
    limiter.failed("a")
    assert limiter.retry_after("a") == pytest.approx(30.0)
    assert limiter.retry_after("b") == 0.0
    now[0] += 30.5
    assert limiter.retry_after("a") == 0.0  # the first failure left the window
    assert FailureLimiter(0).retry_after("a") == 0.0


def test_sessions_per_token_are_capped(migrated_url: str, tmp_path: Any) -> None:
    app = make_app(migrated_url, str(tmp_path), MAX_SESSIONS_PER_TOKEN=3)
    try:
        token = create_token(app.extensions["hotpath"].storage.engine, ["read"], "capped")
        client = app.test_client()
        cookies = []
        for _ in range(5):
            resp = login(client, token)
            assert resp.status_code == 200
            cookies.append(cookie_of(resp))
        alive = [with_cookie(app, ck).get("/api/v1/labels").status_code for ck in cookies]
        # the newest always survives; which older ones go is by creation second (ties: any)
        assert sorted(alive) == [200, 200, 200, 401, 401] and alive[-1] == 200, alive
    finally:
        app.extensions["hotpath"].storage.engine.dispose()


def test_idempotency_key_is_scoped_per_token(app: Any, client: Any) -> None:
    """The same Idempotency-Key from another tenant's token stores that tenant's batch (it used to
    answer "duplicate" and drop it); a retry with the same token is still a duplicate."""
    engine = app.extensions["hotpath"].storage.engine
    alice, bob = (create_token(engine, ["ingest", "read"], name) for name in ("alice", "bob"))

    def send(token: str, stack: str) -> str:
        resp = client.post("/api/v1/ingest?service=tenants", data=pprof.encode(cpu_profile({stack: 1})),
                           headers={**bearer(token), "Idempotency-Key": "batch-0001"},
                           content_type="application/octet-stream")
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()["status"]

    assert send(alice, "main;alice") == "stored"
    assert send(bob, "main;bob") == "stored"
    assert send(alice, "main;alice") == "duplicate"
    top = client.get('/api/v1/top?query=cpu{service="tenants"}', headers=bearer(alice)).get_json()
    assert {f["name"] for f in top["functions"]} >= {"alice", "bob"}


def test_metrics_needs_a_read_token_unless_public(migrated_url: str, app: Any, client: Any, tmp_path: Any) -> None:
    engine = app.extensions["hotpath"].storage.engine
    read, ingest = create_token(engine, ["read"], "m-read"), create_token(engine, ["ingest"], "m-ingest")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(ingest)).status_code == 403
    resp = client.get("/metrics", headers=bearer(read))
    assert resp.status_code == 200 and "hotpath_http_requests_total" in resp.get_data(as_text=True)
    public = make_app(migrated_url, str(tmp_path), METRICS_PUBLIC=True)
    try:
        assert public.test_client().get("/metrics").status_code == 200
    finally:
        public.extensions["hotpath"].storage.engine.dispose()


def test_revocation_bound_on_a_real_server(tmp_path: Any) -> None:
    """`hotpath server --workers 2` (gunicorn, default AUTH_CACHE_S=5): the README's bound holds
    across worker processes; sessions end at once."""
    import json
    import os
    import urllib.error
    import urllib.request

    from tests.server.test_up import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = str(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOTPATH_", "PROMETHEUS_MULTIPROC_DIR"))}
    env.update({"HOTPATH_LOG_LEVEL": "WARNING", "TMPDIR": str(tmp_path)})

    def call(path: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(base + path, data=body, headers=headers or {}, method="POST" if body else "GET")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # a new connection each: either worker
                return resp.status, resp.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "hotpath", *args, "--data-dir", data], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        return out.stdout

    proc = subprocess.Popen([sys.executable, "-m", "hotpath", "server", "--data-dir", data, "--auto-upgrade",
                             "--workers", "2", "--threads", "1", "--bind", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if call("/readyz")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.2)
        token = cli("token", "create", "--scope", "read", "--name", "real-server").strip()
        auth = {"Authorization": f"Bearer {token}"}
        for _ in range(20):  # both workers now hold it in their caches (each request a new connection)
            assert call("/api/v1/labels", auth)[0] == 200
        status, headers = call("/api/v1/session", {"Content-Type": "application/json"},
                               json.dumps({"token": token}).encode())
        assert status == 200
        cookie = {"Cookie": headers["Set-Cookie"].split(";", 1)[0]}
        assert call("/api/v1/labels", cookie)[0] == 200
        cli("token", "revoke", "real-server")
        revoked_at = time.monotonic()
        assert [call("/api/v1/labels", cookie)[0] for _ in range(6)] == [401] * 6
        last_ok = 0.0
        while time.monotonic() - revoked_at < 6.0:
            if call("/api/v1/labels", auth)[0] == 200:
                last_ok = time.monotonic() - revoked_at
            time.sleep(0.05)
        assert last_ok <= 5.0 + 0.5, f"token still accepted {last_ok:.2f} s after revocation"
        # refused for good: 401, or 429 once this address's failed checks pass LOGIN_FAILURES_PER_MIN
        assert {call("/api/v1/labels", auth)[0] for _ in range(6)} <= {401, 429}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
