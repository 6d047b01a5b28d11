"""Initial schema: dictionaries, series, partitioned batches and rollups, auth.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

AutoBigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _data_columns() -> list[sa.Column]:
    return [
        sa.Column("n_entries", sa.Integer, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("period", sa.BigInteger, nullable=False),
        sa.Column("duration_ns", sa.BigInteger, nullable=False),
        sa.Column("stack_ids", sa.LargeBinary, nullable=False),
        sa.Column("vals", sa.LargeBinary, nullable=False),
        sa.Column("label_sets", sa.Text, nullable=True),
        sa.Column("label_idx", sa.LargeBinary, nullable=True),
        sa.Column("counters", sa.Text, nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "functions",
        sa.Column("id", AutoBigInt, primary_key=True, autoincrement=True),
        sa.Column("hash", sa.LargeBinary(16), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("binary", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
    )
    op.create_table(
        "stacks",
        sa.Column("id", AutoBigInt, primary_key=True, autoincrement=True),
        sa.Column("hash", sa.LargeBinary(16), nullable=False, unique=True),
        sa.Column("depth", sa.Integer, nullable=False),
        sa.Column("function_ids", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "series",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("profile_type", sa.String(64), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("sample_types", sa.Text, nullable=False),
        sa.Column("first_seen", sa.BigInteger, nullable=False),
        sa.Column("last_seen", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_series_type", "series", ["profile_type"])
    op.create_table(
        "batches",
        sa.Column("series_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        *_data_columns(),
        postgresql_partition_by="RANGE (ts)",
    )
    op.create_table(
        "rollups",
        sa.Column("series_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("step", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
        *_data_columns(),
        postgresql_partition_by="RANGE (ts)",
    )
    op.create_table(
        "rollup_buckets",
        sa.Column("step", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("done_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "ingest_keys",
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("batch_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_ingest_keys_created", "ingest_keys", ["created_at"])
    op.create_table(
        "sample_labels",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(1024), primary_key=True),
        sa.Column("last_seen", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", sa.String(100), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("token_id", sa.Integer, nullable=True),
        sa.Column("scopes", sa.String(100), nullable=False),
        sa.Column("csrf_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for name in ("sessions", "tokens", "sample_labels", "ingest_keys", "rollup_buckets", "rollups",
                 "batches", "series", "stacks", "functions"):
        op.drop_table(name)
