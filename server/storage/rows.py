"""Encoding a batch (stack ids, values, per-sample label sets) into a row's columns, and back.

Entries are sorted by stack id (so ids delta-pack) and merged when both the stack and the
per-sample label set repeat; per-sample label sets are interned into a small per-row JSON table
and each entry keeps a narrow index into it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.storage import codec

Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Entries:
    """Decoded entries of one or more rows: parallel arrays plus the label sets they index."""

    stack_ids: np.ndarray  # int64 (n,)
    values: np.ndarray  # int64 (n, k)
    label_idx: np.ndarray | None = None  # int64 (n,) into label_sets
    label_sets: list[dict[str, str]] = field(default_factory=list)


def combine(stack_ids: np.ndarray, values: np.ndarray, label_idx: np.ndarray | None) -> Entries:
    """Sort by (stack id, label index) and sum entries whose pair repeats."""
    n = stack_ids.size
    if n == 0:
        return Entries(stack_ids, values, label_idx)
    lab = label_idx if label_idx is not None else np.zeros(n, dtype=np.int64)
    order = np.lexsort((lab, stack_ids))
    sid, lab, vals = stack_ids[order], lab[order], values[order]
    starts = np.flatnonzero(np.r_[True, (sid[1:] != sid[:-1]) | (lab[1:] != lab[:-1])])
    if starts.size != n:
        vals = np.add.reduceat(vals, starts, axis=0)
        sid, lab = sid[starts], lab[starts]
    return Entries(sid, vals, lab if label_idx is not None else None)


def encode(entries: Entries, label_sets: list[Labels] | None) -> dict[str, Any]:
    """Row columns for combined entries (see `combine`)."""
    n = int(entries.stack_ids.size)
    row: dict[str, Any] = {
        "n_entries": n,
        "stack_ids": codec.pack_sorted_ids(entries.stack_ids),
        # values are (n, types) already; reshape only 1-D input (reshape(0, -1) is ambiguous and raises)
        "vals": codec.pack_values(entries.values if entries.values.ndim == 2 else entries.values.reshape(n, -1)),
        "label_sets": None,
        "label_idx": None,
    }
    if label_sets and entries.label_idx is not None and any(label_sets):
        row["label_sets"] = json.dumps([dict(ls) for ls in label_sets], separators=(",", ":"))
        row["label_idx"] = codec.pack_uints(entries.label_idx)
    return row


def decode(row: Any) -> Entries:
    """Entries of a stored `batches`/`rollups` row (any object with the column attributes)."""
    n = int(row.n_entries)
    ids = codec.unpack_sorted_ids(bytes(row.stack_ids), n)
    vals = codec.unpack_values(bytes(row.vals), n)
    if row.label_sets:
        return Entries(ids, vals, codec.unpack_uints(bytes(row.label_idx), n), json.loads(row.label_sets))
    return Entries(ids, vals)


def sum_by_id(stack_ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact int64 per-stack sums of a value matrix, vectorized.

    `np.bincount` sums in float64, exact only below 2**53; splitting each value into a low 20-bit
    and a high part keeps every partial sum exact for any realistic total.
    """
    if stack_ids.size == 0:
        return stack_ids, values
    from server.storage.dictionary import dense_unique

    uniq, inverse = dense_unique(stack_ids)
    out = np.zeros((uniq.size, values.shape[1]), dtype=np.int64)
    for j in range(values.shape[1]):
        col = values[:, j]
        top = int(col.max()) if col.size else 0
        if top * col.size < 2**53 and int(col.min()) >= 0:  # every partial sum is exact in float64
            out[:, j] = np.bincount(inverse, weights=col, minlength=uniq.size).astype(np.int64)
            continue
        lo = np.bincount(inverse, weights=(col & 0xFFFFF), minlength=uniq.size)
        hi = np.bincount(inverse, weights=(col >> 20), minlength=uniq.size)
        out[:, j] = (hi.astype(np.int64) << 20) + lo.astype(np.int64)
    return uniq, out
