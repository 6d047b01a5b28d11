"""Migrations: one head, empty -> head on SQLite and PostgreSQL, schema equals the models, behind -> refuse."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from server import db
from server.models import PARTITION_NAME, metadata


def test_single_head() -> None:
    script = ScriptDirectory.from_config(db.alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1


def _include(name: str | None, type_: str, _parent: object) -> bool:
    return not (type_ == "table" and name and PARTITION_NAME.match(name))


def test_empty_to_head_matches_models(db_url: str) -> None:
    engine = db.make_engine(db_url)
    with pytest.raises(db.SchemaBehindError, match="hotpath db upgrade"):
        db.check_schema(engine)
    db.upgrade(db_url)
    db.check_schema(engine)
    assert db.current_revision(engine) == db.head_revision()
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_name": _include, "compare_type": True})
        assert compare_metadata(ctx, metadata) == []
    if db.is_postgres(engine):
        from server.storage.partitions import Partitions

        parts = Partitions(engine)
        parts.ensure_day(1_795_000_000)
        assert 1_795_000_000 - 1_795_000_000 % 86400 in parts.existing_days()
        with engine.connect() as conn:  # partitions are ignored by the comparison, nothing else is
            ctx = MigrationContext.configure(conn, opts={"include_name": _include})
            assert compare_metadata(ctx, metadata) == []
    engine.dispose()


def test_server_refuses_behind_schema(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from server.app import create_app

    url = f"sqlite:///{tmp_path / 'old.db'}"
    with pytest.raises(db.SchemaBehindError, match="hotpath db upgrade"):
        create_app({"DATABASE_URL": url, "TESTING": True, "MAINTENANCE_INTERVAL_S": 0})
    out = subprocess.run([sys.executable, "-m", "hotpath", "server", "--db", url, "--bind", "127.0.0.1:0"],
                         check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    assert "hotpath db upgrade" in out.stderr


def test_db_upgrade_from_any_cwd_and_auto_upgrade(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'x' / 'h.db'}"
    out = subprocess.run([sys.executable, "-m", "hotpath", "db", "upgrade", "--db", url], check=False, capture_output=True,
                         text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert db.head_revision() in out.stdout
    from server.app import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'auto.db'}", "AUTO_UPGRADE": True, "TESTING": True,
                      "MAINTENANCE_INTERVAL_S": 0})
    assert app.test_client().get("/readyz").status_code == 200
