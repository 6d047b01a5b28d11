"""The one module that owns the database: engine creation, transactions, and schema version checks.

Views never touch the engine; the storage service layer asks for `read()` / `write()` blocks here,
and each `write()` block is one transaction that commits on exit (or rolls back on error).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.pool import NullPool

from server import deadline

PING_IDLE_S = 5.0
_PG_QUERY_CANCELED = "57014"  # statement_timeout fired
_SQLITE_PROGRESS_OPS = 10_000  # virtual machine instructions between deadline checks (~0.1-1 ms)
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class SchemaBehindError(RuntimeError):
    """The database is not at the migrations' head revision."""


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """Create the engine with per-dialect settings (SQLite: WAL, busy timeout, IMMEDIATE writes)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # Writers take the write lock up front: a deferred transaction that upgrades from read
            # to write can fail with SQLITE_BUSY instead of waiting.
            mode = "IMMEDIATE" if conn.get_execution_options().get("hotpath_write") else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)

    # A pre-ping on every checkout is one more round trip per ingest request; a connection that
    # was in use within the last PING_IDLE_S seconds is trusted instead. One idle for longer (the
    # database may have restarted meanwhile) is pinged, and a dead one is replaced transparently.
    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("hotpath_used", 0.0) > PING_IDLE_S:
            try:
                alive = engine.dialect.do_ping(dbapi_conn)
            except Exception:  # noqa: BLE001 - any failure means a dead connection
                alive = False
            if not alive:
                raise exc.DisconnectionError("connection failed the idle ping")

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["hotpath_used"] = time.monotonic()

    return engine


def sqlstate(error: BaseException) -> str:
    """The SQLSTATE of a database error ("" when the driver gives none, as SQLite's)."""
    return str(getattr(getattr(error, "orig", None), "sqlstate", "") or "")


def bad_value_message(error: exc.DBAPIError) -> str | None:
    """Why the database refused a *value* (a request's fault: answer 4xx), or None for a server fault.

    SQLSTATE class 22 is "data exception" (out of range, too long, bad encoding); 54000 is
    "program limit exceeded" (an index row too large). Constraint violations (class 23) are not
    here: the service layer prevents the ones input can cause, so one reaching a view is a fault.
    """
    code = sqlstate(error)
    if isinstance(error, exc.DataError) or code.startswith("22") or code == "54000":
        detail = str(getattr(error, "orig", error)).strip().splitlines()
        return detail[0][:300] if detail else type(error).__name__
    return None


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextlib.contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """One write transaction: commits when the block exits normally, rolls back otherwise."""
    with engine.connect() as conn:
        conn = conn.execution_options(hotpath_write=True)
        with conn.begin():
            yield conn


@contextlib.contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read-only block (one transaction, so one consistent snapshot on PostgreSQL).

    Inside a query's `deadline.limits`, SQL stops at the deadline too: PostgreSQL through a
    transaction-local statement_timeout, SQLite through a progress handler; either surfaces here as
    `deadline.QueryTimeout`.
    """
    remaining = deadline.remaining_s()
    with engine.connect() as conn, conn.begin():
        if remaining is None:
            yield conn
            return
        if remaining <= 0:
            raise deadline.timeout_error()
        sqlite_conn = None
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(remaining * 1000))}")
        else:
            sqlite_conn = conn.connection.driver_connection
            sqlite_conn.set_progress_handler(deadline.expired, _SQLITE_PROGRESS_OPS)
        try:
            yield conn
        except exc.DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) == _PG_QUERY_CANCELED or (
                    sqlite_conn is not None and deadline.expired() and "interrupt" in str(error.orig)):
                raise deadline.timeout_error() from None
            raise
        finally:
            if sqlite_conn is not None:
                sqlite_conn.set_progress_handler(None, 0)


@contextlib.contextmanager
def autocommit(engine: Engine) -> Iterator[Connection]:
    """A connection outside any transaction, for DDL that PostgreSQL refuses inside one."""
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def alembic_config(url: str) -> Any:
    """Alembic config built in code, so `hotpath db upgrade` works from any working directory."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Run Alembic migrations up to `revision` (creates the SQLite file if needed)."""
    from alembic import command

    if url.startswith("sqlite"):
        make_engine(url).dispose()  # creates the parent directory
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    return heads[0] if len(heads) == 1 else ",".join(heads)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Raise SchemaBehindError naming `hotpath db upgrade` when the database is not at head."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        url = engine.url.render_as_string(hide_password=True)
        raise SchemaBehindError(
            f"database {url} is at schema revision {current or '(empty)'}, the server needs {head}: "
            f"run `hotpath db upgrade --db {url}` (or start with HOTPATH_AUTO_UPGRADE=1)"
        )
