"""Alembic environment: the URL comes from the programmatic config (`server.db.alembic_config`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from server.models import PARTITION_NAME, metadata

config = context.config


def include_name(name: str | None, type_: str, _parent: object) -> bool:
    # Day partitions are created at run time by the server, not by migrations.
    return not (type_ == "table" and name is not None and PARTITION_NAME.match(name))


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      literal_binds=True, include_name=include_name)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=metadata, include_name=include_name)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, include_name=include_name)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
