"""docker-compose.yml (no Docker engine here): parse it and check services, wiring, health, volume, auth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE.is_file(), "docker-compose.yml is missing"
    return yaml.safe_load(COMPOSE.read_text())


def _command(service: dict[str, Any]) -> str:
    cmd = service.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_three_services(compose: dict[str, Any]) -> None:
    assert {"postgres", "server", "collector"} <= set(compose["services"])


def test_postgres_has_volume_and_healthcheck(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]
    assert str(pg["image"]).startswith("postgres:")
    assert "pg_isready" in " ".join(map(str, pg["healthcheck"]["test"]))
    volumes = [str(v) for v in pg.get("volumes", [])]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in volumes)
    named = volumes[0].split(":", 1)[0]
    assert named in (compose.get("volumes") or {})
    assert "ports" not in pg  # the database is reachable only on the compose network


def test_server_wiring_and_auth(compose: dict[str, Any]) -> None:
    server = compose["services"]["server"]
    env = _env(server)
    url = env["HOTPATH_DATABASE_URL"]
    assert url.startswith("postgresql") and "@postgres:" in url
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    cmd = _command(server)
    assert "hotpath" in cmd and "server" in cmd and "--workers" in cmd  # gunicorn workers
    assert "--no-auth" not in cmd and env.get("HOTPATH_AUTH", "true").lower() not in ("0", "false", "no", "off")
    assert "0.0.0.0:4040" in cmd
    assert "curl" in " ".join(map(str, server["healthcheck"]["test"])) or "readyz" in str(server["healthcheck"])
    assert "readyz" in " ".join(map(str, server["healthcheck"]["test"]))
    assert any("4040" in str(p) for p in server.get("ports", []))


def test_collector_ships_to_server(compose: dict[str, Any]) -> None:
    collector = compose["services"]["collector"]
    text = _command(collector) + " " + " ".join(f"{k}={v}" for k, v in _env(collector).items())
    assert "http://server:4040" in text
    assert "server" in collector.get("depends_on", {})
    assert collector.get("pid") == "host" and collector.get("privileged") is True


def test_built_image_has_what_the_services_run(compose: dict[str, Any]) -> None:
    """`build: .` needs a Dockerfile that installs Hotpath, BCC and the curl the healthcheck calls."""
    assert compose["services"]["server"].get("build") == "."
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    for needed in ("python3-bpfcc", "linux-headers-amd64", "curl", "pip install"):
        assert needed in dockerfile, f"Dockerfile does not install {needed}"
    healthcheck = " ".join(compose["services"]["server"]["healthcheck"]["test"])
    assert "curl" in healthcheck
