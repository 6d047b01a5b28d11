"""Fixtures: throwaway databases (SQLite and real PostgreSQL) upgraded by Alembic, apps and clients."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from server import db
from tests.conftest import require

PG_URL = os.environ.get("HOTPATH_TEST_PG_URL", "")


def _pg_admin() -> Any:
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT")


def fresh_pg_database() -> str:
    """Create an empty database on the test server; returns its URL."""
    require(bool(PG_URL), "PostgreSQL (set HOTPATH_TEST_PG_URL; scripts/test.sh starts one)")
    name = f"hp_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database per test module and dialect."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'hotpath.db'}"
        return
    url = fresh_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture(scope="module")
def migrated_url(db_url: str) -> str:
    db.upgrade(db_url)
    return db_url


def make_app(url: str, tmp_dir: str, **extra: Any) -> Any:
    from server.app import create_app

    config = {"DATABASE_URL": url, "TESTING": True, "MAINTENANCE_INTERVAL_S": 0, "DATA_DIR": tmp_dir,
              "LOG_LEVEL": "WARNING", **extra}
    return create_app(config)


@pytest.fixture(scope="module")
def app(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    application = make_app(migrated_url, str(tmp_path_factory.mktemp("data")))
    yield application
    application.extensions["hotpath"].storage.engine.dispose()


@pytest.fixture(scope="module")
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture(scope="module")
def tokens(app: Any) -> dict[str, str]:
    from server.auth import create_token

    engine = app.extensions["hotpath"].storage.engine
    return {scope: create_token(engine, [scope], f"test-{scope}") for scope in ("ingest", "read", "admin")}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
