"""scrape_targets: pull scraping's per-target health (last scrape, error, duration, counts).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scrape_targets",
        sa.Column("job", sa.String(128), primary_key=True),
        sa.Column("instance", sa.String(255), primary_key=True),
        sa.Column("profile", sa.String(32), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("last_scrape", sa.BigInteger, nullable=False),
        sa.Column("last_duration_ms", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("scrapes", sa.BigInteger, nullable=False),
        sa.Column("failures", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scrape_targets")
