"""series_labels: each series' label pairs, indexed, so a selector finds its series without reading all.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _value_hash(value: str) -> int:  # the same as server.storage.series_index.value_hash (frozen here)
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def upgrade() -> None:
    table = op.create_table(
        "series_labels",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("value_hash", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("series_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Text, nullable=False),
    )
    conn = op.get_bind()
    rows = []
    for sid, labels in conn.execute(sa.text("SELECT id, labels FROM series")):
        for name, value in json.loads(labels).items():
            rows.append({"name": name, "value_hash": _value_hash(value), "series_id": int(sid), "value": value})
        if len(rows) >= 5000:
            op.bulk_insert(table, rows)
            rows = []
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_table("series_labels")
