"""Shared by the foreign-protocol tests (Pyroscope push and /ingest, OTLP): bombs, counts, totals."""

from __future__ import annotations

import re
import zlib
from typing import Any

from sqlalchemy import func, select

from server.models import batches
from tests.server.conftest import bearer


def gzip_bomb(inflated: int = 200 << 20) -> bytes:
    """Gzip that inflates to `inflated` zero bytes (~1/1000 of it on the wire)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    return b"".join([*(comp.compress(chunk) for _ in range(inflated >> 20)), comp.flush()])


def n_batches(app: Any) -> int:
    with app.extensions["hotpath"].storage.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(batches)).scalar() or 0)


def top(client: Any, token: str, query: str) -> dict[str, Any]:
    resp = client.get("/api/v1/top", query_string={"query": query, "from": "now-1h", "until": "now+5m"},
                      headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def self_by_function(client: Any, token: str, query: str) -> dict[str, int]:
    return {f["name"]: f["self"] for f in top(client, token, query)["functions"] if f["self"]}


_RAW_SAMPLE = re.compile(r"^\s+((?:-?\d+\s+)+-?\d+|-?\d+):((?:\s+\d+)*)\s*$")


def pprof_raw_totals(text: str) -> tuple[list[str], list[int], set[str]]:
    """(sample types, per-type totals, function names) from `go tool pprof -raw` output: an oracle."""
    lines = text.splitlines()
    at = lines.index("Samples:")
    types = lines[at + 1].split()
    totals = [0] * len(types)
    names: set[str] = set()
    section = "samples"
    for line in lines[at + 2:]:
        if line.startswith("Locations"):
            section = "locations"
            continue
        if line.startswith("Mappings"):
            break
        if section == "samples":
            m = _RAW_SAMPLE.match(line)
            if m:
                for i, v in enumerate(m.group(1).split()):
                    totals[i] += int(v)
        else:
            parts = line.split()
            # "     1: 0x4a3b2c M=1 main.leafSpin /path/main.go:10 s=0" or a continuation line of inlined frames
            fn = parts[3] if len(parts) > 3 and parts[0].endswith(":") else (parts[0] if parts and parts[0] != "bad" else "")
            if fn and not fn.startswith("0x") and not fn.startswith("M="):
                names.add(fn)
    return types, totals, names
