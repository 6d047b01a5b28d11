"""The schema as SQLAlchemy tables: one set for PostgreSQL and SQLite.

Why this shape (see DESIGN.md "Storage — what the numbers say"):
- `functions` and `stacks` are dictionaries deduplicated by a content hash of the symbolized
  frames (function, binary, kind), never addresses, so a stack has one id across hosts and ASLR.
  A stack stores its whole path as a packed array of function ids (not parent/child pairs): a
  query resolves any stack with one row, no chain walk, and stacks are shared by every batch
  that repeats them, so their size is amortized away (see bench/server_storage.py).
- `batches` holds one row per ingested profile: sorted stack ids (delta-packed), values and a
  per-entry index into a small per-batch table of per-sample label sets (pid/process/thread), so
  per-sample labels stay queryable without making each PID a series.
- `rollups` hold the same encoding merged per series per minute and per hour; queries over long
  ranges read those instead of every 10-second batch.
- On PostgreSQL `batches` and `rollups` are range-partitioned by day on `ts` (unix seconds);
  retention drops whole partitions. Keys lead with `series_id` so the tables can be distributed
  by series (Citus) later; the dictionaries would become reference tables.
"""

from __future__ import annotations

import re

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
AutoBigInt = BigInteger().with_variant(Integer(), "sqlite")

# Child partitions are created at run time by the server; schema comparison must ignore them.
PARTITION_NAME = re.compile(r"^(batches|rollups)_p\d{8}$")

functions = Table(
    "functions",
    metadata,
    Column("id", AutoBigInt, primary_key=True, autoincrement=True),
    Column("hash", LargeBinary(16), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("binary", Text, nullable=False),
    Column("kind", String(16), nullable=False),
)

stacks = Table(
    "stacks",
    metadata,
    Column("id", AutoBigInt, primary_key=True, autoincrement=True),
    Column("hash", LargeBinary(16), nullable=False, unique=True),
    Column("depth", Integer, nullable=False),
    Column("function_ids", LargeBinary, nullable=False),  # packed, root first
)

series = Table(
    "series",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # hash of type + labels
    Column("profile_type", String(64), nullable=False),
    Column("labels", Text, nullable=False),  # canonical JSON object
    Column("sample_types", Text, nullable=False),  # JSON [[type, unit], ...]
    Column("first_seen", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=False),
    Index("ix_series_type", "profile_type"),
)

# Each series' label pairs, for selecting series through an index (equality by value hash; a regex
# reads the distinct values of one name). The value is hashed in the key because a btree entry is
# capped at 2,704 bytes on PostgreSQL and a label value may be 1,024 four-byte characters.
series_labels = Table(
    "series_labels",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("value_hash", BigInteger, primary_key=True, autoincrement=False),
    Column("series_id", BigInteger, primary_key=True, autoincrement=False),
    Column("value", Text, nullable=False),
)


def _data_columns() -> list[Column]:
    return [
        Column("n_entries", Integer, nullable=False),
        Column("total", BigInteger, nullable=False),  # sum of the main value, for timelines
        Column("period", BigInteger, nullable=False),
        Column("duration_ns", BigInteger, nullable=False),
        Column("stack_ids", LargeBinary, nullable=False),
        Column("vals", LargeBinary, nullable=False),
        Column("label_sets", Text, nullable=True),  # JSON list of per-sample label sets
        Column("label_idx", LargeBinary, nullable=True),
        Column("counters", Text, nullable=True),  # JSON data-quality counters
    ]


batches = Table(
    "batches",
    metadata,
    Column("series_id", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", BigInteger, primary_key=True, autoincrement=False),
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    *_data_columns(),
    postgresql_partition_by="RANGE (ts)",
)

rollups = Table(
    "rollups",
    metadata,
    Column("series_id", BigInteger, primary_key=True, autoincrement=False),
    Column("step", Integer, primary_key=True, autoincrement=False),
    Column("ts", BigInteger, primary_key=True, autoincrement=False),
    *_data_columns(),
    postgresql_partition_by="RANGE (ts)",
)

rollup_buckets = Table(
    "rollup_buckets",
    metadata,
    Column("step", Integer, primary_key=True, autoincrement=False),
    Column("ts", BigInteger, primary_key=True, autoincrement=False),
    Column("done_at", BigInteger, nullable=False),
)

ingest_keys = Table(
    "ingest_keys",
    metadata,
    Column("key", String(256), primary_key=True),
    Column("batch_id", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_ingest_keys_created", "created_at"),
)

sample_labels = Table(
    "sample_labels",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("value", String(1024), primary_key=True),
    Column("last_seen", BigInteger, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 hex, never the token
    Column("scopes", String(100), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # sha256 of the cookie value
    Column("token_id", Integer, nullable=True),
    Column("scopes", String(100), nullable=False),
    Column("csrf_hash", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

# Pull scraping's health, one row per (job, instance, profile), written by the one scraper of a
# deployment (server/scrape/runner.py) and read by `GET /api/v1/targets` in any worker.
scrape_targets = Table(
    "scrape_targets",
    metadata,
    Column("job", String(128), primary_key=True),
    Column("instance", String(255), primary_key=True),
    Column("profile", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("labels", Text, nullable=False),  # canonical JSON object
    Column("last_scrape", BigInteger, nullable=False),  # unix seconds of the last attempt
    Column("last_duration_ms", Integer, nullable=False),
    Column("last_error", Text, nullable=True),  # None when the last attempt stored (or had nothing new)
    Column("scrapes", BigInteger, nullable=False),
    Column("failures", BigInteger, nullable=False),
    Column("errors", Text, nullable=False),  # JSON {kind: count}: refused, timeout, not_pprof, too_large, ...
)
