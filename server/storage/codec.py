"""Compact byte encodings for per-batch columns (stack ids, values, label indexes).

Why not `bigint[]`: 8 bytes per id plus array headers already misses the 10-bytes-per-entry budget.
Stack ids are small sequential integers, so a batch's sorted ids are stored as deltas at the
narrowest width that fits (usually 2 bytes); value columns are divided by their GCD (cpu
nanoseconds = count × period, so they shrink to counts), and a column that is an exact multiple of
the first one (`cpu/nanoseconds` = `samples/count` × period) costs no bytes at all.
"""

from __future__ import annotations

import math
import struct

import numpy as np

_WIDTHS = ((0xFF, 1, np.uint8), (0xFFFF, 2, np.uint16), (0xFFFFFFFF, 4, np.uint32))
_DTYPES = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<i8")}


class CodecError(ValueError):
    """Stored bytes that do not decode (a corrupt row)."""


def _narrow(arr: np.ndarray) -> tuple[int, bytes]:
    """(width, bytes) of a non-negative int64 array at the narrowest fitting width."""
    top = int(arr.max()) if arr.size else 0
    for limit, width, _dtype in _WIDTHS:
        if top <= limit:
            return width, arr.astype(_DTYPES[width]).tobytes()
    return 8, arr.astype("<i8").tobytes()


def _widen(width: int, data: bytes, count: int) -> np.ndarray:
    dtype = _DTYPES.get(width)
    if dtype is None or len(data) < width * count:
        raise CodecError(f"bad packed column (width {width}, {len(data)} bytes for {count} values)")
    return np.frombuffer(data, dtype=dtype, count=count).astype(np.int64)


def pack_uints(arr: np.ndarray) -> bytes:
    """Non-negative integers at the narrowest width: 1 header byte + payload."""
    width, payload = _narrow(np.asarray(arr, dtype=np.int64))
    return bytes([width]) + payload


def unpack_uints(data: bytes, count: int) -> np.ndarray:
    if not data:
        raise CodecError("empty packed column")
    return _widen(data[0], data[1:], count)


def pack_sorted_ids(ids: np.ndarray) -> bytes:
    """Ascending non-negative ids as base + narrow deltas."""
    ids = np.asarray(ids, dtype=np.int64)
    base = int(ids[0]) if ids.size else 0
    deltas = np.diff(ids, prepend=base)
    width, payload = _narrow(deltas)
    return struct.pack("<Bq", width, base) + payload


def unpack_sorted_ids(data: bytes, count: int) -> np.ndarray:
    if len(data) < 9:
        raise CodecError("short packed id column")
    width, base = struct.unpack_from("<Bq", data)
    deltas = _widen(width, data[9:], count)
    return np.cumsum(deltas) + base


# Value matrix: "<B" column count, then per column "<Bq": mode, factor; then stored payloads.
_MODE_STORED, _MODE_DERIVED, _MODE_SIGNED = 0, 1, 2


def pack_values(values: np.ndarray) -> bytes:
    """An (n, k) int64 matrix: each column GCD-scaled and narrowed, or derived from column 0."""
    values = np.asarray(values, dtype=np.int64)
    n, k = values.shape
    header = [struct.pack("<B", k)]
    payloads: list[bytes] = []
    first = values[:, 0] if k else None
    for j in range(k):
        col = values[:, j]
        if j > 0 and n and first is not None and int(first.min()) > 0:
            factor = int(col[0]) // int(first[0])
            if factor > 0 and np.array_equal(first * factor, col):
                header.append(struct.pack("<Bq", _MODE_DERIVED, factor))
                continue
        if n and int(col.min()) < 0:
            header.append(struct.pack("<Bq", _MODE_SIGNED, 1))
            payloads.append(col.astype("<i8").tobytes())
            continue
        factor = int(np.gcd.reduce(col)) if n else 1
        factor = factor or 1
        header.append(struct.pack("<Bq", _MODE_STORED, factor))
        payloads.append(pack_uints(col // factor))
    return b"".join(header) + b"".join(payloads)


def unpack_values(data: bytes, count: int) -> np.ndarray:
    """Inverse of `pack_values`: an (count, k) int64 matrix."""
    try:
        (k,) = struct.unpack_from("<B", data)
        modes = [struct.unpack_from("<Bq", data, 1 + 9 * j) for j in range(k)]
    except struct.error:
        raise CodecError("short value header") from None
    pos = 1 + 9 * k
    out = np.zeros((count, k), dtype=np.int64)
    for j, (mode, factor) in enumerate(modes):
        if mode == _MODE_DERIVED:
            out[:, j] = out[:, 0] * factor
        elif mode == _MODE_SIGNED:
            out[:, j] = np.frombuffer(data, dtype="<i8", count=count, offset=pos)
            pos += 8 * count
        elif mode == _MODE_STORED:
            width = data[pos]
            out[:, j] = _widen(width, data[pos + 1 : pos + 1 + width * count], count) * factor
            pos += 1 + width * count
        else:
            raise CodecError(f"unknown value column mode {mode}")
    return out


def gcd_all(values: list[int]) -> int:
    return math.gcd(*values) if values else 1
