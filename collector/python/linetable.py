"""CPython 3.11+ location tables (`co_linetable`): instruction offset -> source line.

The format (CPython's Objects/locations.md): a sequence of entries, each covering 1-8 code units.
An entry's first byte has bit 7 set, bits 3-6 a code, bits 0-2 the length minus one. Codes 0-9
(short form) and 10-12 (one-line form, line delta = code - 10) carry columns we skip; 13 (no
columns) has a signed varint line delta; 14 (long form) a signed varint line delta then three
varints; 15 means "no location". Varints are 6-bit chunks, least significant first, 0x40 set on
all but the last; a signed varint's bit 0 is its sign. Lines accumulate from `co_firstlineno`.
"""

from __future__ import annotations

import bisect

_NO_LOCATION = 15
_NO_COLUMNS = 13
_LONG = 14


def _varint(table: bytes, i: int) -> tuple[int, int]:
    """(value, next index) of the varint at table[i]."""
    value = shift = 0
    while i < len(table):
        b = table[i]
        i += 1
        value |= (b & 63) << shift
        shift += 6
        if not b & 64:
            break
    return value, i


def _svarint(table: bytes, i: int) -> tuple[int, int]:
    value, i = _varint(table, i)
    return (-(value >> 1) if value & 1 else value >> 1), i


def line_for(table: bytes, firstlineno: int, unit: int) -> int:
    """Source line of the instruction at code-unit index `unit`; 0 when it has none.

    A negative `unit` (a frame that has not run its first instruction: CPython's lasti is -1)
    is the function's first line, as `PyCode_Addr2Line` says."""
    if unit < 0:
        return firstlineno
    line = firstlineno
    pos = 0  # code units covered so far
    i = 0
    n = len(table)
    while i < n:
        head = table[i]
        if not head & 128:
            return 0  # not at an entry start: a corrupt table, no line rather than a wrong one
        code = (head >> 3) & 15
        length = (head & 7) + 1
        i += 1
        delta = 0
        if code == _NO_COLUMNS or code == _LONG:
            delta, i = _svarint(table, i)
        elif 10 <= code <= 12:
            delta = code - 10
        line += delta
        if pos <= unit < pos + length:
            return 0 if code == _NO_LOCATION else line
        pos += length
        while i < n and not table[i] & 128:  # skip this entry's remaining bytes (columns)
            i += 1
    return 0


def decode(table: bytes, firstlineno: int) -> tuple[list[int], list[int]]:
    """The whole table at once: (end code unit of each entry, its line or 0), for `line_at`.

    Decoded once per code object: a sample's frames then cost a bisection, where `line_for`
    scans the table per frame (most of the naming cost of a busy interpreter's stacks)."""
    ends: list[int] = []
    lines: list[int] = []
    line = firstlineno
    pos = i = 0
    n = len(table)
    while i < n:
        head = table[i]
        if not head & 128:
            break
        code = (head >> 3) & 15
        i += 1
        delta = 0
        if code == _NO_COLUMNS or code == _LONG:
            delta, i = _svarint(table, i)
        elif 10 <= code <= 12:
            delta = code - 10
        line += delta
        pos += (head & 7) + 1
        ends.append(pos)
        lines.append(0 if code == _NO_LOCATION else line)
        while i < n and not table[i] & 128:
            i += 1
    return ends, lines


def line_at(ends: list[int], lines: list[int], firstlineno: int, unit: int) -> int:
    """`line_for` over a table `decode`d before."""
    if unit < 0:
        return firstlineno
    k = bisect.bisect_right(ends, unit)
    return lines[k] if k < len(ends) else 0
